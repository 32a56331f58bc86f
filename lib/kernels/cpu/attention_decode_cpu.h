// One generated token of attention from a recurrent state, on the CPU. A causal RACE layer's whole past
// is (A, B) = (sum phi(k), sum phi(k) v^T): S + S*D floats per head whatever the length, so each token
// costs O(S D) — the property softmax caches do not have. Softmax decodes against a key/value cache (a
// ring of W entries for a sliding window). Both give the same output as the full kernels at that
// position (tested against them through the model).
#pragma once

#include <cstdint>

#include "kernels/race_attention.h"

namespace race::kernels::cpu {

// q, k, v, out: (H, D) for the new token; planes as race_attention_forward; beta (H).
// key_sums (H, S) and value_sums (H, S, D) hold the state before the token and are updated in place
// (zero them to start a sequence).
void race_attention_decode(const RaceAttentionShape& shape, const RaceAttentionOptions& options, const float* q,
                           const float* k, const float* v, const float* planes, const float* beta, float* key_sums,
                           float* value_sums, float* out);

// Appends (k, v) at position `position` (0-based) to the cache and attends q over the visible keys:
// positions max(0, position - W + 1) .. position (W = window, or all when window is 0).
// keys, values: (H, capacity, D) with capacity >= W (window) or > position (full); slot = position % capacity.
void softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale, const float* q,
                              const float* k, const float* v, float* keys, float* values, int64_t capacity,
                              int64_t position, float* out);

}  // namespace race::kernels::cpu
