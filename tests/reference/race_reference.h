// Plain fp64 reference of RACE attention, the ground truth that the fast kernels are tested against.
// Written for clarity, not speed, and sharing no code with the kernels. Same semantics as
// kernels/race_attention.h:
//   u = tanh(W_l x),  phi_l(x)_r = prod_b sigmoid(2 beta_h u_b c_{r,b}),  c_{r,b} = +1 if bit (P-1-b) of r is
//   set, else -1 (itertools.product([-1, 1], repeat=P) order);  S = L * 2^P,  s = l * 2^P + r.
//   A pad key (key_mask 0) has phi(k) = 0 exactly. Queries at pad positions still produce outputs.
//   Documents are the contiguous runs of equal segment ids in a row (an id that recurs after a different
//   one starts a new document). Query t sees key j when both are in the same document, and j <= t if causal.
//   Over the visible keys V(t): A_t[s] = sum_j phi(k_j)_s,  B_t[s,:] = sum_j phi(k_j)_s v_j.
//     bucket: o_t = sum_s phi(q_t)_s B_t[s,:] / (A_t[s] + eps)
//     ratio:  o_t = sum_s phi(q_t)_s B_t[s,:] / (sum_s phi(q_t)_s A_t[s] + eps)
//   A query with no visible real key gets o_t = 0.
//
// Costs per (batch, head): race_attention_forward and race_attention_backward use the per-query pairwise
// form (o_t = sum_{j in V(t)} a_tj v_j with a_tj computed from phi(q_t), phi(k_j) and A_t), O(T^2 (S + D));
// race_attention_forward_literal builds A_t and B_t explicitly for every query, O(T^2 S D), and exists to
// cross-check the pairwise form on small problems; the *_scan functions run along each document, O(T S D),
// for long sequences (T in the tens of thousands).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/race_attention.h"

namespace race::reference {

using kernels::RaceAttentionOptions;
using kernels::RaceAttentionShape;
using kernels::RaceEstimator;

// The inputs of kernels::RaceAttentionInputs as fp64 (and owned) arrays, same layouts:
// q, k, v (B, H, T, D); planes (L, P, D) or (H, L, P, D) when shape.planes_per_head; beta (H).
struct RaceInputs {
  std::vector<double> q, k, v, planes, beta;
  std::vector<uint8_t> key_mask;     // (B, T), 1 = real key, 0 = pad; empty: all keys real
  std::vector<int32_t> segment_ids;  // (B, T); empty: one document per row
};

// Gradients of the loss sum(dout * out): dq, dk, dv (B, H, T, D) and dbeta (H), always all four.
struct RaceGradients {
  std::vector<double> dq, dk, dv, dbeta;
};

// Copies the fp32 kernel inputs (null key_mask / segment_ids stay empty).
RaceInputs to_fp64(const RaceAttentionShape& shape, const kernels::RaceAttentionInputs& inputs);

// out (B, H, T, D).
std::vector<double> race_attention_forward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                           const RaceInputs& inputs);
std::vector<double> race_attention_forward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                           const kernels::RaceAttentionInputs& inputs);

// The same output, computed literally: explicit A_t (S) and B_t (S x D) for every query. O(T^2 S D).
std::vector<double> race_attention_forward_literal(const RaceAttentionShape& shape,
                                                   const RaceAttentionOptions& options, const RaceInputs& inputs);

// The same output and gradients by scans along each document (inclusive prefix sums A_t, B_t when causal,
// document totals when bidirectional; suffix sums of dA_t, dB_t for the key gradients), O(T S D) time and
// O(T S + S D) memory per (batch, head): for sequences too long for the pairwise form. Still fp64, not
// chunked, one token at a time; checked against the pairwise form in test_race_reference.
std::vector<double> race_attention_forward_scan(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                                const RaceInputs& inputs);
RaceGradients race_attention_backward_scan(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                           const RaceInputs& inputs, const std::vector<double>& dout);

// Gradients of sum(dout * out) by hand-derived formulas; dout (B, H, T, D).
RaceGradients race_attention_backward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                      const RaceInputs& inputs, const std::vector<double>& dout);
RaceGradients race_attention_backward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                      const kernels::RaceAttentionInputs& inputs, const float* dout);

// sum(dout * out), the loss whose gradients race_attention_backward returns.
double race_attention_loss(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                           const RaceInputs& inputs, const std::vector<double>& dout);

// Building blocks, exposed for tests.

// Soft hash phi(x) (S = tables * 2^bits values) of one vector x (dim) under one head's planes (tables, bits,
// dim) and temperature beta.
std::vector<double> soft_hash(const double* x, const double* planes, int tables, int bits, int64_t dim,
                              double beta);

// Backward of soft_hash: adds dL/dx to dx (dim) for dL/dphi = dphi (S) and returns dL/dbeta.
double soft_hash_backward(const double* x, const double* planes, int tables, int bits, int64_t dim, double beta,
                          const double* dphi, double* dx);

// Document number of every position of row b: 0, 1, 2, ... along the contiguous runs of equal segment ids
// (all 0 without segment ids).
std::vector<int64_t> documents(const RaceAttentionShape& shape, const RaceInputs& inputs, int64_t b);

// Whether query t sees key j (position-wise; a pad key is seen but has phi = 0).
bool visible(const RaceAttentionOptions& options, const std::vector<int64_t>& doc, int64_t t, int64_t j);

// Offset of head h's planes (L, P, D) inside the planes array.
int64_t planes_offset(const RaceAttentionShape& shape, int64_t h);

}  // namespace race::reference
