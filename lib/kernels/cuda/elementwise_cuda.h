// Elementwise CUDA kernels of the model (fill, add, GELU, exp, dropout) on fp32 device buffers of n
// elements; the math is elementwise_math.h's. Declared without CUDA headers; defined in elementwise_cuda.cu.
// None synchronises; each throws std::runtime_error (file:line, hint) when the launch fails.
#pragma once

#include <cstdint>

namespace race::kernels::cuda {

void fill(float* x, float value, int64_t n);
void add(float* y, const float* x, int64_t n);                               // y += x
void broadcast_rows(float* y, const float* row, int64_t rows, int64_t cols);  // y (rows, cols) = row (cols)
void gelu_forward(float* y, const float* x, int64_t n);                      // y may be x
void gelu_backward(float* dx, const float* dy, const float* x, int64_t n);   // overwritten; dx may be dy
void exp_forward(float* y, const float* x, int64_t n);                       // y = exp(x)
void exp_backward(float* dx, const float* dy, const float* y, int64_t n);    // dx += dy * y
// y = x * keep / (1 - p), the keep mask of math::dropout_keep (the same as CpuOps'); in place allowed.
void dropout(float* y, const float* x, int64_t n, float p, uint64_t seed);

}  // namespace race::kernels::cuda
