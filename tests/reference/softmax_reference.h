// Plain fp64 reference of softmax attention, the ground truth that the fast kernels are tested against.
// Written for clarity, not speed, and sharing no code with the kernels. Same semantics as
// kernels/softmax_attention.h, per (batch b, head h):
//   query t sees key j when: j <= t if causal; |t - j| < W if window W > 0; key_mask[b, j] != 0 (if given);
//   segment_ids[b, t] == segment_ids[b, j] (if given).
//   s_tj = scale * q_t . k_j (scale 0 means 1/sqrt(D)),  lse_t = log sum_{j visible} exp(s_tj),
//   p_tj = exp(s_tj - lse_t),  o_t = sum_j p_tj v_j.
//   A query that sees no key gets o_t = 0 and lse_t = -inf, and contributes no gradient.
// Scores are materialised per query (O(T) memory); cost O(B H T^2 D).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/softmax_attention.h"

namespace race::reference {

// The inputs of kernels::SoftmaxAttentionInputs as fp64 (and owned) arrays, same layouts.
struct SoftmaxInputs {
  std::vector<double> q, k, v;       // (B, H, T, D)
  std::vector<uint8_t> key_mask;     // (B, T), 1 = real key, 0 = pad; empty: all keys real
  std::vector<int32_t> segment_ids;  // (B, T); empty: one document per row
};

struct SoftmaxForward {
  std::vector<double> out;  // (B, H, T, D)
  std::vector<double> lse;  // (B, H, T)
};

// Gradients of the loss sum(dout * out).
struct SoftmaxGradients {
  std::vector<double> dq, dk, dv;  // (B, H, T, D)
};

// Copies the fp32 kernel inputs (null key_mask / segment_ids stay empty).
SoftmaxInputs to_fp64(const kernels::SoftmaxAttentionShape& shape, const kernels::SoftmaxAttentionInputs& inputs);

SoftmaxForward softmax_attention_forward(const kernels::SoftmaxAttentionShape& shape,
                                         const kernels::SoftmaxAttentionOptions& options,
                                         const SoftmaxInputs& inputs);

// Gradients by the textbook formulas, recomputing the probabilities: dout (B, H, T, D).
//   dv_j = sum_t p_tj dout_t;  ds_tj = p_tj (dout_t . v_j - dout_t . o_t);
//   dq_t = scale sum_j ds_tj k_j;  dk_j = scale sum_t ds_tj q_t.
SoftmaxGradients softmax_attention_backward(const kernels::SoftmaxAttentionShape& shape,
                                            const kernels::SoftmaxAttentionOptions& options,
                                            const SoftmaxInputs& inputs, const std::vector<double>& dout);

}  // namespace race::reference
