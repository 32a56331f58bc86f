// The block programs of the CUDA model kernels whose threads cooperate (block sums and barriers): LayerNorm
// rows, cross-entropy rows and single-token decoding per head. As in race_tile.h, each is written once for a
// Block (lane(), lanes(), sync()): the .cu kernels run it with CudaBlock (a thread block, lanes = threads),
// the host tests with std::threads and a std::barrier, so the algorithm is checked against CpuOps without a
// GPU. Reductions are fixed-shape trees over `lanes` (a power of two) in caller-provided shared memory, so
// results do not depend on scheduling. The outputs that only matrix products read (LayerNorm's y, the
// cross-entropy's dlogits) have the element type Y, stored through race_tile.h's Element<Y> (float, or bf16
// rounded to nearest even: cuda_block.h's on the device, the tests' own on the host); every sum and statistic
// stays fp32 or fp64. C++17 and no CUDA headers: the host compiler includes this file too.
#pragma once

#include <float.h>
#include <math.h>

#include <cstdint>

#include "kernels/cuda/race_tile.h"

namespace race::kernels::cuda::programs {

// Sum (or max) of every lane's x, returned to every lane; shared: lanes doubles, free again on return.
template <bool kMax, class Block>
RACE_HD double block_reduce(const Block& block, double x, double* shared) {
  const int lane = block.lane();
  shared[lane] = x;
  block.sync();
  for (int stride = block.lanes() / 2; stride > 0; stride /= 2) {
    if (lane < stride) shared[lane] = kMax ? fmax(shared[lane], shared[lane + stride]) : shared[lane] + shared[lane + stride];
    block.sync();
  }
  const double result = shared[0];
  block.sync();
  return result;
}
template <class Block>
RACE_HD double block_sum(const Block& block, double x, double* shared) {
  return block_reduce<false>(block, x, shared);
}
template <class Block>
RACE_HD double block_max(const Block& block, double x, double* shared) {
  return block_reduce<true>(block, x, shared);
}

// LayerNorm forward of one row (kernels/cpu/layernorm_cpu.cpp's arithmetic): fp64 mean and two-pass
// variance, y computed in fp32 and stored as Y; an fp32 y may be x (a bf16 one would overwrite other lanes'
// x). mean_out, rstd_out: this row's entries.
template <class Block, class Y>
RACE_HD void layernorm_forward_row(const Block& block, double* shared, Y* y, float* mean_out, float* rstd_out,
                                   const float* x, const float* weight, const float* bias, int64_t channels,
                                   float eps) {
  double sum = 0.0;
  for (int64_t c = block.lane(); c < channels; c += block.lanes()) sum += static_cast<double>(x[c]);
  const double mean = block_sum(block, sum, shared) / static_cast<double>(channels);
  double squares = 0.0;
  for (int64_t c = block.lane(); c < channels; c += block.lanes()) {
    const double d = static_cast<double>(x[c]) - mean;
    squares += d * d;
  }
  const double rstd =
      1.0 / sqrt(block_sum(block, squares, shared) / static_cast<double>(channels) + static_cast<double>(eps));
  const float m = static_cast<float>(mean), s = static_cast<float>(rstd);
  const float shift = static_cast<float>((mean - static_cast<double>(m)) * rstd);  // see layernorm_cpu.cpp
  for (int64_t c = block.lane(); c < channels; c += block.lanes()) {
    const float xhat = (x[c] - m) * s - shift;
    tile::Element<Y>::store(y + c, xhat * (weight != nullptr ? weight[c] : 1.f) + (bias != nullptr ? bias[c] : 0.f));
  }
  if (block.lane() == 0) {
    *mean_out = m;
    *rstd_out = s;
  }
}

// residual = x + r, then layernorm_forward_row of it (kernels/cpu/layernorm_cpu.h's
// residual_layernorm_forward). Every loop of the row program gives a lane the same channels, so each lane
// normalises only sums it wrote itself: no barrier between the two. residual may be x or r; y (type Y) is
// another buffer.
template <class Block, class Y>
RACE_HD void residual_layernorm_forward_row(const Block& block, double* shared, float* residual, Y* y,
                                            float* mean_out, float* rstd_out, const float* x, const float* r,
                                            const float* weight, const float* bias, int64_t channels, float eps) {
  for (int64_t c = block.lane(); c < channels; c += block.lanes()) residual[c] = x[c] + r[c];
  layernorm_forward_row(block, shared, y, mean_out, rstd_out, residual, weight, bias, channels, eps);
}

// LayerNorm backward of one row: dx += rstd (g - mean_c(g) - xhat mean_c(g xhat)), g = dy * weight.
template <class Block>
RACE_HD void layernorm_backward_row(const Block& block, double* shared, float* dx, const float* dy, const float* x,
                                    const float* weight, float m, float s, int64_t channels) {
  double g_sum = 0.0, gx_sum = 0.0;
  for (int64_t c = block.lane(); c < channels; c += block.lanes()) {
    const double g = static_cast<double>(dy[c] * (weight != nullptr ? weight[c] : 1.f));
    g_sum += g;
    gx_sum += g * static_cast<double>((x[c] - m) * s);
  }
  const double inv_c = 1.0 / static_cast<double>(channels);
  const float g_mean = static_cast<float>(block_sum(block, g_sum, shared) * inv_c);
  const float gx_mean = static_cast<float>(block_sum(block, gx_sum, shared) * inv_c);
  for (int64_t c = block.lane(); c < channels; c += block.lanes()) {
    const float xhat = (x[c] - m) * s;
    const float g = dy[c] * (weight != nullptr ? weight[c] : 1.f);
    dx[c] += s * (g - g_mean - xhat * gx_mean);
  }
}

// Softmax cross-entropy of one row of logits (V): returns loss = logsumexp - logits[target] (0 for target -1)
// to every lane and writes grad_scale (softmax - onehot), computed in fp32, into dlogits (V, type G; may be
// null; an fp32 dlogits may be logits, a bf16 one must not overlap them).
template <class Block, class G>
RACE_HD double cross_entropy_row(const Block& block, double* shared, G* dlogits, const float* logits,
                                 int32_t target, int64_t vocab, float grad_scale) {
  if (target == -1) {
    if (dlogits != nullptr)
      for (int64_t i = block.lane(); i < vocab; i += block.lanes()) tile::Element<G>::store(dlogits + i, 0.f);
    return 0.0;
  }
  const float target_logit = logits[target];  // read before dlogits (which may be logits) is written
  float local_max = -FLT_MAX;
  for (int64_t i = block.lane(); i < vocab; i += block.lanes()) local_max = fmaxf(local_max, logits[i]);
  const auto row_max = static_cast<float>(block_max(block, local_max, shared));
  double sum = 0.0;
  for (int64_t i = block.lane(); i < vocab; i += block.lanes()) sum += static_cast<double>(expf(logits[i] - row_max));
  sum = block_sum(block, sum, shared);  // its barriers also order every read of the logits before the writes
  if (dlogits != nullptr) {
    const float inv_sum = static_cast<float>(1.0 / sum);
    for (int64_t i = block.lane(); i < vocab; i += block.lanes()) {
      const float p = expf(logits[i] - row_max) * inv_sum;
      tile::Element<G>::store(dlogits + i, grad_scale * (i == target ? p - 1.f : p));
    }
  }
  return log(sum) + static_cast<double>(row_max) - static_cast<double>(target_logit);
}

// Single-token causal RACE for one head (kernels/cpu/attention_decode_cpu.cpp's arithmetic).
struct RaceDecodeHead {
  const float *q, *k, *v;  // (D) this head's token
  const float* planes;     // (L*P, D) this head's hyperplanes
  float beta;
  float* key_sums;    // (S) updated
  float* value_sums;  // (S, D) updated
  float* out;         // (D)
  int64_t head_dim;
  int tables, bits;
  bool ratio;
  float eps;
};

// shared: 2 L P + 2 S floats.
RACE_HD int64_t race_decode_shared_floats(int tables, int bits) {
  return 2 * int64_t{tables} * bits + 2 * int64_t{tables} * (int64_t{1} << bits);
}

template <class Block>
RACE_HD void race_decode_head(const Block& block, float* shared, const RaceDecodeHead& p) {
  const int64_t D = p.head_dim, R = int64_t{1} << p.bits, S = p.tables * R, lp = int64_t{p.tables} * p.bits;
  float* sig_q = shared;      // (L*P) sigmoid(2 beta tanh(planes . q))
  float* sig_k = sig_q + lp;  // (L*P)
  float* phi_q = sig_k + lp;  // (S)
  float* phi_k = phi_q + S;   // (S)
  for (int64_t j = block.lane(); j < 2 * lp; j += block.lanes()) {
    const float* x = j < lp ? p.q : p.k;
    const float* plane = p.planes + (j % lp) * D;
    float dot = 0.f;
    for (int64_t d = 0; d < D; ++d) dot += plane[d] * x[d];
    sig_q[j] = 1.f / (1.f + expf(-2.f * p.beta * tanhf(dot)));  // sig_k[j - lp] for j >= lp
  }
  block.sync();
  // phi_r = prod_b (bit P-1-b of r set ? sig_b : 1 - sig_b), per table
  for (int64_t j = block.lane(); j < 2 * S; j += block.lanes()) {
    const int64_t s = j % S, l = s / R, r = s % R;
    const float* sig = (j < S ? sig_q : sig_k) + l * p.bits;
    float phi = 1.f;
    for (int b = 0; b < p.bits; ++b) phi *= ((r >> (p.bits - 1 - b)) & 1) != 0 ? sig[b] : 1.f - sig[b];
    phi_q[j] = phi;  // phi_k[s] for j >= S
  }
  block.sync();
  for (int64_t s = block.lane(); s < S; s += block.lanes()) p.key_sums[s] += phi_k[s];
  for (int64_t i = block.lane(); i < S * D; i += block.lanes()) p.value_sums[i] += phi_k[i / D] * p.v[i % D];
  block.sync();
  for (int64_t d = block.lane(); d < D; d += block.lanes()) {
    double den = p.eps;
    if (p.ratio)
      for (int64_t s = 0; s < S; ++s) den += static_cast<double>(phi_q[s]) * p.key_sums[s];
    float o = 0.f;
    for (int64_t s = 0; s < S; ++s) {
      const double w = p.ratio ? phi_q[s] / den : phi_q[s] / (static_cast<double>(p.key_sums[s]) + p.eps);
      o += static_cast<float>(w) * p.value_sums[s * D + d];
    }
    p.out[d] = o;
  }
}

// Single-token softmax attention for one head against its cache (capacity, D), which gets (k, v) at slot
// position % capacity first; keys first .. position are visible. scores: (position - first + 1) doubles.
struct SoftmaxDecodeHead {
  const float *q, *k, *v;  // (D)
  float* keys;             // (capacity, D)
  float* values;           // (capacity, D)
  double* scores;
  float* out;  // (D)
  int64_t head_dim, capacity, first, position;
  float scale;
};

template <class Block>
RACE_HD void softmax_decode_head(const Block& block, double* shared, const SoftmaxDecodeHead& p) {
  const int64_t D = p.head_dim, count = p.position - p.first + 1, slot = p.position % p.capacity;
  for (int64_t d = block.lane(); d < D; d += block.lanes()) {
    p.keys[slot * D + d] = p.k[d];
    p.values[slot * D + d] = p.v[d];
  }
  block.sync();
  double local_max = -DBL_MAX;
  for (int64_t j = block.lane(); j < count; j += block.lanes()) {
    const float* key = p.keys + ((p.first + j) % p.capacity) * D;
    double dot = 0.0;
    for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(p.q[d]) * key[d];
    p.scores[j] = dot * p.scale;
    local_max = fmax(local_max, dot * p.scale);
  }
  const double max_score = block_max(block, local_max, shared);
  double local_total = 0.0;
  for (int64_t j = block.lane(); j < count; j += block.lanes()) local_total += (p.scores[j] = exp(p.scores[j] - max_score));
  const double total = block_sum(block, local_total, shared);  // its barriers publish the scores
  for (int64_t d = block.lane(); d < D; d += block.lanes()) {
    float o = 0.f;
    for (int64_t j = 0; j < count; ++j)
      o += static_cast<float>(p.scores[j] / total) * p.values[((p.first + j) % p.capacity) * D + d];
    p.out[d] = o;
  }
}

}  // namespace race::kernels::cuda::programs
