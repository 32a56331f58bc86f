// Plain fp64 reference of LayerNorm over the last dimension (kernels/cpu/layernorm_cpu.h):
//   y = (x - mean) / sqrt(var + eps) * weight + bias, var the biased variance of the row.
#pragma once

#include <cstdint>
#include <vector>

namespace race::reference {

struct LayerNormForward {
  std::vector<double> y;     // (N, C)
  std::vector<double> mean;  // (N)
  std::vector<double> rstd;  // (N) 1 / sqrt(var + eps)
};

// x (N, C); weight, bias (C), empty meaning ones and zeros.
LayerNormForward layernorm_forward(const std::vector<double>& x, const std::vector<double>& weight,
                                   const std::vector<double>& bias, int64_t rows, int64_t channels,
                                   double eps);

struct LayerNormGradients {
  std::vector<double> dx;       // (N, C)
  std::vector<double> dweight;  // (C)
  std::vector<double> dbias;    // (C)
};

// Gradients of sum(dy * y), dy (N, C), by the chain rule through xhat = (x - mean) rstd written out term by
// term (d xhat_j / d x_k = rstd (delta_jk - 1/C - xhat_j xhat_k / C)), O(N C^2): a different route from the
// kernel's closed form. Statistics are recomputed from x.
LayerNormGradients layernorm_backward(const std::vector<double>& dy, const std::vector<double>& x,
                                      const std::vector<double>& weight, int64_t rows, int64_t channels,
                                      double eps);

}  // namespace race::reference
