// RoPE on CUDA: one thread per (b, h, t, pair) running work_items.h's rope_pair, each reading its own two
// elements into registers before it writes them, so the rotation may be in place (fp32 or bf16 alike).
#include "kernels/cuda/rope_cuda.h"

#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/work_items.h"

namespace race::kernels::cuda {
namespace {

template <class T>
__global__ void rotate_kernel(T* out, const T* x, const int32_t* positions, int64_t heads, int64_t seq_len,
                              int64_t head_dim, float base, float sign, int64_t pairs) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs; p += stride)
    items::rope_pair(out, x, positions, p, heads, seq_len, head_dim, base, sign);
}

template <class T>
void rotate(T* out, const T* x, const int32_t* positions, int64_t heads, int64_t seq_len, int64_t head_dim,
            float base, float sign, int64_t pairs) {
  rotate_kernel<<<grid_for(pairs), kThreads>>>(out, x, positions, heads, seq_len, head_dim, base, sign, pairs);
  RACE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void rope_rotate(void* out, const void* x, DType type, const int32_t* positions, int64_t batch, int64_t heads,
                 int64_t seq_len, int64_t head_dim, float base, float sign) {
  const int64_t pairs = batch * heads * seq_len * (head_dim / 2);
  if (pairs == 0) return;
  if (type == DType::bf16)
    rotate(static_cast<__nv_bfloat16*>(out), static_cast<const __nv_bfloat16*>(x), positions, heads, seq_len,
           head_dim, base, sign, pairs);
  else
    rotate(static_cast<float*>(out), static_cast<const float*>(x), positions, heads, seq_len, head_dim, base,
           sign, pairs);
}

}  // namespace race::kernels::cuda
