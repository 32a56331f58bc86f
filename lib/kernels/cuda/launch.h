// Launch shapes shared by the CUDA model kernels: 256-thread blocks, and grid-stride grids of at most 2^16
// blocks (each thread then loops over its share). For .cu files.
#pragma once

#include <cstdint>

namespace race::kernels::cuda {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 16;

// Enough blocks to cover n work items, at least 1 and at most kMaxBlocks.
inline unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

}  // namespace race::kernels::cuda
