// Plain fp64 reference of softmax cross-entropy with an ignore index (kernels/cpu/cross_entropy_cpu.h):
//   loss_n = log sum_v exp(logits[n, v]) - logits[n, target_n]   for target_n != -1.
#pragma once

#include <cstdint>
#include <vector>

namespace race::reference {

struct CrossEntropyForward {
  std::vector<double> losses;  // (N), 0 for ignored rows
  double loss_sum = 0.0;       // over the counted rows
  int64_t count = 0;           // rows whose target is not -1
};

// logits (N, V), targets (N) in [0, V) or -1.
CrossEntropyForward cross_entropy_forward(const std::vector<double>& logits,
                                          const std::vector<int32_t>& targets, int64_t vocab);

// Gradient of loss_sum: softmax(logits[n]) - onehot(target_n) per counted row, 0 for ignored rows. (N, V)
std::vector<double> cross_entropy_backward(const std::vector<double>& logits,
                                           const std::vector<int32_t>& targets, int64_t vocab);

}  // namespace race::reference
