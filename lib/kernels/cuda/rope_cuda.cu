// RoPE on CUDA: one thread per (b, h, t, pair), each reading and writing only its own two elements, so the
// rotation may be in place.
#include "kernels/cuda/rope_cuda.h"

#include "kernels/cuda/block_reduce.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise_math.h"

namespace race::kernels::cuda {
namespace {

__global__ void rotate_kernel(float* out, const float* x, const int32_t* positions, int64_t heads, int64_t seq_len,
                              int64_t head_dim, float base, float sign, int64_t pairs) {
  const int64_t half = head_dim / 2, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs; p += stride) {
    const int64_t i = p % half, row = p / half;  // row = (b * H + h) * T + t
    const int64_t t = row % seq_len, b = row / (seq_len * heads);
    const int64_t position = positions != nullptr ? positions[b * seq_len + t] : t;
    const double angle = math::rope_angle(position, i, head_dim, base);
    const float c = static_cast<float>(cos(angle)), s = sign * static_cast<float>(sin(angle));
    const float lo = x[row * head_dim + i], hi = x[row * head_dim + i + half];
    out[row * head_dim + i] = lo * c - hi * s;
    out[row * head_dim + i + half] = lo * s + hi * c;
  }
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
