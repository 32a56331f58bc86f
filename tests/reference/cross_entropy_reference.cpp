#include "reference/cross_entropy_reference.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace race::reference {
namespace {

double log_sum_exp(const double* row, int64_t n) {
  const double max = *std::max_element(row, row + n);
  double sum = 0.0;
  for (int64_t v = 0; v < n; ++v) sum += std::exp(row[v] - max);
  return max + std::log(sum);
}

}  // namespace

CrossEntropyForward cross_entropy_forward(const std::vector<double>& logits,
                                          const std::vector<int32_t>& targets, int64_t vocab) {
  CrossEntropyForward f;
  f.losses.assign(targets.size(), 0.0);
  for (size_t n = 0; n < targets.size(); ++n) {
    if (targets[n] == -1) continue;
    const double* row = logits.data() + static_cast<int64_t>(n) * vocab;
    f.losses[n] = log_sum_exp(row, vocab) - row[targets[n]];
    f.loss_sum += f.losses[n];
    ++f.count;
  }
  return f;
}

std::vector<double> cross_entropy_backward(const std::vector<double>& logits,
                                           const std::vector<int32_t>& targets, int64_t vocab) {
  std::vector<double> d(logits.size(), 0.0);
  for (size_t n = 0; n < targets.size(); ++n) {
    if (targets[n] == -1) continue;
    const double* row = logits.data() + static_cast<int64_t>(n) * vocab;
    double* drow = d.data() + static_cast<int64_t>(n) * vocab;
    const double lse = log_sum_exp(row, vocab);
    for (int64_t v = 0; v < vocab; ++v) drow[v] = std::exp(row[v] - lse);
    drow[targets[n]] -= 1.0;
  }
  return d;
}

}  // namespace race::reference
