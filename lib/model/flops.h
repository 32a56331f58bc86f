// The training cost of a GPT in FLOPs per token, counted the way model-FLOPs utilisation (MFU) counts it:
// the useful work of one forward and backward pass, not what the kernels happen to execute. race-train logs
// it before the first step; race-bench model divides its achieved rate by it.
#pragma once

#include <cstdint>
#include <vector>

#include "model/gpt.h"

namespace race::model {

// 6 per weight of every matrix a token goes through (forward 2, backward 4): the parameters with
// weight_decay set, plus a tied LM head's V x C (its weights are wte, which does not decay). Plus attention:
// RACE about 3 x 4 S D per head (the chunked form, forward and backward), softmax 3 x 4 T D / 2 per head when
// causal (T D when not), with T capped by a window. `params` is Gpt::params() of a model of `spec`; seq_len
// is T. Recomputation (spec.recompute) re-runs forwards that MFU does not count, and neither does this.
double training_flops_per_token(const ModelSpec& spec, const std::vector<ParamInfo>& params, int64_t seq_len);

}  // namespace race::model
