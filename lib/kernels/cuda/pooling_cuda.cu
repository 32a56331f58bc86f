// Pooling on CUDA: one thread per (b, c) walks the tokens in order, so sums and writes need no atomics.
#include "kernels/cuda/pooling_cuda.h"

#include "kernels/cuda/block_reduce.h"
#include "kernels/cuda/cuda_check.h"

namespace race::kernels::cuda {
namespace {

__device__ bool is_real(const uint8_t* key_mask, int64_t b, int64_t t, int64_t seq_len) {
  return key_mask == nullptr || key_mask[b * seq_len + t] != 0;
}

__global__ void forward_kernel(float* pooled, const float* rows, const uint8_t* key_mask, int64_t batch,
                               int64_t seq_len, int64_t channels, bool cls) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;  // (b, c)
  if (i >= batch * channels) return;
  const int64_t b = i / channels, c = i % channels;
  const float* row = rows + b * seq_len * channels + c;  // token t at row[t * C]
  if (cls) {
    pooled[i] = row[0];
    return;
  }
  double sum = 0.0;
  int64_t count = 0;
  for (int64_t t = 0; t < seq_len; ++t)
    if (is_real(key_mask, b, t, seq_len)) {
      sum += static_cast<double>(row[t * channels]);
      ++count;
    }
  pooled[i] = count > 0 ? static_cast<float>(sum / static_cast<double>(count)) : 0.f;
}

__global__ void backward_kernel(float* drows, const float* dpooled, const uint8_t* key_mask, int64_t batch,
                                int64_t seq_len, int64_t channels, bool cls) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;  // (b, c)
  if (i >= batch * channels) return;
  const int64_t b = i / channels, c = i % channels;
  float* row = drows + b * seq_len * channels + c;
  int64_t count = 0;
  for (int64_t t = 0; t < seq_len; ++t) count += is_real(key_mask, b, t, seq_len);
  const float g = cls ? dpooled[i] : (count > 0 ? dpooled[i] / static_cast<float>(count) : 0.f);
  for (int64_t t = 0; t < seq_len; ++t)
    row[t * channels] = (cls ? t == 0 : is_real(key_mask, b, t, seq_len)) ? g : 0.f;
}

}  // namespace

void pool_forward(float* pooled, const float* rows, const uint8_t* key_mask, int64_t batch, int64_t seq_len,
                  int64_t channels, bool cls) {
  if (batch * channels == 0) return;
  forward_kernel<<<static_cast<unsigned>((batch * channels + kThreads - 1) / kThreads), kThreads>>>(
      pooled, rows, key_mask, batch, seq_len, channels, cls);
  RACE_CUDA_CHECK(cudaGetLastError());
}

void pool_backward(float* drows, const float* dpooled, const uint8_t* key_mask, int64_t batch, int64_t seq_len,
                   int64_t channels, bool cls) {
  if (batch * channels == 0) return;
  backward_kernel<<<static_cast<unsigned>((batch * channels + kThreads - 1) / kThreads), kThreads>>>(
      drows, dpooled, key_mask, batch, seq_len, channels, cls);
  RACE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace race::kernels::cuda
