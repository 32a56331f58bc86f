// The block programs of the CUDA flash-style softmax attention (the in-house baseline RACE is compared
// with), written once for the device and the host like race_span.h: every function splits its work items
// over the lanes of a block, with a block barrier between dependent steps; the host tests run them on
// emulated blocks (tests/test_softmax_flash.cpp).
//
// Semantics of kernels/softmax_attention.h: query t sees key j when j <= t (causal), |t - j| < W (window
// W > 0), key_mask[j] != 0 and both are in the same document (a maximal run of equal segment ids).
// s_tj = scale q_t . k_j, lse_t = log sum_j exp(s_tj), o_t = sum_j exp(s_tj - lse_t) v_j; a query that sees
// no key gets o_t = 0 and lse_t = -inf. Tiles of kTile queries and kTile keys; fp32 scores and sums.
//   documents_row       per batch row: document number of every token (counts of starts, lane order)
//   forward_tile        one query tile: online softmax over the key tiles of its band -> out, lse
//   backward_query_tile one query tile: delta_t = dout_t . o_t (stored), dq = scale sum_j ds_tj k_j
//   backward_key_tile   one key tile: dv = sum_t p_tj dout_t, dk = scale sum_t ds_tj q_t,
//                       with ds_tj = p_tj (dout_t . v_j - delta_t)
// Every output element is written by one lane of one block, sums run in a fixed order: deterministic.
// Only the key (query) tiles that intersect a query (key) tile's causal/window band are visited.
#pragma once

#include <math.h>

#include <cstdint>

#include "kernels/cuda/race_tile.h"

namespace race::kernels::cuda::flash {

constexpr int64_t kTile = 32;

template <class T>
struct SoftmaxProblem {
  int64_t batch, heads, seq_len, head_dim;
  bool causal;
  int64_t window;  // 0: full
  float scale;     // already resolved (never 0)

  const T* q;                 // (B, H, T, D)
  const T* k;                 // (B, H, T, D)
  const T* v;                 // (B, H, T, D)
  const uint8_t* key_mask;    // (B, T) or null
  const int32_t* segment_ids; // (B, T) or null
  int32_t* documents;         // (B, T) scratch: document number per token; null without segment ids
  T* out;                     // (B, H, T, D): written by the forward, read by the backward
  float* lse;                 // (B, H, T): written by the forward, read by the backward
  const T* dout;              // (B, H, T, D)
  float* delta;               // (B, H, T) scratch: dout_t . o_t
  T* dq;                      // (B, H, T, D) or null
  T* dk;                      // (B, H, T, D) or null
  T* dv;                      // (B, H, T, D) or null

  RACE_HD int64_t rows() const { return batch * heads; }
  RACE_HD int64_t tiles() const { return (seq_len + kTile - 1) / kTile; }
  // Keys [lo, hi) that some query of [t0, t1) may see, and queries that some key of [t0, t1) may be seen by.
  RACE_HD void key_band(int64_t t0, int64_t t1, int64_t* lo, int64_t* hi) const {
    *lo = window > 0 && t0 - (window - 1) > 0 ? t0 - (window - 1) : 0;
    *hi = causal ? t1 : (window > 0 && t1 + window - 1 < seq_len ? t1 + window - 1 : seq_len);
  }
  RACE_HD void query_band(int64_t t0, int64_t t1, int64_t* lo, int64_t* hi) const {
    *lo = causal ? t0 : (window > 0 && t0 - (window - 1) > 0 ? t0 - (window - 1) : 0);
    *hi = window > 0 && t1 + window - 1 < seq_len ? t1 + window - 1 : seq_len;
  }
  RACE_HD bool visible(int64_t b, int64_t t, int64_t j) const {
    const int64_t lag = t - j;
    if (causal && lag < 0) return false;
    if (window > 0 && (lag >= window || -lag >= window)) return false;
    if (key_mask != nullptr && key_mask[b * seq_len + j] == 0) return false;
    return documents == nullptr || documents[b * seq_len + t] == documents[b * seq_len + j];
  }
};

// Shared memory of one block.
struct FlashShared {
  double* lane_counts;  // (lanes) documents_row only
  float* x;             // (kTile, D) q (forward, dq) or k (dk/dv)
  float* y;             // (kTile, D) k (forward, dq) or q (dk/dv)
  float* v;             // (kTile, D)
  float* g;             // (kTile, D) dout
  float* acc;           // (kTile, D) out / dq / dk accumulator
  float* acc2;          // (kTile, D) dv accumulator
  float* p;             // (kTile, kTile) scores, then probabilities
  float* ds;            // (kTile, kTile)
  float* m;             // (kTile) running max
  float* l;             // (kTile) running sum
  float* corr;          // (kTile) rescale factor of this step
  float* row_lse;       // (kTile)
  float* row_delta;     // (kTile)
};

RACE_HD int64_t carve_flash_shared(char* base, int64_t head_dim, int lanes, FlashShared* sh) {
  int64_t offset = 0;
  auto take = [&](int64_t bytes) {
    char* at = base == nullptr ? nullptr : base + offset;
    offset += (bytes + 15) / 16 * 16;
    return at;
  };
  auto floats = [&](int64_t count) { return reinterpret_cast<float*>(take(count * int64_t{sizeof(float)})); };
  sh->lane_counts = reinterpret_cast<double*>(take(lanes * int64_t{sizeof(double)}));
  sh->x = floats(kTile * head_dim);
  sh->y = floats(kTile * head_dim);
  sh->v = floats(kTile * head_dim);
  sh->g = floats(kTile * head_dim);
  sh->acc = floats(kTile * head_dim);
  sh->acc2 = floats(kTile * head_dim);
  sh->p = floats(kTile * kTile);
  sh->ds = floats(kTile * kTile);
  sh->m = floats(kTile);
  sh->l = floats(kTile);
  sh->corr = floats(kTile);
  sh->row_lse = floats(kTile);
  sh->row_delta = floats(kTile);
  return offset;
}

// documents[b, t] for one batch row: the number of document starts in (0, t].
template <class Block, class T>
RACE_HD void documents_row(const Block& blk, const SoftmaxProblem<T>& p, int64_t b, char* smem) {
  FlashShared sh;
  carve_flash_shared(smem, p.head_dim, blk.lanes(), &sh);
  const int64_t T_ = p.seq_len, lanes = blk.lanes();
  const int32_t* ids = p.segment_ids + b * T_;
  const int64_t slice = (T_ + lanes - 1) / lanes, lo = blk.lane() * slice, hi = lo + slice < T_ ? lo + slice : T_;
  int64_t starts = 0;
  for (int64_t t = lo; t < hi; ++t) starts += (t > 0 && ids[t] != ids[t - 1]) ? 1 : 0;
  sh.lane_counts[blk.lane()] = static_cast<double>(starts);
  blk.sync();
  int64_t doc = 0;
  for (int i = 0; i < blk.lane(); ++i) doc += static_cast<int64_t>(sh.lane_counts[i]);
  for (int64_t t = lo; t < hi; ++t) {
    doc += (t > 0 && ids[t] != ids[t - 1]) ? 1 : 0;
    p.documents[b * T_ + t] = static_cast<int32_t>(doc);
  }
}

// s (n, nk) = scale x_i . y_j where visible(query t0 + i, key k0 + j), else -inf (x queries, y keys).
template <class Block, class T>
RACE_HD void masked_scores(const Block& blk, const SoftmaxProblem<T>& p, int64_t b, const float* queries,
                           int64_t t0, int64_t n, const float* keys, int64_t k0, int64_t nk, float* s) {
  const int64_t D = p.head_dim;
  for (int64_t item = blk.lane(); item < n * nk; item += blk.lanes()) {
    const int64_t i = item / nk, j = item % nk;
    float value = -INFINITY;
    if (p.visible(b, t0 + i, k0 + j)) {
      float acc = 0.f;
      for (int64_t c = 0; c < D; ++c) acc += queries[i * D + c] * keys[j * D + c];
      value = p.scale * acc;
    }
    s[i * kTile + j] = value;
  }
}

template <class Block, class T>
RACE_HD void forward_tile(const Block& blk, const SoftmaxProblem<T>& p, int64_t row, int64_t tile, char* smem) {
  FlashShared sh;
  carve_flash_shared(smem, p.head_dim, blk.lanes(), &sh);
  const int64_t D = p.head_dim, b = row / p.heads, base = row * p.seq_len;
  const int64_t t0 = tile * kTile, n = p.seq_len - t0 < kTile ? p.seq_len - t0 : kTile;
  tile::load_rows(blk, p.q + (base + t0) * D, n, D, sh.x);
  tile::zero(blk, sh.acc, n * D);
  for (int64_t i = blk.lane(); i < n; i += blk.lanes()) {
    sh.m[i] = -INFINITY;
    sh.l[i] = 0.f;
  }
  blk.sync();
  int64_t lo = 0, hi = 0;
  p.key_band(t0, t0 + n, &lo, &hi);
  for (int64_t k0 = lo / kTile * kTile; k0 < hi; k0 += kTile) {
    const int64_t nk = p.seq_len - k0 < kTile ? p.seq_len - k0 : kTile;
    tile::load_rows(blk, p.k + (base + k0) * D, nk, D, sh.y);
    tile::load_rows(blk, p.v + (base + k0) * D, nk, D, sh.v);
    blk.sync();
    masked_scores(blk, p, b, sh.x, t0, n, sh.y, k0, nk, sh.p);
    blk.sync();
    // Online softmax, one lane per query row: new max, rescale factor, probabilities in place.
    for (int64_t i = blk.lane(); i < n; i += blk.lanes()) {
      float* s = sh.p + i * kTile;
      float top = sh.m[i];
      for (int64_t j = 0; j < nk; ++j) top = s[j] > top ? s[j] : top;
      float sum = 0.f;
      for (int64_t j = 0; j < nk; ++j) {
        s[j] = s[j] == -INFINITY ? 0.f : expf(s[j] - top);
        sum += s[j];
      }
      sh.corr[i] = sh.m[i] == -INFINITY ? 0.f : expf(sh.m[i] - top);
      sh.l[i] = sh.l[i] * sh.corr[i] + sum;
      sh.m[i] = top;
    }
    blk.sync();
    for (int64_t item = blk.lane(); item < n * D; item += blk.lanes()) {
      const int64_t i = item / D, c = item % D;
      float acc = sh.acc[item] * sh.corr[i];
      for (int64_t j = 0; j < nk; ++j) acc += sh.p[i * kTile + j] * sh.v[j * D + c];
      sh.acc[item] = acc;
    }
    blk.sync();
  }
  for (int64_t item = blk.lane(); item < n * D; item += blk.lanes()) {
    const int64_t i = item / D;
    tile::Element<T>::store(p.out + (base + t0) * D + item, sh.l[i] > 0.f ? sh.acc[item] / sh.l[i] : 0.f);
  }
  for (int64_t i = blk.lane(); i < n; i += blk.lanes())
    p.lse[base + t0 + i] = sh.l[i] > 0.f ? sh.m[i] + logf(sh.l[i]) : -INFINITY;
}

// From the masked scores (n, nk) of queries i and keys j: scores becomes p_ij = exp(s_ij - lse_i) and
// ds (n, nk) = p_ij (dout_i . v_j - delta_i). dout (n, D), values (n_k, D), row_lse and row_delta (n).
template <class Block>
RACE_HD void score_gradients(const Block& blk, int64_t D, const float* dout, const float* values,
                             const float* row_lse, const float* row_delta, int64_t n, int64_t nk, float* scores,
                             float* ds) {
  for (int64_t item = blk.lane(); item < n * nk; item += blk.lanes()) {
    const int64_t i = item / nk, j = item % nk;
    const float s = scores[i * kTile + j];
    const float prob = s == -INFINITY ? 0.f : expf(s - row_lse[i]);
    float dp = 0.f;
    for (int64_t c = 0; c < D; ++c) dp += dout[i * D + c] * values[j * D + c];
    scores[i * kTile + j] = prob;
    ds[i * kTile + j] = prob * (dp - row_delta[i]);
  }
}

// dst (count) of the tensor type = src (count) fp32.
template <class Block, class T>
RACE_HD void copy_out(const Block& blk, const float* src, int64_t count, T* dst) {
  for (int64_t i = blk.lane(); i < count; i += blk.lanes()) tile::Element<T>::store(dst + i, src[i]);
}

template <class Block, class T>
RACE_HD void backward_query_tile(const Block& blk, const SoftmaxProblem<T>& p, int64_t row, int64_t tile,
                                 char* smem) {
  FlashShared sh;
  carve_flash_shared(smem, p.head_dim, blk.lanes(), &sh);
  const int64_t D = p.head_dim, b = row / p.heads, base = row * p.seq_len;
  const int64_t t0 = tile * kTile, n = p.seq_len - t0 < kTile ? p.seq_len - t0 : kTile;
  tile::load_rows(blk, p.q + (base + t0) * D, n, D, sh.x);
  tile::load_rows(blk, p.dout + (base + t0) * D, n, D, sh.g);
  tile::load_rows(blk, p.out + (base + t0) * D, n, D, sh.acc);
  tile::copy(blk, p.lse + base + t0, sh.row_lse, n);
  blk.sync();
  for (int64_t i = blk.lane(); i < n; i += blk.lanes()) {
    float delta = 0.f;
    for (int64_t c = 0; c < D; ++c) delta += sh.g[i * D + c] * sh.acc[i * D + c];
    sh.row_delta[i] = delta;
    p.delta[base + t0 + i] = delta;
  }
  blk.sync();
  tile::zero(blk, sh.acc, n * D);
  blk.sync();
  int64_t lo = 0, hi = 0;
  p.key_band(t0, t0 + n, &lo, &hi);
  for (int64_t k0 = lo / kTile * kTile; k0 < hi; k0 += kTile) {
    const int64_t nk = p.seq_len - k0 < kTile ? p.seq_len - k0 : kTile;
    tile::load_rows(blk, p.k + (base + k0) * D, nk, D, sh.y);
    tile::load_rows(blk, p.v + (base + k0) * D, nk, D, sh.v);
    blk.sync();
    masked_scores(blk, p, b, sh.x, t0, n, sh.y, k0, nk, sh.p);
    blk.sync();
    score_gradients(blk, D, sh.g, sh.v, sh.row_lse, sh.row_delta, n, nk, sh.p, sh.ds);
    blk.sync();
    for (int64_t item = blk.lane(); item < n * D; item += blk.lanes()) {
      const int64_t i = item / D, c = item % D;
      float acc = 0.f;
      for (int64_t j = 0; j < nk; ++j) acc += sh.ds[i * kTile + j] * sh.y[j * D + c];
      sh.acc[item] += p.scale * acc;
    }
    blk.sync();
  }
  if (p.dq != nullptr) copy_out(blk, sh.acc, n * D, p.dq + (base + t0) * D);
}

template <class Block, class T>
RACE_HD void backward_key_tile(const Block& blk, const SoftmaxProblem<T>& p, int64_t row, int64_t tile, char* smem) {
  FlashShared sh;
  carve_flash_shared(smem, p.head_dim, blk.lanes(), &sh);
  const int64_t D = p.head_dim, b = row / p.heads, base = row * p.seq_len;
  const int64_t k0 = tile * kTile, nk = p.seq_len - k0 < kTile ? p.seq_len - k0 : kTile;
  tile::load_rows(blk, p.k + (base + k0) * D, nk, D, sh.x);
  tile::load_rows(blk, p.v + (base + k0) * D, nk, D, sh.v);
  tile::zero(blk, sh.acc, nk * D);
  tile::zero(blk, sh.acc2, nk * D);
  blk.sync();
  int64_t lo = 0, hi = 0;
  p.query_band(k0, k0 + nk, &lo, &hi);
  for (int64_t t0 = lo / kTile * kTile; t0 < hi; t0 += kTile) {
    const int64_t n = p.seq_len - t0 < kTile ? p.seq_len - t0 : kTile;
    tile::load_rows(blk, p.q + (base + t0) * D, n, D, sh.y);
    tile::load_rows(blk, p.dout + (base + t0) * D, n, D, sh.g);
    tile::copy(blk, p.lse + base + t0, sh.row_lse, n);
    tile::copy(blk, p.delta + base + t0, sh.row_delta, n);
    blk.sync();
    masked_scores(blk, p, b, sh.y, t0, n, sh.x, k0, nk, sh.p);
    blk.sync();
    score_gradients(blk, D, sh.g, sh.v, sh.row_lse, sh.row_delta, n, nk, sh.p, sh.ds);
    blk.sync();
    for (int64_t item = blk.lane(); item < nk * D; item += blk.lanes()) {
      const int64_t j = item / D, c = item % D;
      float dk = 0.f, dv = 0.f;
      for (int64_t i = 0; i < n; ++i) {
        dk += sh.ds[i * kTile + j] * sh.y[i * D + c];
        dv += sh.p[i * kTile + j] * sh.g[i * D + c];
      }
      sh.acc[item] += p.scale * dk;
      sh.acc2[item] += dv;
    }
    blk.sync();
  }
  if (p.dk != nullptr) copy_out(blk, sh.acc, nk * D, p.dk + (base + k0) * D);
  if (p.dv != nullptr) copy_out(blk, sh.acc2, nk * D, p.dv + (base + k0) * D);
}

}  // namespace race::kernels::cuda::flash
