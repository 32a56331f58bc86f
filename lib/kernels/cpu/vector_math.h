// exp(x) on 16 fp32 lanes at once, for the kernels that need one per element (GELU, softmax cross-entropy).
// glibc's expf is scalar unless -ffast-math is on, and a scalar call per logit costs more than the rest of a
// cross-entropy pass; this one is a handful of vector FMAs. Cephes' method: x = n ln2 + r with |r| <= ln2 / 2
// (ln2 split in two so n ln2 is exact), a degree-7 polynomial for e^r, and 2^n built in the exponent bits.
// Relative error about 1 ulp over the whole range. Inputs are clamped to [-87.3, 88.3], where 2^n stays a
// normal float: exp of anything lower comes out as 1e-38 rather than 0, of anything higher as 1.7e38 rather
// than inf. NaN stays NaN (every comparison with it is false), so a NaN logit still shows up in the loss.
#pragma once

#include <bit>
#include <cstdint>

#include "kernels/cpu/row_products.h"

namespace race::kernels::cpu {

inline vec16 exp16(vec16 x) {
  using ivec16 = int32_t __attribute__((vector_size(64)));
  const vec16 lo = vec16{} - 87.3f, hi = vec16{} + 88.3f;
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
  const ivec16 bits = (__builtin_convertvector(n, ivec16) + 127) << 23;
  return p * std::bit_cast<vec16>(bits);
}

}  // namespace race::kernels::cpu
