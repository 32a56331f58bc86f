// One generated token of attention on CUDA devices, with the semantics of kernels/cpu/attention_decode_cpu.h:
// causal RACE from its recurrent state (key_sums (H, S), value_sums (H, S, D), updated in place), and softmax
// against a key/value cache (H, capacity, D) written at slot position % capacity. q, k, v, out: (H, D).
// Argument checks (causal, cache capacity) are the caller's. Declared without CUDA headers; defined in
// attention_decode_cuda.cu. Neither synchronises (softmax's score scratch returns to the stream-ordered
// pool in stream order).
#pragma once

#include <cstdint>

#include "kernels/race_attention.h"

namespace race::kernels::cuda {

void race_attention_decode(const RaceAttentionShape& shape, const RaceAttentionOptions& options, const float* q,
                           const float* k, const float* v, const float* planes, const float* beta, float* key_sums,
                           float* value_sums, float* out);

void softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale, const float* q,
                              const float* k, const float* v, float* keys, float* values, int64_t capacity,
                              int64_t position, float* out);

}  // namespace race::kernels::cuda
