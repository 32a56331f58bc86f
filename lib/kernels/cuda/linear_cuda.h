// The fully connected layer on CUDA devices, fp32 throughout, with the semantics of kernels/cpu/linear_cpu.h:
//   y (N, out) = x (N, in) W^T + b,   W (out, in);
//   backward: dx = dy W (overwritten), dW += dy^T x, db += sum_n dy (accumulated); any may be null.
// The products are our own tiled kernel rather than cuBLAS: this toolkit ships cuBLAS only as shared
// libraries (libcublasLt.so is 540 MB), which the self-contained gpu-check bundle (64 MiB) cannot carry, and
// our kernel is deterministic and never uses TF32, so results match the CPU within fp32 rounding. It is
// not tuned. Declared without CUDA headers; defined in linear_cuda.cu. Does not synchronise.
#pragma once

#include <cstdint>

namespace race::kernels::cuda {

void linear_forward(float* y, const float* x, const float* weight, const float* bias, int64_t rows, int64_t in,
                    int64_t out);
void linear_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                     const float* weight, int64_t rows, int64_t in, int64_t out);

}  // namespace race::kernels::cuda
