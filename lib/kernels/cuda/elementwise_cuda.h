// Elementwise CUDA kernels of the model (fill, add, GELU, exp, dropout, the rounding to bf16) on device
// buffers of n elements, fp32 except the GELU outputs that a matrix product reads next (fp32 or bf16); the
// math is elementwise_math.h's, in fp32, and a bf16 store rounds to nearest even. Declared without CUDA
// headers; defined in elementwise_cuda.cu. None synchronises; each throws std::runtime_error (file:line,
// hint) when the launch fails.
#pragma once

#include <cstdint>

#include "kernels/cuda/dtype.h"

namespace race::kernels::cuda {

void fill(float* x, float value, int64_t n);
void add(float* y, const float* x, int64_t n);                               // y += x
void broadcast_rows(float* y, const float* row, int64_t rows, int64_t cols);  // y (rows, cols) = row (cols)
// y of y_type; an fp32 y may be x, a bf16 one must not overlap it.
void gelu_forward(void* y, DType y_type, const float* x, int64_t n);
// dx of dx_type, overwritten; an fp32 dx may be dy, a bf16 one must not overlap dy or x.
void gelu_backward(void* dx, DType dx_type, const float* dy, const float* x, int64_t n);
void round_to_bf16(void* y, const float* x, int64_t n);  // y (n) bf16 = x, to nearest even; not in place
void exp_forward(float* y, const float* x, int64_t n);                       // y = exp(x)
void exp_backward(float* dx, const float* dy, const float* y, int64_t n);    // dx += dy * y
// y = x * keep / (1 - p), the keep mask of math::dropout_keep (the same as CpuOps'); in place allowed.
void dropout(float* y, const float* x, int64_t n, float p, uint64_t seed);

}  // namespace race::kernels::cuda
