// RoPE on CUDA: one thread per (b, h, t, pair) running work_items.h's rope_pair, each reading and writing
// only its own two elements, so the rotation may be in place.
#include "kernels/cuda/rope_cuda.h"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/work_items.h"

namespace race::kernels::cuda {
namespace {

__global__ void rotate_kernel(float* out, const float* x, const int32_t* positions, int64_t heads, int64_t seq_len,
                              int64_t head_dim, float base, float sign, int64_t pairs) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs; p += stride)
    items::rope_pair(out, x, positions, p, heads, seq_len, head_dim, base, sign);
}

}  // namespace

void rope_rotate(float* out, const float* x, const int32_t* positions, int64_t batch, int64_t heads,
                 int64_t seq_len, int64_t head_dim, float base, float sign) {
  const int64_t pairs = batch * heads * seq_len * (head_dim / 2);
  if (pairs == 0) return;
  rotate_kernel<<<grid_for(pairs), kThreads>>>(out, x, positions, heads, seq_len, head_dim, base, sign, pairs);
  RACE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace race::kernels::cuda
