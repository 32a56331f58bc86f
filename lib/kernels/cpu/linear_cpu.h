// Fully connected layer on the CPU, forward and backward, through OpenBLAS sgemm:
//   y = x W^T + b,   x (N, in), W (out, in) (PyTorch's nn.Linear layout), b (out).
//
// Threading: OpenBLAS runs single-threaded and the parallelism is ours (OpenMP, each thread one sgemm on a
// contiguous block of the output). A pthreads OpenBLAS keeps its own worker threads, which busy-wait after
// every call: beside OpenMP's threads they would share the same cores and slow every kernel that follows.
// So the first call of any function here sets a pthreads OpenBLAS to one thread for the whole process
// (openblas_set_num_threads(1)); an OpenMP OpenBLAS needs nothing, as it runs single-threaded inside a
// parallel region. Each output element is then computed by one sgemm call in one fixed order, so results
// are bit-identical from run to run for a fixed OpenMP thread count.
//
// Sizes: OpenBLAS's interface takes 32-bit ints, so N, in and out must each be below 2^31.
#pragma once

#include <cstdint>

namespace race::kernels::cpu {

// y (N, out) = x (N, in) . weight (out, in)^T + bias (out). bias may be null (no bias). y is overwritten and
// must not overlap the inputs. N = 0 does nothing.
void linear_forward(float* y, const float* x, const float* weight, const float* bias, int64_t rows,
                    int64_t in, int64_t out);

// Given dy (N, out) = dL/dy:
//   dx (N, in) = dy . weight           overwritten,
//   dweight (out, in) += dy^T . x      accumulated,
//   dbias (out) += sum_n dy[n, :]      accumulated (fp64 sums, rows in order),
// so a gradient-accumulation loop zeroes dweight and dbias once per optimizer step, and tied weights
// (input embedding = output projection) simply sum their two contributions. Any of dx, dweight, dbias may be
// null to skip it. dx must not overlap the inputs.
void linear_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                     const float* weight, int64_t rows, int64_t in, int64_t out);

}  // namespace race::kernels::cpu
