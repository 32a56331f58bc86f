// RACE attention (Repeated Arrays-of-Count Estimators, arXiv 2510.04008): the device-neutral interface.
// See docs/race-attention.md for the math as implemented. Per head, with L tables of P frozen Gaussian
// hyperplanes W (shared by q and k), the soft hash of x is, for table l and corner r in {-1,+1}^P,
//   u = tanh(W_l x),  phi_l(x)_r = prod_b sigmoid(2 beta u_b c_{r,b}),   S = L * 2^P buckets.
// Estimators over the (causal: prefix) sums A = sum_j phi(k_j), B = sum_j phi(k_j) v_j^T:
//   bucket: o_t = sum_s phi(q_t)_s B[s,:] / (A[s] + eps)
//   ratio:  o_t = sum_s phi(q_t)_s B[s,:] / (sum_s phi(q_t)_s A[s] + eps)
// Kernels never know about configs or models: they take raw pointers and this plain description.
#pragma once

#include <cstdint>

namespace race::kernels {

enum class RaceEstimator { bucket, ratio };

struct RaceAttentionShape {
  int64_t batch = 1;      // B
  int64_t heads = 1;      // H
  int64_t seq_len = 1;    // T
  int64_t head_dim = 64;  // D
  int tables = 3;         // L
  int bits = 3;           // P (buckets per table R = 2^P)
  bool planes_per_head = false;  // planes (H, L, P, D) instead of (L, P, D)

  int64_t buckets_per_table() const { return int64_t{1} << bits; }
  int64_t buckets() const { return tables * buckets_per_table(); }  // S
};

struct RaceAttentionOptions {
  bool causal = true;
  RaceEstimator estimator = RaceEstimator::bucket;
  float eps = 1e-6f;
};

// All tensors are contiguous, row-major, fp32.
struct RaceAttentionInputs {
  const float* q = nullptr;       // (B, H, T, D)
  const float* k = nullptr;       // (B, H, T, D)
  const float* v = nullptr;       // (B, H, T, D)
  const float* planes = nullptr;  // (L, P, D), or (H, L, P, D) when planes_per_head
  const float* beta = nullptr;    // (H) temperature per head (a fixed beta is H equal values)
  const uint8_t* key_mask = nullptr;     // (B, T) 1 = real token, 0 = pad key (phi = 0); null: all real
  const int32_t* segment_ids = nullptr;  // (B, T) a document is a maximal run of equal ids; null: one
};

struct RaceAttentionGradients {
  float* dq = nullptr;     // (B, H, T, D)
  float* dk = nullptr;     // (B, H, T, D)
  float* dv = nullptr;     // (B, H, T, D)
  float* dbeta = nullptr;  // (H) or null when beta is not learned; overwritten, not accumulated
};

// Validates shapes and options; throws race::Error naming the bad value.
void validate(const RaceAttentionShape& shape, const RaceAttentionOptions& options);

}  // namespace race::kernels
