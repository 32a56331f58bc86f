#include "reference/gelu_reference.h"

#include <cmath>
#include <cstddef>
#include <numbers>

namespace race::reference {
namespace {

const double kSqrt2OverPi = std::sqrt(2.0 / std::numbers::pi);

}  // namespace

std::vector<double> gelu_forward(const std::vector<double>& x) {
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double u = kSqrt2OverPi * (x[i] + 0.044715 * x[i] * x[i] * x[i]);
    y[i] = 0.5 * x[i] * (1.0 + std::tanh(u));
  }
  return y;
}

std::vector<double> gelu_backward(const std::vector<double>& dy, const std::vector<double>& x) {
  std::vector<double> dx(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double u = kSqrt2OverPi * (x[i] + 0.044715 * x[i] * x[i] * x[i]);
    const double du = kSqrt2OverPi * (1.0 + 3.0 * 0.044715 * x[i] * x[i]);
    const double t = std::tanh(u);
    dx[i] = dy[i] * (0.5 * (1.0 + t) + 0.5 * x[i] * (1.0 - t * t) * du);
  }
  return dx;
}

}  // namespace race::reference
