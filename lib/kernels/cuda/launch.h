// Launch shapes shared by the CUDA kernels: 256-thread blocks, grid-stride grids of at most 2^16 blocks
// (each thread then loops over its share), and the opt-in to more than 48 KB of dynamic shared memory.
// For .cu files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_check.h"

namespace race::kernels::cuda {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 16;

// Enough blocks of `threads` to cover n work items, at least 1 and at most kMaxBlocks.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

// Lets `kernel` use `bytes` of dynamic shared memory per block, or throws std::invalid_argument
// "<what> needs N bytes of shared memory per block and the GPU allows M<hint>" when this device has less.
template <class Kernel>
void allow_shared_memory(Kernel kernel, int64_t bytes, const char* what, const char* hint) {
  int device = 0, limit = 0;
  RACE_CUDA_CHECK(cudaGetDevice(&device));
  RACE_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (bytes > limit)
    throw std::invalid_argument(std::string(what) + " needs " + std::to_string(bytes) +
                                " bytes of shared memory per block and the GPU allows " + std::to_string(limit) +
                                hint);
  RACE_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace race::kernels::cuda
