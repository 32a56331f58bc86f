#include "reference/adamw_reference.h"

#include <cmath>
#include <cstddef>

namespace race::reference {

void adamw_step(AdamWState& state, const std::vector<double>& grads, double lr, double beta1, double beta2,
                double eps, double weight_decay, int64_t step, double grad_scale) {
  const double bias1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  for (size_t i = 0; i < grads.size(); ++i) {
    const double g = grad_scale * grads[i];
    state.params[i] *= 1.0 - lr * weight_decay;
    state.m[i] = beta1 * state.m[i] + (1.0 - beta1) * g;
    state.v[i] = beta2 * state.v[i] + (1.0 - beta2) * g * g;
    const double m_hat = state.m[i] / bias1;
    const double v_hat = state.v[i] / bias2;
    state.params[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
  }
}

double grad_norm(const std::vector<double>& grads) {
  double sum = 0.0, compensation = 0.0;
  for (double g : grads) {
    const double y = g * g - compensation;
    const double t = sum + y;
    compensation = (t - sum) - y;
    sum = t;
  }
  return std::sqrt(sum);
}

}  // namespace race::reference
