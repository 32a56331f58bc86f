// The one product every chunked linear-attention step reduces to, register-blocked for the CPU:
//   accumulate_rows:  out[i, :] += sum_{k in [k_begin, k_end)} coef[i, k] * rows[k, :]      (i < n, m columns)
//   multiply_rows:    the same with out overwritten
// A dot product x . y^T is the same call with rows = y^T, so callers keep a transposed copy instead of
// reducing across vector lanes. A block of 4 output rows times up to 64 columns stays in registers while
// k runs, so each loaded row vector feeds 4 FMAs: this is what lifts it from a load/store-bound axpy loop
// to near the FMA limit. Leftover columns take 8-wide vectors, then a plain loop.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace race::kernels::cpu {

using vec16 = float __attribute__((vector_size(64)));  // 16 fp32 lanes; two AVX2 registers without AVX-512
using vec8 = float __attribute__((vector_size(32)));

template <typename Vec>
inline Vec load_vec(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename Vec>
inline void store_vec(float* p, Vec v) {
  std::memcpy(p, &v, sizeof v);
}

constexpr int64_t round_up16(int64_t x) { return (x + 15) / 16 * 16; }

namespace detail {

// out[0:kRows, col:col + width] (+)= coef[0:kRows, k_begin:k_end] . rows[k_begin:k_end, col:...]
template <bool kAccumulate, int kRows, int kVecs, typename Vec>
inline void product_block(float* out, int64_t ld_out, const float* coef, int64_t ld_coef,
                          const float* rows, int64_t ld_rows, int64_t k_begin, int64_t k_end,
                          int64_t col) {
  constexpr int kLanes = sizeof(Vec) / sizeof(float);
  Vec acc[kRows][kVecs];
  for (int i = 0; i < kRows; ++i)
    for (int c = 0; c < kVecs; ++c)
      acc[i][c] = kAccumulate ? load_vec<Vec>(out + i * ld_out + col + kLanes * c) : Vec{};
  for (int64_t k = k_begin; k < k_end; ++k) {
    const float* row = rows + k * ld_rows + col;
    Vec r[kVecs];
    for (int c = 0; c < kVecs; ++c) r[c] = load_vec<Vec>(row + kLanes * c);
    for (int i = 0; i < kRows; ++i) {
      const float a = coef[i * ld_coef + k];
      for (int c = 0; c < kVecs; ++c) acc[i][c] += a * r[c];
    }
  }
  for (int i = 0; i < kRows; ++i)
    for (int c = 0; c < kVecs; ++c) store_vec<Vec>(out + i * ld_out + col + kLanes * c, acc[i][c]);
}

template <bool kAccumulate, int kRows>
inline void product_row_block(float* out, int64_t ld_out, const float* coef, int64_t ld_coef,
                              const float* rows, int64_t ld_rows, int64_t k_begin, int64_t k_end,
                              int64_t m) {
  int64_t col = 0;
  for (; col + 64 <= m; col += 64)
    product_block<kAccumulate, kRows, 4, vec16>(out, ld_out, coef, ld_coef, rows, ld_rows, k_begin,
                                                k_end, col);
  for (; col + 16 <= m; col += 16)
    product_block<kAccumulate, kRows, 1, vec16>(out, ld_out, coef, ld_coef, rows, ld_rows, k_begin,
                                                k_end, col);
  for (; col + 8 <= m; col += 8)
    product_block<kAccumulate, kRows, 1, vec8>(out, ld_out, coef, ld_coef, rows, ld_rows, k_begin,
                                               k_end, col);
  for (int i = 0; i < kRows; ++i)
    for (int64_t j = col; j < m; ++j) {
      float total = kAccumulate ? out[i * ld_out + j] : 0.f;
      for (int64_t k = k_begin; k < k_end; ++k) total += coef[i * ld_coef + k] * rows[k * ld_rows + j];
      out[i * ld_out + j] = total;
    }
}

template <bool kAccumulate>
inline void product_rows(float* out, int64_t ld_out, int64_t n, int64_t m, const float* coef,
                         int64_t ld_coef, const float* rows, int64_t ld_rows, int64_t k_begin,
                         int64_t k_end) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    product_row_block<kAccumulate, 4>(out + i * ld_out, ld_out, coef + i * ld_coef, ld_coef, rows,
                                      ld_rows, k_begin, k_end, m);
  for (; i < n; ++i)
    product_row_block<kAccumulate, 1>(out + i * ld_out, ld_out, coef + i * ld_coef, ld_coef, rows,
                                      ld_rows, k_begin, k_end, m);
}

}  // namespace detail

// out (n, m) += coef[:, k_begin:k_end] . rows[k_begin:k_end, :]. Strides: ld_out, ld_coef, ld_rows.
inline void accumulate_rows(float* out, int64_t ld_out, int64_t n, int64_t m, const float* coef,
                            int64_t ld_coef, const float* rows, int64_t ld_rows, int64_t k_begin,
                            int64_t k_end) {
  detail::product_rows<true>(out, ld_out, n, m, coef, ld_coef, rows, ld_rows, k_begin, k_end);
}

// out (n, m) = coef[:, k_begin:k_end] . rows[k_begin:k_end, :] (overwrites; no need to zero it first).
inline void multiply_rows(float* out, int64_t ld_out, int64_t n, int64_t m, const float* coef,
                          int64_t ld_coef, const float* rows, int64_t ld_rows, int64_t k_begin,
                          int64_t k_end) {
  detail::product_rows<false>(out, ld_out, n, m, coef, ld_coef, rows, ld_rows, k_begin, k_end);
}

}  // namespace race::kernels::cpu
