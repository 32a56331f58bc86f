// Elementwise CUDA kernels: one grid-stride loop each, 64-bit indices.
#include "kernels/cuda/elementwise_cuda.h"

#include <cuda_bf16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise_math.h"
#include "kernels/cuda/launch.h"

namespace race::kernels::cuda {
namespace {

// Runs op(i) for every i < n.
template <class Op>
__global__ void for_each_kernel(int64_t n, Op op) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) op(i);
}

template <class Op>
void for_each(int64_t n, Op op) {
  if (n <= 0) return;
  for_each_kernel<<<grid_for(n), kThreads>>>(n, op);
  RACE_CUDA_CHECK(cudaGetLastError());
}

// Runs value(i) for every i < n and stores it into y (n) of y_type.
template <class Value>
void store_each(void* y, DType y_type, int64_t n, Value value) {
  if (y_type == DType::bf16) {
    auto* out = static_cast<__nv_bfloat16*>(y);
    for_each(n, [=] __device__(int64_t i) { out[i] = __float2bfloat16_rn(value(i)); });
  } else {
    auto* out = static_cast<float*>(y);
    for_each(n, [=] __device__(int64_t i) { out[i] = value(i); });
  }
}

}  // namespace

void fill(float* x, float value, int64_t n) {
  for_each(n, [=] __device__(int64_t i) { x[i] = value; });
}
void add(float* y, const float* x, int64_t n) {
  for_each(n, [=] __device__(int64_t i) { y[i] += x[i]; });
}
void broadcast_rows(float* y, const float* row, int64_t rows, int64_t cols) {
  for_each(rows * cols, [=] __device__(int64_t i) { y[i] = row[i % cols]; });
}
void gelu_forward(void* y, DType y_type, const float* x, int64_t n) {
  store_each(y, y_type, n, [=] __device__(int64_t i) { return math::gelu_forward(x[i]); });
}
void gelu_backward(void* dx, DType dx_type, const float* dy, const float* x, int64_t n) {
  store_each(dx, dx_type, n, [=] __device__(int64_t i) { return math::gelu_backward(dy[i], x[i]); });
}
void round_to_bf16(void* y, const float* x, int64_t n) {
  store_each(y, DType::bf16, n, [=] __device__(int64_t i) { return x[i]; });
}
void exp_forward(float* y, const float* x, int64_t n) {
  for_each(n, [=] __device__(int64_t i) { y[i] = expf(x[i]); });
}
void exp_backward(float* dx, const float* dy, const float* y, int64_t n) {
  for_each(n, [=] __device__(int64_t i) { dx[i] += dy[i] * y[i]; });
}
void dropout(float* y, const float* x, int64_t n, float p, uint64_t seed) {
  const float scale = 1.f / (1.f - p);
  const uint64_t threshold = math::dropout_threshold(p);
  for_each(n, [=] __device__(int64_t i) { y[i] = math::dropout_keep(seed, i, threshold) ? x[i] * scale : 0.f; });
}

}  // namespace race::kernels::cuda
