// Pooling of rows (B, T, C) into (B, C) on CUDA devices, as CpuOps does it: the mean over real tokens
// (key_mask (B, T), null: all; fp64 sums in token order; a row with none pools to 0) or token 0 (cls).
// The forward reads rows of rows_type (fp32, or bf16 where a product's operands were kept) and writes fp32;
// the backward overwrites fp32 drows (B, T, C), zero where the pool does not look.
// Declared without CUDA headers; defined in pooling_cuda.cu. Does not synchronise.
#pragma once

#include <cstdint>

#include "kernels/cuda/dtype.h"

namespace race::kernels::cuda {

void pool_forward(float* pooled, const void* rows, DType rows_type, const uint8_t* key_mask, int64_t batch,
                  int64_t seq_len, int64_t channels, bool cls);
void pool_backward(float* drows, const float* dpooled, const uint8_t* key_mask, int64_t batch, int64_t seq_len,
                   int64_t channels, bool cls);

}  // namespace race::kernels::cuda
