// The fully connected layer on CUDA devices, fp32 tensors, with the semantics of kernels/cpu/linear_cpu.h:
//   y (N, out) = x (N, in) W^T + b,   W (out, in);
//   backward: dx = dy W (overwritten), dW += dy^T x, db += sum_n dy (accumulated); any may be null.
// The products go through cuBLASLt (linear_cublaslt.cpp) in one of two precisions (GemmPrecision): fp32
// (CUBLAS_COMPUTE_32F, no TF32: results match the CPU within fp32 rounding), or tensor cores
// (CUBLAS_COMPUTE_32F_FAST_16BF: cuBLASLt may round the fp32 operands to bf16, or to TF32, its choice per
// shape, and accumulates in fp32; inputs, outputs and the bias stay fp32). Forward adds a 16-byte-aligned
// bias in cuBLASLt's BIAS epilogue, and writes any other into y before the product; db is our own column sum (column_sums_cuda.h), because cuBLASLt's BGRADB epilogue
// overwrites the bias gradient where the layer accumulates into it.
// Deterministic: one algorithm per shape (chosen once and cached), and only algorithms that finish the
// split-K dot products without reducing in the output buffer (see linear_cublaslt.cpp). Sizes are 64-bit.
// Declared without CUDA headers. Everything runs on the default stream and does not synchronise.
#pragma once

#include <cstdint>
#include <memory>

namespace race::kernels::cuda {

// How the products multiply: fp32 on the CUDA cores, or bf16 operands on the tensor cores with fp32 sums.
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

  // y (N, out) = x (N, in) . weight (out, in)^T + bias (out); bias may be null. y is overwritten.
  void linear_forward(float* y, const float* x, const float* weight, const float* bias, int64_t rows,
                      int64_t in, int64_t out);
  // dx (N, in) = dy (N, out) . weight (overwritten), dweight (out, in) += dy^T . x, dbias (out) += sum_n dy;
  // any of dx, dweight, dbias may be null.
  void linear_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                       const float* weight, int64_t rows, int64_t in, int64_t out);

 private:
  struct State;  // cuBLASLt's types stay out of this header
  std::unique_ptr<State> state_;
};

}  // namespace race::kernels::cuda
