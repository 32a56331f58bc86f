// Training FLOPs per token of a GPT (model/flops.h).
#include "model/flops.h"

#include <algorithm>

namespace race::model {

double training_flops_per_token(const ModelSpec& spec, const std::vector<ParamInfo>& params,
                                int64_t seq_len) {
  double flops_per_token = 0.0;
  for (const auto& p : params)
    if (p.weight_decay) flops_per_token += 6.0 * static_cast<double>(p.size);
  if (spec.num_classes == 0 && spec.tie_embeddings)
    flops_per_token += 6.0 * static_cast<double>(spec.vocab_size * spec.d_model);
  const double head_dim = static_cast<double>(spec.d_model / spec.heads);
  for (const auto& a : spec.layers) {
    double per_head = 0.0;
    if (a.kind == AttentionKind::race) {
      per_head = 12.0 * static_cast<double>(a.tables * (int64_t{1} << a.bits)) * head_dim;
    } else {
      const double keys = static_cast<double>(a.window > 0 ? std::min(a.window, seq_len) : seq_len);
      per_head = 12.0 * keys * head_dim * (spec.causal && a.window == 0 ? 0.5 : 1.0);
    }
    flops_per_token += per_head * static_cast<double>(spec.heads);
  }
  return flops_per_token;
}

}  // namespace race::model
