// Column sums over rows on CUDA devices: the linear layer's bias gradient and LayerNorm's weight and bias
// gradients, accumulated (+=) into fp32 outputs. Deterministic, in two fixed-order fp64 stages (work_items.h
// says how, and how the result may differ from the CPU's in the last bits). Declared without CUDA headers;
// defined in column_sums_cuda.cu. Takes its scratch from the stream-ordered pool; does not synchronise.
#pragma once

#include <cstdint>

#include "kernels/cuda/dtype.h"

namespace race::kernels::cuda {

// out (cols) += sum over rows of dy (rows, cols) of dy_type (fp32, or bf16 where the linear layer's dy is a
// bf16 product operand).
void column_sums(float* out, const void* dy, DType dy_type, int64_t rows, int64_t cols);

// dweight (C) += sum_n dy xhat, dbias (C) += sum_n dy, xhat = (x - mean) rstd per row; dy, x (rows, C), mean,
// rstd (rows). Either output may be null to skip it.
void layernorm_param_sums(float* dweight, float* dbias, const float* dy, const float* x, const float* mean,
                          const float* rstd, int64_t rows, int64_t channels);

}  // namespace race::kernels::cuda
