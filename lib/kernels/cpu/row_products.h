// The one product every chunked linear-attention step reduces to, register-blocked for the CPU:
//   accumulate_rows:  out[i, :] += sum_{k in [k_begin, k_end)} coef[i, k] * rows[k, :]   (n rows, m cols)
//   multiply_rows:    the same with out overwritten
// A dot product x . y^T is the same call with rows = y^T, so callers keep a transposed copy instead of
// reducing across vector lanes. A block of 8 output rows times 32 columns stays in registers while k
// runs, so each loaded row vector feeds 8 FMAs: this is what lifts it from a load/store-bound axpy loop
// to near the FMA limit (on Zen 4, one core: 8 x 32 blocks reach 110 GFLOP/s where 4 x 64 reach 53).
// Leftover rows take blocks of 4 and 1; leftover columns 16- and 8-wide vectors, then a plain loop.
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
inline void product_block(float* out, int64_t ld_out, const float* coef, int64_t ld_coef, const float* rows,
                          int64_t ld_rows, int64_t k_begin, int64_t k_end, int64_t col) {
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
                              const float* rows, int64_t ld_rows, int64_t k_begin, int64_t k_end, int64_t m) {
  int64_t col = 0;
  for (; col + 32 <= m; col += 32)
    product_block<kAccumulate, kRows, 2, vec16>(out, ld_out, coef, ld_coef, rows, ld_rows, k_begin, k_end,
                                                col);
  for (; col + 16 <= m; col += 16)
    product_block<kAccumulate, kRows, 1, vec16>(out, ld_out, coef, ld_coef, rows, ld_rows, k_begin, k_end,
                                                col);
  for (; col + 8 <= m; col += 8)
    product_block<kAccumulate, kRows, 1, vec8>(out, ld_out, coef, ld_coef, rows, ld_rows, k_begin, k_end,
                                               col);
  for (int i = 0; i < kRows; ++i)
    for (int64_t j = col; j < m; ++j) {
      float total = kAccumulate ? out[i * ld_out + j] : 0.f;
      for (int64_t k = k_begin; k < k_end; ++k) total += coef[i * ld_coef + k] * rows[k * ld_rows + j];
      out[i * ld_out + j] = total;
    }
}

template <bool kAccumulate>
inline void product_rows(float* out, int64_t ld_out, int64_t n, int64_t m, const float* coef, int64_t ld_coef,
                         const float* rows, int64_t ld_rows, int64_t k_begin, int64_t k_end) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    product_row_block<kAccumulate, 8>(out + i * ld_out, ld_out, coef + i * ld_coef, ld_coef, rows, ld_rows,
                                      k_begin, k_end, m);
  for (; i + 4 <= n; i += 4)
    product_row_block<kAccumulate, 4>(out + i * ld_out, ld_out, coef + i * ld_coef, ld_coef, rows, ld_rows,
                                      k_begin, k_end, m);
  for (; i < n; ++i)
    product_row_block<kAccumulate, 1>(out + i * ld_out, ld_out, coef + i * ld_coef, ld_coef, rows, ld_rows,
                                      k_begin, k_end, m);
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

// dst[j, i] = src[i, j] for i < rows, j < cols. 8 x 8 blocks go through registers (unpack, then
// 64-bit and 128-bit lane shuffles); edges are copied one element at a time.
inline void transpose(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst,
                      int64_t ld_dst) {
  using ivec8 = int __attribute__((vector_size(32)));
  int64_t i0 = 0;
  for (; i0 + 8 <= rows; i0 += 8) {
    int64_t j0 = 0;
    for (; j0 + 8 <= cols; j0 += 8) {
      vec8 r[8], t[8], u[8];
      for (int i = 0; i < 8; ++i) r[i] = load_vec<vec8>(src + (i0 + i) * ld_src + j0);
      for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shuffle(r[i], r[i + 1], ivec8{0, 8, 1, 9, 4, 12, 5, 13});
        t[i + 1] = __builtin_shuffle(r[i], r[i + 1], ivec8{2, 10, 3, 11, 6, 14, 7, 15});
      }
      for (int half = 0; half < 8; half += 4)
        for (int k = 0; k < 2; ++k) {
          u[half + 2 * k] = __builtin_shuffle(t[half + k], t[half + k + 2], ivec8{0, 1, 8, 9, 4, 5, 12, 13});
          u[half + 2 * k + 1] =
              __builtin_shuffle(t[half + k], t[half + k + 2], ivec8{2, 3, 10, 11, 6, 7, 14, 15});
        }
      // u[c] (c < 4) holds columns c and c + 4 of rows 0-3; u[4 + c] the same for rows 4-7
      for (int c = 0; c < 4; ++c) {
        store_vec<vec8>(dst + (j0 + c) * ld_dst + i0,
                        __builtin_shuffle(u[c], u[4 + c], ivec8{0, 1, 2, 3, 8, 9, 10, 11}));
        store_vec<vec8>(dst + (j0 + c + 4) * ld_dst + i0,
                        __builtin_shuffle(u[c], u[4 + c], ivec8{4, 5, 6, 7, 12, 13, 14, 15}));
      }
    }
    for (; j0 < cols; ++j0)
      for (int64_t i = i0; i < i0 + 8; ++i) dst[j0 * ld_dst + i] = src[i * ld_src + j0];
  }
  for (; i0 < rows; ++i0)
    for (int64_t j = 0; j < cols; ++j) dst[j * ld_dst + i0] = src[i0 * ld_src + j];
}

}  // namespace race::kernels::cpu
