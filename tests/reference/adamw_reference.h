// Plain fp64 reference of the optimizer kernels (kernels/cpu/adamw_cpu.h), following torch.optim.AdamW's
// update step by step, and the global gradient norm.
#pragma once

#include <cstdint>
#include <vector>

namespace race::reference {

struct AdamWState {
  std::vector<double> params, m, v;  // (n) each
};

// One AdamW step on state with grads (n): g = grad_scale * grads; p *= 1 - lr wd; m, v moving averages;
// p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
void adamw_step(AdamWState& state, const std::vector<double>& grads, double lr, double beta1, double beta2,
                double eps, double weight_decay, int64_t step, double grad_scale);

// sqrt(sum grads^2), summed with Kahan compensation.
double grad_norm(const std::vector<double>& grads);

}  // namespace race::reference
