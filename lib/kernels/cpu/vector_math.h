// Vector helpers of the elementwise CPU kernels (GELU, softmax cross-entropy): exp on 16 fp32 lanes, and
// loads / stores of a partial vector so that a row's tail goes through the same vector code.
//
// exp16: glibc's expf is scalar unless -ffast-math is on, and a scalar call per logit costs more than the
// rest of a cross-entropy pass; this is a handful of vector FMAs. Cephes' method: x = n ln2 + r with |r| <=
// ln2 / 2 (ln2 split in two so that n ln2 is exact), a degree-7 polynomial for e^r, and 2^n built in the
// exponent bits; relative error about 1 ulp. 2^n is applied as two factors 2^(n/2) 2^(n - n/2), each a normal
// float, so results that are subnormal, underflow to 0 or overflow to inf come out as IEEE arithmetic rounds
// them (x is clamped to [-104, 89], just beyond both ends). NaN stays NaN (every comparison with it is
// false).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>

#include "kernels/cpu/row_products.h"

namespace race::kernels::cpu {

inline vec16 exp16(vec16 x) {
  using ivec16 = int32_t __attribute__((vector_size(64)));
  const vec16 lo = vec16{} - 104.f, hi = vec16{} + 89.f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  // Round-to-nearest by the 1.5 * 2^23 trick: the addition pushes the fraction bits out of the mantissa.
  const vec16 shifter = vec16{} + 12582912.f;
  const vec16 n = (x * 1.44269504088896341f + shifter) - shifter;
  const vec16 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  vec16 p = vec16{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.f;
  const ivec16 n1 = __builtin_convertvector(n, ivec16) >> 1;  // n in [-150, 128]: both halves in [-75, 64]
  const ivec16 n2 = __builtin_convertvector(n, ivec16) - n1;
  return p * std::bit_cast<vec16>((n1 + 127) << 23) * std::bit_cast<vec16>((n2 + 127) << 23);
}

// The first `count` (< 16) floats at p as a vector whose other lanes are zero.
inline vec16 load_partial(const float* p, int64_t count) {
  float buf[16] = {};
  std::copy(p, p + count, buf);
  return load_vec<vec16>(buf);
}

// Stores the first `count` (< 16) lanes of v at p.
inline void store_partial(float* p, vec16 v, int64_t count) {
  float buf[16];
  store_vec<vec16>(buf, v);
  std::copy(buf, buf + count, p);
}

}  // namespace race::kernels::cpu
