#include "reference/rope_reference.h"

#include <cmath>
#include <cstddef>

namespace race::reference {
namespace {

// Turns every pair of x by sign * angle.
std::vector<double> turn(const std::vector<double>& x, const std::vector<int32_t>& positions, int64_t batch,
                         int64_t heads, int64_t seq_len, int64_t head_dim, double base, double sign) {
  std::vector<double> out(x.size());
  const int64_t half = head_dim / 2;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t t = 0; t < seq_len; ++t) {
        const double pos = positions.empty() ? static_cast<double>(t) : positions[b * seq_len + t];
        const int64_t row = ((b * heads + h) * seq_len + t) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const double angle =
              sign * pos / std::pow(base, static_cast<double>(2 * i) / static_cast<double>(head_dim));
          const double c = std::cos(angle), s = std::sin(angle);
          const double lo = x[row + i], hi = x[row + i + half];
          out[row + i] = lo * c - hi * s;
          out[row + i + half] = lo * s + hi * c;
        }
      }
  return out;
}

}  // namespace

std::vector<double> rope_forward(const std::vector<double>& x, const std::vector<int32_t>& positions,
                                 int64_t batch, int64_t heads, int64_t seq_len, int64_t head_dim,
                                 double base) {
  return turn(x, positions, batch, heads, seq_len, head_dim, base, 1.0);
}

std::vector<double> rope_backward(const std::vector<double>& dout, const std::vector<int32_t>& positions,
                                  int64_t batch, int64_t heads, int64_t seq_len, int64_t head_dim,
                                  double base) {
  return turn(dout, positions, batch, heads, seq_len, head_dim, base, -1.0);
}

}  // namespace race::reference
