// AdamW and the global gradient norm on the CPU: OpenMP over the flat buffer, elementwise fp32 updates
// with the bias corrections computed once in fp64.
#include "kernels/cpu/adamw_cpu.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace race::kernels::cpu {

void adamw_step(float* params, const float* grads, float* m, float* v, int64_t n, const AdamWOptions& o) {
  if (n < 0) fail("adamw_step: n = {} must be >= 0", n);
  if (!(o.lr >= 0.f && std::isfinite(o.lr))) fail("adamw_step: lr = {} must be finite and >= 0", o.lr);
  if (!(o.beta1 >= 0.f && o.beta1 < 1.f)) fail("adamw_step: beta1 = {} must be in [0, 1)", o.beta1);
  if (!(o.beta2 >= 0.f && o.beta2 < 1.f)) fail("adamw_step: beta2 = {} must be in [0, 1)", o.beta2);
  if (!(o.eps > 0.f && std::isfinite(o.eps))) fail("adamw_step: eps = {} must be finite and > 0", o.eps);
  if (!(o.weight_decay >= 0.f && std::isfinite(o.weight_decay)))
    fail("adamw_step: weight_decay = {} must be finite and >= 0", o.weight_decay);
  if (o.step < 1) fail("adamw_step: step = {} must be >= 1 (the first update is step 1)", o.step);
  if (!std::isfinite(o.grad_scale)) fail("adamw_step: grad_scale = {} must be finite", o.grad_scale);
  if (n == 0) return;
  if (params == nullptr || grads == nullptr || m == nullptr || v == nullptr)
    fail("adamw_step: {} is null", params == nullptr  ? "params"
                                   : grads == nullptr ? "grads"
                                   : m == nullptr     ? "m"
                                                      : "v");

  const double step = static_cast<double>(o.step);
  // p - (lr wd) p rather than torch's p (1 - lr wd): at lr wd = 1e-4 the fp32 factor 1 - lr wd is off by
  // 3e-8, which is 3e-4 of the decay it stands for.
  const float lr_wd = static_cast<float>(static_cast<double>(o.lr) * static_cast<double>(o.weight_decay));
  const float step_size = static_cast<float>(o.lr / (1.0 - std::pow(static_cast<double>(o.beta1), step)));
  const float inv_sqrt_bc2 =
      static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(static_cast<double>(o.beta2), step)));
  const float b1 = o.beta1, b2 = o.beta2, c1 = 1.f - o.beta1, c2 = 1.f - o.beta2, eps = o.eps,
              gs = o.grad_scale;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grads[i] * gs;
    const float mi = b1 * m[i] + c1 * g;
    const float vi = b2 * v[i] + c2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    params[i] -= lr_wd * params[i] + step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

double grad_norm(const float* grads, int64_t n) {
  if (n < 0) fail("grad_norm: n = {} must be >= 0", n);
  if (n > 0 && grads == nullptr) fail("grad_norm: grads is null");
  constexpr int64_t kBlock = int64_t{1} << 16;  // elements per partial sum: fixed, whatever the thread count
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));  // (blocks)
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const float* g = grads + b * kBlock;
    const int64_t len = std::min(kBlock, n - b * kBlock);
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < len; ++i) sum += static_cast<double>(g[i]) * static_cast<double>(g[i]);
    partial[b] = sum;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return std::sqrt(total);
}

float clip_scale(double norm, double max_norm) {
  if (!std::isfinite(norm)) return std::numeric_limits<float>::quiet_NaN();
  if (max_norm <= 0.0) return 1.f;
  return static_cast<float>(std::min(1.0, max_norm / (norm + 1e-6)));
}

}  // namespace race::kernels::cpu
