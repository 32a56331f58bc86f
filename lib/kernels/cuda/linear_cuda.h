// The fully connected layer on CUDA devices with the semantics of kernels/cpu/linear_cpu.h:
//   y (N, out) = x (N, in) W^T + b,   W (out, in);
//   backward: dx = dy W (overwritten), dW += dy^T x, db += sum_n dy (accumulated); any may be null.
// The operands the products read (x, W, dy) are all fp32 or all bf16 (`operands`); y, dx, dW, the bias and
// db are fp32 either way. The products go through cuBLASLt (linear_cublaslt.cpp):
//   fp32 operands, in the context's GemmPrecision: fp32 (CUBLAS_COMPUTE_32F, no TF32: results match the CPU
//   within fp32 rounding), or tensor cores (CUBLAS_COMPUTE_32F_FAST_16BF: cuBLASLt may round the fp32
//   operands to bf16, or to TF32, its choice per shape, and accumulates in fp32);
//   bf16 operands, whatever the precision: bf16 A and B on the tensor cores, CUBLAS_COMPUTE_32F (fp32 sums),
//   fp32 C and D, so dW accumulates in fp32 and the output rounds only once, to fp32.
// Forward adds a 16-byte-aligned bias in cuBLASLt's BIAS epilogue (an fp32 bias, as D is), and writes any
// other into y before the product; db is our own column sum of dy (column_sums_cuda.h, fp32 or bf16 dy),
// because cuBLASLt's BGRADB epilogue overwrites the bias gradient where the layer accumulates into it.
// Deterministic: one algorithm per shape (chosen once and cached), and only algorithms that finish the
// split-K dot products without reducing in the output buffer (see linear_cublaslt.cpp). Sizes are 64-bit.
// Declared without CUDA headers. Everything runs on the default stream and does not synchronise.
#pragma once

#include <cstdint>
#include <memory>

#include "kernels/cuda/dtype.h"

namespace race::kernels::cuda {

// How products of fp32 operands multiply: fp32 on the CUDA cores, or rounded to bf16 on the tensor cores with
// fp32 sums. Products of bf16 operands always run on the tensor cores with fp32 sums.
enum class GemmPrecision { fp32, bf16 };

// The cuBLASLt handle, the precision, a 32 MiB workspace and the algorithm chosen for each shape, on the
// current device.
// Not thread-safe: one per CudaOps. Errors (no device, cuBLASLt failures, sizes) throw race::Error naming
// the call, the cuBLASLt status and a hint.
class GemmContext {
 public:
  explicit GemmContext(GemmPrecision precision);
  ~GemmContext();
  GemmContext(const GemmContext&) = delete;
  GemmContext& operator=(const GemmContext&) = delete;

  // y (N, out) = x (N, in) . weight (out, in)^T + bias (out); x and weight of type `operands`; bias may be
  // null. y is overwritten.
  void linear_forward(float* y, const void* x, const void* weight, DType operands, const float* bias,
                      int64_t rows, int64_t in, int64_t out);
  // dx (N, in) = dy (N, out) . weight (overwritten), dweight (out, in) += dy^T . x, dbias (out) += sum_n dy;
  // dy, x and weight of type `operands`; any of dx, dweight, dbias may be null.
  void linear_backward(float* dx, float* dweight, float* dbias, const void* dy, const void* x,
                       const void* weight, DType operands, int64_t rows, int64_t in, int64_t out);

 private:
  struct State;  // cuBLASLt's types stay out of this header
  std::unique_ptr<State> state_;
};

}  // namespace race::kernels::cuda
