// LayerNorm over the last dimension on CUDA devices, forward (also fused with the residual add before it) and
// backward, with the semantics and fp64 row statistics of kernels/cpu/layernorm_cpu.h (y, mean, rstd
// overwritten; dx, dweight, dbias accumulated; weight and bias may be null, meaning 1 and 0; dweight and dbias
// may be null to skip them). The forward's y, which only a matrix product reads, is fp32 or bf16 (y_type:
// computed in fp32, rounded to nearest even); mean, rstd, the residual and the whole backward are fp32.
// Declared without CUDA headers; defined in layernorm_cuda.cu. Does not synchronise.
#pragma once

#include <cstdint>

#include "kernels/cuda/dtype.h"

namespace race::kernels::cuda {

// y (N, C) of y_type; an fp32 y may be x, a bf16 one must not overlap x.
void layernorm_forward(void* y, DType y_type, float* mean, float* rstd, const float* x, const float* weight,
                       const float* bias, int64_t rows, int64_t channels, float eps);
// residual (N, C) = x + r, then y = LayerNorm(residual), in one pass per row; residual may be x or r, y is
// another buffer.
void residual_layernorm_forward(float* residual, void* y, DType y_type, float* mean, float* rstd, const float* x,
                                const float* r, const float* weight, const float* bias, int64_t rows,
                                int64_t channels, float eps);
void layernorm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                        const float* weight, const float* mean, const float* rstd, int64_t rows,
                        int64_t channels);

}  // namespace race::kernels::cuda
