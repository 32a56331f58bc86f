// The RACE soft hash on the CPU, forward and backward, for a chunk of rows of one head.
//   u = tanh(W x)                                   (n, L*P)
//   phi_l(x)_r = prod_b sigmoid(2 beta u_{l,b} c_{r,b}),  c_{r,b} = +1 when bit (P-1-b) of r is set, else -1
// The 2^P-way softmax over corners factorises into P independent bits, so phi is built by doubling:
// bit b splits every partial product into its (-1) and (+1) halves. Backward uses
//   d phi_r / d u_b = 2 beta phi_r (c_{r,b} == +1 ? 1 - sig_b : -sig_b),  sig_b = sigmoid(2 beta u_b),
// so du_b = 2 beta (M+_b - sig_b M) with m_r = dphi_r phi_r, M = sum_r m_r, M+_b = sum over r with bit set.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/row_products.h"

namespace race::kernels::cpu {

// exp(x) with relative error below 3e-7 for x in [-87, 88] (clamped outside), written so that loops over
// it vectorise: the libm call does not, and the hash evaluates 4 L P of these per token. NaN stays NaN,
// so a diverged input shows in the output instead of being hashed like a finite one.
inline float exp_fast(float input) {
  const float x = std::min(88.f, std::max(-87.f, input));
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693145751953125f;
  r -= n * 1.428606765330187e-06f;
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const float result = p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return input != input ? input : result;
}

inline float sigmoid_fast(float x) { return 1.f / (1.f + exp_fast(-x)); }

// tanh with absolute error below 2e-7: a series near 0 (where 1 - e^{-2|z|} would cancel), else exp.
inline float tanh_fast(float z) {
  const float a = std::fabs(z);
  const float e = exp_fast(-2.f * a);
  const float large = (1.f - e) / (1.f + e);
  const float a2 = a * a;
  const float small = a * (1.f + a2 * (-1.f / 3.f + a2 * (2.f / 15.f + a2 * (-17.f / 315.f))));
  return std::copysign(a >= 0.0625f ? large : small, z);  // NaN takes the series, which keeps it
}

struct SoftHash {
  const float* planes;    // (L*P, D)
  const float* planes_t;  // (D, round_up16(L*P)): planes transposed, zero-padded columns
  float beta;
  int tables;        // L
  int bits;          // P
  int64_t head_dim;  // D

  int64_t projections() const { return int64_t{tables} * bits; }
  int64_t padded_projections() const { return round_up16(projections()); }
  int64_t corners() const { return int64_t{1} << bits; }
  int64_t buckets() const { return tables * corners(); }

  // x: (n, D) -> u: (n, LPpad) tanh projections, phi: (n, S); plus: (n, LPpad) scratch.
  void forward(const float* x, int64_t n, float* u, float* phi, float* plus) const {
    const int64_t ld = padded_projections();
    multiply_rows(u, ld, n, ld, x, head_dim, planes_t, ld, 0, head_dim);
    const float two_beta = 2.f * beta;
#pragma omp simd
    for (int64_t i = 0; i < n * ld; ++i) {
      u[i] = tanh_fast(u[i]);
      plus[i] = sigmoid_fast(two_beta * u[i]);
    }
    const int64_t S = buckets(), R = corners();
    for (int64_t t = 0; t < n; ++t) {
      for (int l = 0; l < tables; ++l) {
        float* out = phi + t * S + l * R;
        const float* pl = plus + t * ld + int64_t{l} * bits;
        out[0] = 1.f;
        int64_t filled = 1;
        for (int b = 0; b < bits; ++b) {
          for (int64_t r = filled - 1; r >= 0; --r) {
            out[2 * r + 1] = out[r] * pl[b];
            out[2 * r] = out[r] * (1.f - pl[b]);
          }
          filled *= 2;
        }
      }
    }
  }

  // dphi, phi: (n, S); u: (n, LPpad). Writes dx: (n, D) (overwritten) unless null; dz, plus: scratch.
  // Returns d loss / d beta from these rows. Rows whose dphi is zero contribute nothing.
  double backward(const float* dphi, const float* phi, const float* u, int64_t n, float* dz, float* plus,
                  float* dx) const {
    const int64_t lp = projections(), ld = padded_projections(), S = buckets(), R = corners();
    const float two_beta = 2.f * beta;
#pragma omp simd
    for (int64_t i = 0; i < n * ld; ++i) plus[i] = sigmoid_fast(two_beta * u[i]);
    double dbeta = 0.0;
    for (int64_t t = 0; t < n; ++t) {
      for (int l = 0; l < tables; ++l) {
        const float* dp = dphi + t * S + l * R;
        const float* p = phi + t * S + l * R;
        const float* ul = u + t * ld + int64_t{l} * bits;
        const float* pl = plus + t * ld + int64_t{l} * bits;
        float* dzl = dz + t * ld + int64_t{l} * bits;
        float total = 0.f;
        for (int64_t r = 0; r < R; ++r) total += dp[r] * p[r];
        for (int b = 0; b < bits; ++b) {
          const int64_t bit = int64_t{1} << (bits - 1 - b);
          float with_bit = 0.f;
          for (int64_t r = 0; r < R; ++r)
            if (r & bit) with_bit += dp[r] * p[r];
          const float coef = with_bit - pl[b] * total;  // du_b = 2 beta coef
          dbeta += 2.0 * double(ul[b]) * double(coef);
          dzl[b] = two_beta * coef * (1.f - ul[b] * ul[b]);
        }
      }
    }
    if (dx != nullptr) multiply_rows(dx, head_dim, n, head_dim, dz, ld, planes, head_dim, 0, lp);
    return dbeta;
  }
};

}  // namespace race::kernels::cpu
