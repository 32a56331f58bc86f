// Plain fp64 softmax attention: see softmax_reference.h.
#include "reference/softmax_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/error.h"

namespace race::reference {
namespace {

using kernels::SoftmaxAttentionOptions;
using kernels::SoftmaxAttentionShape;

void check_sizes(const SoftmaxAttentionShape& shape, const SoftmaxInputs& inputs) {
  const auto n = static_cast<size_t>(shape.batch * shape.heads * shape.seq_len * shape.head_dim);
  const auto rows = static_cast<size_t>(shape.batch * shape.seq_len);
  RACE_CHECK(inputs.q.size() == n && inputs.k.size() == n && inputs.v.size() == n, "q, k, v need {} values", n);
  RACE_CHECK(inputs.key_mask.empty() || inputs.key_mask.size() == rows, "key_mask needs {} values", rows);
  RACE_CHECK(inputs.segment_ids.empty() || inputs.segment_ids.size() == rows, "segment_ids needs {} values", rows);
}

double resolved_scale(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options) {
  return options.scale > 0.f ? double(options.scale) : 1.0 / std::sqrt(double(shape.head_dim));
}

bool sees(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options, const SoftmaxInputs& inputs,
          int64_t b, int64_t t, int64_t j) {
  if (options.causal && j > t) return false;
  if (options.window > 0 && std::llabs(t - j) >= options.window) return false;
  const auto row = static_cast<size_t>(b * shape.seq_len);
  if (!inputs.key_mask.empty() && inputs.key_mask[row + j] == 0) return false;
  if (!inputs.segment_ids.empty()) {
    // same document: equal ids with no other id between t and j
    for (int64_t i = std::min(t, j); i <= std::max(t, j); ++i)
      if (inputs.segment_ids[row + i] != inputs.segment_ids[row + t]) return false;
  }
  return true;
}

double dot(const double* a, const double* b, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Probabilities p_tj of query t of head (b, h) over all keys (0 for the invisible ones), and lse_t.
// Returns false when the query sees no key.
bool probabilities(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                   const SoftmaxInputs& inputs, int64_t b, int64_t h, int64_t t, std::vector<double>& p,
                   double& lse) {
  const int64_t T = shape.seq_len, D = shape.head_dim;
  const double scale = resolved_scale(shape, options);
  const double* q = inputs.q.data() + ((b * shape.heads + h) * T + t) * D;
  const double* k = inputs.k.data() + (b * shape.heads + h) * T * D;
  p.assign(static_cast<size_t>(T), 0.0);
  double max = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < T; ++j) {
    if (!sees(shape, options, inputs, b, t, j)) continue;
    p[j] = scale * dot(q, k + j * D, D);
    max = std::max(max, p[j]);
  }
  if (max == -std::numeric_limits<double>::infinity()) {
    lse = max;
    return false;
  }
  double sum = 0.0;
  for (int64_t j = 0; j < T; ++j) {
    if (sees(shape, options, inputs, b, t, j)) sum += std::exp(p[j] - max);
  }
  lse = max + std::log(sum);
  for (int64_t j = 0; j < T; ++j) p[j] = sees(shape, options, inputs, b, t, j) ? std::exp(p[j] - lse) : 0.0;
  return true;
}

std::vector<double> to_vector(const float* data, int64_t n) { return std::vector<double>(data, data + n); }

}  // namespace

SoftmaxInputs to_fp64(const kernels::SoftmaxAttentionShape& shape, const kernels::SoftmaxAttentionInputs& inputs) {
  const int64_t n = shape.batch * shape.heads * shape.seq_len * shape.head_dim;
  const int64_t rows = shape.batch * shape.seq_len;
  SoftmaxInputs out;
  out.q = to_vector(inputs.q, n);
  out.k = to_vector(inputs.k, n);
  out.v = to_vector(inputs.v, n);
  if (inputs.key_mask != nullptr) out.key_mask.assign(inputs.key_mask, inputs.key_mask + rows);
  if (inputs.segment_ids != nullptr) out.segment_ids.assign(inputs.segment_ids, inputs.segment_ids + rows);
  return out;
}

SoftmaxForward softmax_attention_forward(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                                         const SoftmaxInputs& inputs) {
  check_sizes(shape, inputs);
  const int64_t T = shape.seq_len, D = shape.head_dim;
  SoftmaxForward result;
  result.out.assign(inputs.q.size(), 0.0);
  result.lse.assign(static_cast<size_t>(shape.batch * shape.heads * T), 0.0);
  std::vector<double> p;
  for (int64_t b = 0; b < shape.batch; ++b) {
    for (int64_t h = 0; h < shape.heads; ++h) {
      const int64_t bh = b * shape.heads + h;
      const double* v = inputs.v.data() + bh * T * D;
      for (int64_t t = 0; t < T; ++t) {
        double* o = result.out.data() + (bh * T + t) * D;
        if (!probabilities(shape, options, inputs, b, h, t, p, result.lse[bh * T + t])) continue;
        for (int64_t j = 0; j < T; ++j) {
          for (int64_t d = 0; d < D; ++d) o[d] += p[j] * v[j * D + d];
        }
      }
    }
  }
  return result;
}

SoftmaxGradients softmax_attention_backward(const SoftmaxAttentionShape& shape,
                                            const SoftmaxAttentionOptions& options, const SoftmaxInputs& inputs,
                                            const std::vector<double>& dout) {
  check_sizes(shape, inputs);
  RACE_CHECK(dout.size() == inputs.q.size(), "dout needs {} values", inputs.q.size());
  const int64_t T = shape.seq_len, D = shape.head_dim;
  const double scale = resolved_scale(shape, options);
  SoftmaxGradients grads;
  grads.dq.assign(inputs.q.size(), 0.0);
  grads.dk.assign(inputs.q.size(), 0.0);
  grads.dv.assign(inputs.q.size(), 0.0);
  std::vector<double> p, o(static_cast<size_t>(D));
  for (int64_t b = 0; b < shape.batch; ++b) {
    for (int64_t h = 0; h < shape.heads; ++h) {
      const int64_t head = (b * shape.heads + h) * T * D;
      const double* q = inputs.q.data() + head;
      const double* k = inputs.k.data() + head;
      const double* v = inputs.v.data() + head;
      for (int64_t t = 0; t < T; ++t) {
        double lse = 0.0;
        if (!probabilities(shape, options, inputs, b, h, t, p, lse)) continue;
        const double* g = dout.data() + head + t * D;
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = 0; j < T; ++j) {
          for (int64_t d = 0; d < D; ++d) o[d] += p[j] * v[j * D + d];
        }
        const double g_dot_o = dot(g, o.data(), D);
        for (int64_t j = 0; j < T; ++j) {
          if (p[j] == 0.0) continue;
          const double ds = p[j] * (dot(g, v + j * D, D) - g_dot_o);
          for (int64_t d = 0; d < D; ++d) {
            grads.dv[head + j * D + d] += p[j] * g[d];
            grads.dq[head + t * D + d] += scale * ds * k[j * D + d];
            grads.dk[head + j * D + d] += scale * ds * q[t * D + d];
          }
        }
      }
    }
  }
  return grads;
}

}  // namespace race::reference
