#include "reference/linear_reference.h"

#include <cstddef>

namespace race::reference {

std::vector<double> linear_forward(const std::vector<double>& x, const std::vector<double>& weight,
                                   const std::vector<double>& bias, int64_t rows, int64_t in, int64_t out) {
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (int64_t n = 0; n < rows; ++n)
    for (int64_t o = 0; o < out; ++o) {
      double s = bias.empty() ? 0.0 : bias[o];
      for (int64_t i = 0; i < in; ++i) s += x[n * in + i] * weight[o * in + i];
      y[n * out + o] = s;
    }
  return y;
}

LinearGradients linear_backward(const std::vector<double>& dy, const std::vector<double>& x,
                                const std::vector<double>& weight, int64_t rows, int64_t in, int64_t out) {
  LinearGradients g{std::vector<double>(static_cast<size_t>(rows * in)),
                    std::vector<double>(static_cast<size_t>(out * in)),
                    std::vector<double>(static_cast<size_t>(out))};
  for (int64_t n = 0; n < rows; ++n)
    for (int64_t o = 0; o < out; ++o) {
      const double d = dy[n * out + o];
      g.dbias[o] += d;
      for (int64_t i = 0; i < in; ++i) {
        g.dx[n * in + i] += d * weight[o * in + i];
        g.dweight[o * in + i] += d * x[n * in + i];
      }
    }
  return g;
}

}  // namespace race::reference
