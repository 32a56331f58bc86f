// Fully connected layer on the CPU: OpenMP splits the output into one contiguous block per thread, and each
// block is one single-threaded sgemm (see linear_cpu.h for why OpenBLAS's own threads stay off).
#include "kernels/cpu/linear_cpu.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <mutex>
#include <utility>
#include <vector>

#include "core/error.h"

namespace race::kernels::cpu {
namespace {

void use_single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (openblas_get_parallel() == 1) openblas_set_num_threads(1);  // 1: pthreads build, 2: OpenMP build
  });
}

void check_sizes(const char* function, int64_t rows, int64_t in, int64_t out) {
  if (rows < 0 || rows > INT_MAX) fail("{}: rows = {} must be in [0, 2^31)", function, rows);
  if (in < 1 || in > INT_MAX) fail("{}: in = {} must be in [1, 2^31)", function, in);
  if (out < 1 || out > INT_MAX) fail("{}: out = {} must be in [1, 2^31)", function, out);
}

void check_pointer(const char* function, const void* p, const char* name) {
  if (p == nullptr) fail("{}: {} is null", function, name);
}

// The block [begin, end) of thread `part` when [0, extent) is cut into `parts` near-equal contiguous blocks.
std::pair<int64_t, int64_t> block(int64_t extent, int parts, int part) {
  return {extent * part / parts, extent * (part + 1) / parts};
}

// C (m, n) = op(A) op(B) + beta C, row-major, through the 32-bit interface (check_sizes bounds every size).
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.f, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace

void linear_forward(float* y, const float* x, const float* weight, const float* bias, int64_t rows,
                    int64_t in, int64_t out) {
  check_sizes("linear_forward", rows, in, out);
  if (rows == 0) return;
  check_pointer("linear_forward", y, "y");
  check_pointer("linear_forward", x, "x");
  check_pointer("linear_forward", weight, "weight");
  use_single_threaded_blas();
  // Blocks of rows while there are at least as many rows as outputs (training); of output columns otherwise
  // (decoding a few tokens through a vocabulary-sized head), so every thread gets work either way.
  const bool split_rows = rows >= out;
  // The bias is written into y first and sgemm adds onto it (beta = 1): OpenBLAS makes a pass over C for
  // beta = 0 as well, so the bias costs no extra pass.
  const float beta = bias != nullptr ? 1.f : 0.f;
#pragma omp parallel
  {
    const auto [begin, end] = block(split_rows ? rows : out, omp_get_num_threads(), omp_get_thread_num());
    if (begin < end) {
      // The block is rows [r0, r1) x columns [c0, c1) of y.
      const int64_t r0 = split_rows ? begin : 0, r1 = split_rows ? end : rows;
      const int64_t c0 = split_rows ? 0 : begin, c1 = split_rows ? out : end;
      if (bias != nullptr)
        for (int64_t r = r0; r < r1; ++r) std::copy(bias + c0, bias + c1, y + r * out + c0);
      sgemm(false, true, r1 - r0, c1 - c0, in, x + r0 * in, in, weight + c0 * in, in, beta, y + r0 * out + c0,
            out);
    }
  }
}

void linear_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                     const float* weight, int64_t rows, int64_t in, int64_t out) {
  check_sizes("linear_backward", rows, in, out);
  if (rows == 0) return;
  check_pointer("linear_backward", dy, "dy");
  if (dx != nullptr) check_pointer("linear_backward", weight, "weight (needed for dx)");
  if (dweight != nullptr) check_pointer("linear_backward", x, "x (needed for dweight)");
  use_single_threaded_blas();
  // (out) fp64 column sums for dbias, allocated outside the parallel region, which no exception may leave
  std::vector<double> sum(dbias != nullptr ? static_cast<size_t>(out) : 0, 0.0);
#pragma omp parallel
  {
    const int parts = omp_get_num_threads(), part = omp_get_thread_num();
    if (dx != nullptr) {  // dx (N, in) = dy (N, out) . weight (out, in): blocks of rows or of input columns
      const bool split_rows = rows >= in;
      const auto [begin, end] = block(split_rows ? rows : in, parts, part);
      if (begin < end) {
        if (split_rows)
          sgemm(false, false, end - begin, in, out, dy + begin * out, out, weight, in, 0.f, dx + begin * in,
                in);
        else
          sgemm(false, false, rows, end - begin, out, dy, out, weight + begin, in, 0.f, dx + begin, in);
      }
    }
    if (dweight != nullptr) {  // dweight (out, in) += dy^T . x: blocks of output rows or of input columns
      const bool split_out = out >= in;
      const auto [begin, end] = block(split_out ? out : in, parts, part);
      if (begin < end) {
        if (split_out)
          sgemm(true, false, end - begin, in, rows, dy + begin, out, x, in, 1.f, dweight + begin * in, in);
        else
          sgemm(true, false, out, end - begin, rows, dy, out, x + begin, in, 1.f, dweight + begin, in);
      }
    }
    if (dbias != nullptr) {  // each thread sums its own columns over every row, in row order
      const auto [begin, end] = block(out, parts, part);
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = dy + r * out;  // (out)
        for (int64_t c = begin; c < end; ++c) sum[c] += static_cast<double>(row[c]);
      }
      for (int64_t c = begin; c < end; ++c) dbias[c] += static_cast<float>(sum[c]);
    }
  }
}

}  // namespace race::kernels::cpu
