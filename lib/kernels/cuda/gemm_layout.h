// How the linear layer's three row-major products become cuBLASLt's column-major ones, and the checks on
// their sizes and pointers, as pure functions: linear_cublaslt.cpp builds its descriptors from these, and
// tests/test_cuda_ops.cpp runs them against CpuOps with a naive column-major product on the host, so the
// mapping is checked without a GPU. No CUDA headers.
//
// The transposition trick: a row-major (r, c) matrix with row stride c is, byte for byte, the column-major
// (c, r) matrix with leading dimension c. So the row-major C = A B is computed as the column-major
// C^T = B^T A^T, with the operands swapped and nothing copied.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

namespace race::kernels::cuda::gemm {

// D (m, n) = alpha op(A) op(B) + beta C, column-major, C = D: op(A) is (m, k) and op(B) is (k, n).
// A is stored as (k, m) when transpose_a, else (m, k), with leading dimension lda; likewise B.
struct ColumnMajorGemm {
  bool transpose_a, transpose_b;
  int64_t m, n, k;
  int64_t lda, ldb, ldc;

  int64_t a_rows() const { return transpose_a ? k : m; }  // A as stored, for its layout descriptor
  int64_t a_cols() const { return transpose_a ? m : k; }
  int64_t b_rows() const { return transpose_b ? n : k; }
  int64_t b_cols() const { return transpose_b ? k : n; }
};

// y (N, out) = x (N, in) W^T: column-major y^T (out, N) = W (out, in) x^T, where W's storage is the
// column-major (in, out) W^T, hence transpose_a; x's is x^T (in, N). A bias of length out = m is what
// cuBLASLt's BIAS epilogue adds to every column of D.
inline ColumnMajorGemm forward_gemm(int64_t rows, int64_t in, int64_t out) {
  return {true, false, out, rows, in, in, in, out};
}

// dx (N, in) = dy (N, out) W (out, in): column-major dx^T (in, N) = W^T (in, out) dy^T (out, N), both stored
// as such.
inline ColumnMajorGemm input_grad_gemm(int64_t rows, int64_t in, int64_t out) {
  return {false, false, in, rows, out, in, out, in};
}

// dW (out, in) += dy^T (out, N) x (N, in): column-major dW^T (in, out) = x^T (in, N) dy (N, out); dy's
// storage is dy^T (out, N), hence transpose_b. k = N, the long dimension.
inline ColumnMajorGemm weight_grad_gemm(int64_t rows, int64_t in, int64_t out) {
  return {false, true, in, out, rows, in, out, in};
}

// The largest power of two (at most 256, cuBLASLt's default requirement) dividing the address: the
// alignment to promise cuBLASLt's heuristic (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*), since the model's
// buffers may start anywhere in an arena. 256 for null.
inline uint32_t alignment_bytes(uintptr_t address) {
  uint32_t alignment = 1;
  while (alignment < 256 && address % (2 * alignment) == 0) alignment *= 2;
  return alignment;
}

// Empty when rows >= 0, in >= 1 and out >= 1 (as the CPU kernels require) and every operand's bytes
// (N * in, N * out and out * in floats) fit int64_t, the type of cuBLASLt's layout dimensions and of our
// offsets; otherwise the reason, naming `function`.
inline std::string size_error(const char* function, int64_t rows, int64_t in, int64_t out) {
  const auto text = [&](const std::string& why) {
    return std::string(function) + " (CUDA): rows = " + std::to_string(rows) +
           ", in = " + std::to_string(in) + ", out = " + std::to_string(out) + ": " + why;
  };
  if (rows < 0 || in < 1 || out < 1) return text("rows must be >= 0, in and out >= 1");
  const int64_t max_floats = std::numeric_limits<int64_t>::max() / static_cast<int64_t>(sizeof(float));
  const auto fits = [&](int64_t a, int64_t b) { return a == 0 || b <= max_floats / a; };
  if (!fits(rows, in) || !fits(rows, out) || !fits(out, in))
    return text("an operand's size in bytes does not fit a 64-bit integer (cuBLASLt's layout dimensions)");
  return {};
}

}  // namespace race::kernels::cuda::gemm
