// Pooling on CUDA: one thread per (b, c) walks the tokens in order (work_items.h), so sums and writes need no
// atomics. The forward kernel is instantiated for fp32 and bf16 rows.
#include "kernels/cuda/pooling_cuda.h"

#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/work_items.h"

namespace race::kernels::cuda {
namespace {

template <class T>
__global__ void forward_kernel(float* pooled, const T* rows, const uint8_t* key_mask, int64_t batch,
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

void pool_forward(float* pooled, const void* rows, DType rows_type, const uint8_t* key_mask, int64_t batch,
                  int64_t seq_len, int64_t channels, bool cls) {
  if (batch * channels == 0) return;
  const auto blocks = static_cast<unsigned>((batch * channels + kThreads - 1) / kThreads);
  if (rows_type == DType::bf16)
    forward_kernel<<<blocks, kThreads>>>(pooled, static_cast<const __nv_bfloat16*>(rows), key_mask, batch, seq_len,
                                         channels, cls);
  else
    forward_kernel<<<blocks, kThreads>>>(pooled, static_cast<const float*>(rows), key_mask, batch, seq_len,
                                         channels, cls);
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
