// RACE attention on the CPU: chunked forward and backward, OpenMP over (batch, head) and within a sequence.
#pragma once

#include "kernels/race_attention.h"

namespace race::kernels::cpu {

// out: (B, H, T, D). Memory beyond the arguments: O(threads * (chunk + S) * D).
void race_attention_forward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                            const RaceAttentionInputs& inputs, float* out);

// Caller-provided memory for the backward's per-token storage, so a trainer can take it from a planned
// arena and a loop of calls does not map and fault fresh pages every time.
struct Scratch {
  void* data = nullptr;  // null: the backward allocates what it needs itself
  int64_t bytes = 0;
};

// Bytes of Scratch the causal backward needs for this shape at the current OpenMP thread count:
// 2 * S * T floats per thread, or per row when rows are split into spans (fewer rows than threads).
// Bidirectional needs none.
int64_t race_attention_backward_scratch_bytes(const RaceAttentionShape& shape,
                                              const RaceAttentionOptions& options);

// dout: (B, H, T, D). Writes every gradient in `grads` that is not null (all overwritten).
// Memory beyond the arguments and the scratch: O(threads * (chunk + S) * D).
void race_attention_backward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                             const RaceAttentionInputs& inputs, const float* dout,
                             const RaceAttentionGradients& grads, Scratch scratch = {});

}  // namespace race::kernels::cpu
