// Single-token RACE and softmax attention for generation (see the header).
#include "kernels/cpu/attention_decode_cpu.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/soft_hash.h"

namespace race::kernels::cpu {

void race_attention_decode(const RaceAttentionShape& shape, const RaceAttentionOptions& options, const float* q,
                           const float* k, const float* v, const float* planes, const float* beta, float* key_sums,
                           float* value_sums, float* out) {
  validate(shape, options);
  RACE_CHECK(options.causal, "race attention decode: only causal layers generate token by token");
  const int64_t H = shape.heads, D = shape.head_dim, S = shape.buckets();
  const int64_t lp = int64_t{shape.tables} * shape.bits, lp_padded = round_up16(lp);
  std::vector<float> planes_t(static_cast<size_t>(D * lp_padded)), u(static_cast<size_t>(lp_padded)),
      plus(static_cast<size_t>(lp_padded)), phi_q(static_cast<size_t>(S)), phi_k(static_cast<size_t>(S));
  for (int64_t h = 0; h < H; ++h) {
    const float* head_planes = planes + (shape.planes_per_head ? h * lp * D : 0);
    std::fill(planes_t.begin(), planes_t.end(), 0.f);
    transpose(head_planes, D, lp, D, planes_t.data(), lp_padded);
    const SoftHash hash{head_planes, planes_t.data(), beta[h], shape.tables, shape.bits, D};
    hash.forward(q + h * D, 1, u.data(), phi_q.data(), plus.data());
    hash.forward(k + h * D, 1, u.data(), phi_k.data(), plus.data());
    float* a = key_sums + h * S;        // (S)
    float* b = value_sums + h * S * D;  // (S, D)
    for (int64_t s = 0; s < S; ++s) {
      a[s] += phi_k[s];
      for (int64_t d = 0; d < D; ++d) b[s * D + d] += phi_k[s] * v[h * D + d];
    }
    double den = options.eps;
    if (options.estimator == RaceEstimator::ratio)
      for (int64_t s = 0; s < S; ++s) den += double(phi_q[s]) * a[s];
    float* o = out + h * D;
    std::fill_n(o, D, 0.f);
    for (int64_t s = 0; s < S; ++s) {
      const double w = options.estimator == RaceEstimator::bucket ? phi_q[s] / (double(a[s]) + options.eps)
                                                                  : phi_q[s] / den;
      for (int64_t d = 0; d < D; ++d) o[d] += static_cast<float>(w) * b[s * D + d];
    }
  }
}

void softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale, const float* q,
                              const float* k, const float* v, float* keys, float* values, int64_t capacity,
                              int64_t position, float* out) {
  const int64_t D = head_dim;
  if (window > 0 ? capacity < window : capacity <= position)
    fail("softmax attention decode: a cache of {} positions cannot hold position {} (window {})", capacity,
         position, window);
  const int64_t first = window > 0 ? std::max<int64_t>(0, position - window + 1) : 0;
  std::vector<double> scores(static_cast<size_t>(position - first + 1));
  for (int64_t h = 0; h < heads; ++h) {
    float* head_keys = keys + h * capacity * D;
    float* head_values = values + h * capacity * D;
    const int64_t slot = position % capacity;
    std::copy_n(k + h * D, D, head_keys + slot * D);
    std::copy_n(v + h * D, D, head_values + slot * D);
    double max_score = -std::numeric_limits<double>::infinity();
    for (int64_t j = first; j <= position; ++j) {
      double dot = 0.0;
      for (int64_t d = 0; d < D; ++d) dot += double(q[h * D + d]) * head_keys[(j % capacity) * D + d];
      scores[static_cast<size_t>(j - first)] = dot * scale;
      max_score = std::max(max_score, dot * scale);
    }
    double total = 0.0;
    for (double& s : scores) total += (s = std::exp(s - max_score));
    float* o = out + h * D;
    std::fill_n(o, D, 0.f);
    for (int64_t j = first; j <= position; ++j) {
      const auto p = static_cast<float>(scores[static_cast<size_t>(j - first)] / total);
      for (int64_t d = 0; d < D; ++d) o[d] += p * head_values[(j % capacity) * D + d];
    }
  }
}

}  // namespace race::kernels::cpu
