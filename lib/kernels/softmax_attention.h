// Softmax attention, the baseline that RACE replaces: o_t = sum_j softmax_j(q_t . k_j * scale) v_j over the
// visible keys j (causal: j <= t; window W > 0: t - W < j, and j < t + W when bidirectional).
// Device-neutral description; kernels in cpu/ and cuda/ are flash-style (online softmax, tiled, never a
// T x T matrix in memory).
#pragma once

#include <cstdint>

namespace race::kernels {

struct SoftmaxAttentionShape {
  int64_t batch = 1;      // B
  int64_t heads = 1;      // H
  int64_t seq_len = 1;    // T
  int64_t head_dim = 64;  // D
};

struct SoftmaxAttentionOptions {
  bool causal = true;
  int64_t window = 0;  // 0 = full attention; W > 0: key j visible from query t when |t - j| < W
  float scale = 0.f;   // 0 = 1/sqrt(D)
};

struct SoftmaxAttentionInputs {
  const float* q = nullptr;  // (B, H, T, D)
  const float* k = nullptr;  // (B, H, T, D)
  const float* v = nullptr;  // (B, H, T, D)
  const uint8_t* key_mask = nullptr;     // (B, T) 1 = real token; null: all real
  const int32_t* segment_ids = nullptr;  // (B, T) a document is a maximal run of equal ids; null: one
};

struct SoftmaxAttentionGradients {
  float* dq = nullptr;  // (B, H, T, D)
  float* dk = nullptr;  // (B, H, T, D)
  float* dv = nullptr;  // (B, H, T, D)
};

}  // namespace race::kernels
