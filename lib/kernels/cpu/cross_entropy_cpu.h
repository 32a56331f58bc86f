// Softmax cross-entropy on the CPU, the loss and its gradient in one pass over the logits:
//   loss_n = logsumexp(logits[n, :]) - logits[n, target_n]   for every row whose target is not -1,
//   dlogits[n, :] = grad_scale * (softmax(logits[n, :]) - onehot(target_n))   (0 for ignored rows).
// No probabilities are stored: exp(l - max) goes straight into dlogits (which may be logits itself, saving
// an (N, V) buffer). Numerically stable (the row maximum is subtracted; sums of exp in fp64).
#pragma once

#include <cstdint>

namespace race::kernels::cpu {

// The ignore index: a row with this target contributes no loss, no count and zero gradient (padding,
// unmasked positions of a masked LM).
constexpr int32_t kIgnoreTarget = -1;

struct CrossEntropyStats {
  double loss_sum = 0.0;  // sum of loss_n over the counted rows, added in row order
  int64_t count = 0;      // rows whose target is not kIgnoreTarget
  double mean() const { return count > 0 ? loss_sum / static_cast<double>(count) : 0.0; }
};

// Rows of targets (N) that are not kIgnoreTarget: 1 / count is the grad_scale of the mean loss.
int64_t count_targets(const int32_t* targets, int64_t rows);

// logits (N, V), targets (N) in [0, V) or kIgnoreTarget. losses (N, may be null) gets loss_n (0 for ignored
// rows). dlogits (N, V, may be null for evaluation) gets grad_scale * dloss_sum / dlogits, overwritten; it
// may be logits (in place). grad_scale: 1 / count_targets for the mean of this batch; 1 / (targets over all
// micro-batches) under gradient accumulation, so the accumulated gradient is that of the step's mean.
// Throws race::Error for a target outside [0, V) other than kIgnoreTarget, naming it and its row, before
// writing anything. Deterministic for any thread count (rows are independent; loss_sum adds them in order).
CrossEntropyStats softmax_cross_entropy(float* dlogits, float* losses, const float* logits,
                                        const int32_t* targets, int64_t rows, int64_t vocab,
                                        float grad_scale);

}  // namespace race::kernels::cpu
