// Deterministic block-wide reductions for the CUDA model kernels: a shared-memory tree of fixed shape, so the
// same inputs give the same bits on every run (no atomics). Every thread of the block must call them; the
// result is returned to all threads. For .cu files only.
#pragma once

#include <cuda_runtime.h>

namespace race::kernels::cuda {

// Grid-stride launches: enough blocks to cover n, at most kMaxBlocks (each thread then loops).
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 16;
inline unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

// shared: kBlock elements. blockDim.x must be kBlock (a power of two).
template <int kBlock, class T>
__device__ T block_sum(T x, T* shared) {
  shared[threadIdx.x] = x;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  const T total = shared[0];
  __syncthreads();  // shared may be reused by the caller's next reduction
  return total;
}

template <int kBlock, class T>
__device__ T block_max(T x, T* shared) {
  shared[threadIdx.x] = x;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + stride]);
    __syncthreads();
  }
  const T total = shared[0];
  __syncthreads();
  return total;
}

}  // namespace race::kernels::cuda
