// RACE attention on the CPU: chunked forward and backward, OpenMP over (batch, head) and within a sequence.
#pragma once

#include "kernels/race_attention.h"

namespace race::kernels::cpu {

// out: (B, H, T, D). Memory beyond the arguments: O(threads * (chunk + S) * D).
void race_attention_forward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                            const RaceAttentionInputs& inputs, float* out);

// dout: (B, H, T, D). Writes every gradient in `grads` that is not null (all overwritten).
// Memory beyond the arguments: O(threads * T * S) floats of scratch plus O(threads * (chunk + S) * D).
void race_attention_backward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                             const RaceAttentionInputs& inputs, const float* dout,
                             const RaceAttentionGradients& grads);

}  // namespace race::kernels::cpu
