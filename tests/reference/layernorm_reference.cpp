#include "reference/layernorm_reference.h"

#include <cmath>
#include <cstddef>

namespace race::reference {

LayerNormForward layernorm_forward(const std::vector<double>& x, const std::vector<double>& weight,
                                   const std::vector<double>& bias, int64_t rows, int64_t channels,
                                   double eps) {
  LayerNormForward f{std::vector<double>(x.size()), std::vector<double>(static_cast<size_t>(rows)),
                     std::vector<double>(static_cast<size_t>(rows))};
  for (int64_t n = 0; n < rows; ++n) {
    double mean = 0.0;
    for (int64_t c = 0; c < channels; ++c) mean += x[n * channels + c];
    mean /= static_cast<double>(channels);
    double var = 0.0;
    for (int64_t c = 0; c < channels; ++c) var += (x[n * channels + c] - mean) * (x[n * channels + c] - mean);
    var /= static_cast<double>(channels);
    const double rstd = 1.0 / std::sqrt(var + eps);
    for (int64_t c = 0; c < channels; ++c) {
      const double w = weight.empty() ? 1.0 : weight[c], b = bias.empty() ? 0.0 : bias[c];
      f.y[n * channels + c] = (x[n * channels + c] - mean) * rstd * w + b;
    }
    f.mean[n] = mean;
    f.rstd[n] = rstd;
  }
  return f;
}

LayerNormGradients layernorm_backward(const std::vector<double>& dy, const std::vector<double>& x,
                                      const std::vector<double>& weight, int64_t rows, int64_t channels,
                                      double eps) {
  const LayerNormForward f = layernorm_forward(x, {}, {}, rows, channels, eps);  // y is xhat here
  LayerNormGradients g{std::vector<double>(x.size()), std::vector<double>(static_cast<size_t>(channels)),
                       std::vector<double>(static_cast<size_t>(channels))};
  const double inv_c = 1.0 / static_cast<double>(channels);
  for (int64_t n = 0; n < rows; ++n) {
    const double* xhat = f.y.data() + n * channels;
    for (int64_t j = 0; j < channels; ++j) {
      const double d = dy[n * channels + j];
      g.dweight[j] += d * xhat[j];
      g.dbias[j] += d;
      const double dxhat = d * (weight.empty() ? 1.0 : weight[j]);
      for (int64_t k = 0; k < channels; ++k) {
        const double jacobian = f.rstd[n] * ((j == k ? 1.0 : 0.0) - inv_c - xhat[j] * xhat[k] * inv_c);
        g.dx[n * channels + k] += dxhat * jacobian;
      }
    }
  }
  return g;
}

}  // namespace race::reference
