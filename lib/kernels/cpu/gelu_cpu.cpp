// GELU (tanh approximation) on the CPU: 16-lane vectors, OpenMP over blocks of elements. A trailing partial
// vector goes through the same vector code on a zero-padded copy, so every element gets the same arithmetic.
#include "kernels/cpu/gelu_cpu.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/cpu/row_products.h"
#include "kernels/cpu/vector_math.h"

namespace race::kernels::cpu {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;
constexpr int64_t kBlock = 4096;  // elements per OpenMP work item: large enough to amortise the scheduling

void check(const char* function, int64_t n) {
  if (n < 0) fail("{}: n = {} must be >= 0", function, n);
}

// sigmoid(2 u(x)), which is 0.5 (1 + tanh(u(x)))
inline vec16 gate(vec16 x) {
  const vec16 u = kSqrt2OverPi * (x + kCubic * x * x * x);
  return 1.f / (1.f + exp16(-2.f * u));
}

inline vec16 forward16(vec16 x) { return x * gate(x); }

inline vec16 backward16(vec16 dy, vec16 x) {
  const vec16 s = gate(x);
  const vec16 du = kSqrt2OverPi * (1.f + 3.f * kCubic * x * x);
  return dy * (s + 2.f * x * s * (1.f - s) * du);
}

}  // namespace

void gelu_forward(float* y, const float* x, int64_t n) {
  check("gelu_forward", n);
  if (n == 0) return;
  if (y == nullptr || x == nullptr) fail("gelu_forward: {} is null", y == nullptr ? "y" : "x");
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t end = std::min(n, b + kBlock);
    int64_t i = b;
    for (; i + 16 <= end; i += 16) store_vec<vec16>(y + i, forward16(load_vec<vec16>(x + i)));
    if (i < end) store_partial(y + i, forward16(load_partial(x + i, end - i)), end - i);
  }
}

void gelu_backward(float* dx, const float* dy, const float* x, int64_t n) {
  check("gelu_backward", n);
  if (n == 0) return;
  if (dx == nullptr || dy == nullptr || x == nullptr)
    fail("gelu_backward: {} is null", dx == nullptr ? "dx" : dy == nullptr ? "dy" : "x");
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t end = std::min(n, b + kBlock);
    int64_t i = b;
    for (; i + 16 <= end; i += 16)
      store_vec<vec16>(dx + i, backward16(load_vec<vec16>(dy + i), load_vec<vec16>(x + i)));
    if (i < end)
      store_partial(dx + i, backward16(load_partial(dy + i, end - i), load_partial(x + i, end - i)), end - i);
  }
}

}  // namespace race::kernels::cpu
