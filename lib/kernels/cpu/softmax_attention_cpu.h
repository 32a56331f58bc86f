// Softmax attention on the CPU, flash style: queries and keys are processed in tiles with an online
// softmax in fp32, so no T x T matrix is ever stored, and tiles outside the causal/window band are skipped
// (a window W costs O(T * W * D)). OpenMP over (batch, head, tile). Results are bit-identical for any
// thread count: every output element is accumulated by one thread in a fixed order, with no atomics.
// Semantics (visibility, masks, segments, scale) are those of kernels/softmax_attention.h; a query that
// sees no key gets output 0 and lse = -inf, and contributes no gradient.
#pragma once

#include "kernels/softmax_attention.h"

namespace race::kernels::cpu {

// out: (B, H, T, D). lse: (B, H, T) natural-log log-sum-exp of the scaled scores per query, saved for the
// backward; may be null. Memory beyond the arguments: O(threads * tile * D) floats.
// Throws race::Error for an invalid shape, options or a missing input.
void softmax_attention_forward(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                               const SoftmaxAttentionInputs& inputs, float* out, float* lse);

// out, dout: (B, H, T, D); lse: (B, H, T), as written by softmax_attention_forward for the same inputs.
// Writes every gradient in `grads` that is not null (dq, dk, dv overwritten). Probabilities are recomputed
// tile by tile from lse; D_t = dout_t . out_t. Memory beyond the arguments: O(threads * tile * D) floats.
void softmax_attention_backward(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                                const SoftmaxAttentionInputs& inputs, const float* out, const float* lse,
                                const float* dout, const SoftmaxAttentionGradients& grads);

}  // namespace race::kernels::cpu
