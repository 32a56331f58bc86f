// Pooling on CUDA: one thread per (b, c) walks the tokens in order (work_items.h), so sums and writes need no
// atomics.
#include "kernels/cuda/pooling_cuda.h"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/work_items.h"

namespace race::kernels::cuda {
namespace {

__global__ void forward_kernel(float* pooled, const float* rows, const uint8_t* key_mask, int64_t batch,
                               int64_t seq_len, int64_t channels, bool cls) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;  // (b, c)
  if (item < batch * channels) items::pool_forward_channel(pooled, rows, key_mask, item, seq_len, channels, cls);
}

__global__ void backward_kernel(float* drows, const float* dpooled, const uint8_t* key_mask, int64_t batch,
                                int64_t seq_len, int64_t channels, bool cls) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;  // (b, c)
  if (item < batch * channels) items::pool_backward_channel(drows, dpooled, key_mask, item, seq_len, channels, cls);
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
