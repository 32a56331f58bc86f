// Range checks of device-resident integer inputs (token ids, targets, positions) before a kernel uses them
// as indices, so a bad value becomes an error naming it rather than an out-of-bounds access.
// Declared without CUDA headers; defined in index_check_cuda.cu.
#pragma once

#include <cstdint>

namespace race::kernels::cuda {

struct InvalidIndex {
  int64_t position = -1;  // the first i with values[i] outside [lo, hi) and not `allowed`; -1: none
  int32_t value = 0;
};

// Synchronises (the answer is copied to the host). An integer atomicMin picks the first bad position, so the
// answer does not depend on scheduling.
InvalidIndex first_invalid_index(const int32_t* values, int64_t n, int32_t lo, int32_t hi, int32_t allowed);

}  // namespace race::kernels::cuda
