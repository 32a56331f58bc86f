// Per-chunk math of the CUDA RACE attention kernels, written once for the device and the host.
//
// Every function here works on one chunk of at most kChunk tokens of one (batch, head) row, held in shared
// memory, and is executed by all lanes (threads) of a block and never synchronises; the caller puts a block
// barrier between functions whose items depend on each other. Elementwise and small steps split their work
// items over lanes with `for (item = lane; item < count; item += lanes)`; the products with a D, S or chunk
// sized reduction run on tensor cores, split over the block's warps in 16 x 8 output tiles (warp_mma.h, 3xTF32
// for fp32 accuracy), so the block's lane count is a multiple of 32. The CUDA kernels run these functions with
// 256 lanes; the host tests run the very same code on emulated blocks (tests/host_block.h: lanes as fibers, a
// barrier, and the warp instruction emulated from its documented layout), so the algorithm is checked against
// the fp64 reference without a GPU (tests/test_race_tile.cpp).
//
// Notation (docs/race-attention.md): S = L * 2^P buckets, LP = L * P projections, n <= kChunk tokens,
// phi_q / phi_k the soft hash of queries / keys, w the query features, A_t the key sums query t sees.
// A chunk never contains a document start except at its first token, so within a chunk every query
// sees every earlier key (causal) or every key (bidirectional) of the chunk.
//
// C++17 and no CUDA headers: the host compiler includes this file too (RACE_HD is plain inline there).
#pragma once

#include <math.h>

#include <cstdint>

#include "kernels/cuda/host_device.h"
#include "kernels/cuda/warp_mma.h"

namespace race::kernels::cuda::tile {

// Tokens per chunk. 32 keeps the shared-memory working set of D = 128, S = 24 near 113 KB, under the
// 163 KB an A100 block can have (64 would need about 190 KB).
constexpr int64_t kChunk = 32;

// Loads and stores of the tensor element type; the bf16 specialisation lives in race_attention_cuda.cu.
template <class T>
struct Element;
template <>
struct Element<float> {
  RACE_HD static float load(const float* p) { return *p; }
  RACE_HD static void store(float* p, float x) { *p = x; }
};

// Sizes of one problem that the tile functions need.
struct Dims {
  int64_t seq_len;   // T
  int64_t head_dim;  // D
  int tables;        // L
  int bits;          // P

  RACE_HD int corners() const { return 1 << bits; }          // R
  RACE_HD int buckets() const { return tables << bits; }     // S
  RACE_HD int projections() const { return tables * bits; }  // LP
  // A state (A, B) or (sum dA, G) is stored as the (S, D) matrix followed by the (S) vector.
  RACE_HD int64_t state_size() const { return int64_t{buckets()} * (head_dim + 1); }
};

// Which (i, j) entries of an (n, n) pair block are kept: all, or the lower triangle j <= i.
enum class Pairs { all, lower };

RACE_HD float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// dst (count) = 0.
template <class Block>
RACE_HD void zero(const Block& blk, float* dst, int64_t count) {
  for (int64_t i = blk.lane(); i < count; i += blk.lanes()) dst[i] = 0.f;
}

// dst (count) = src, or dst += src when accumulate.
template <class Block>
RACE_HD void copy(const Block& blk, const float* src, float* dst, int64_t count, bool accumulate = false) {
  for (int64_t i = blk.lane(); i < count; i += blk.lanes()) dst[i] = accumulate ? dst[i] + src[i] : src[i];
}

// dst (n, width) fp32 = src (n, width) of the tensor type (rows contiguous in global memory).
template <class Block, class T>
RACE_HD void load_rows(const Block& blk, const T* src, int64_t n, int64_t width, float* dst) {
  for (int64_t i = blk.lane(); i < n * width; i += blk.lanes()) dst[i] = Element<T>::load(src + i);
}

// u (n, LP) = tanh(x (n, D) . planes (LP, D)^T).
template <class Block>
RACE_HD void hash_projections(const Block& blk, const Dims& d, const float* planes, const float* x, int64_t n,
                              float* u) {
  const int lp = d.projections();
  const int64_t D = d.head_dim;
  const mma::Term term{mma::row_major(x, n, D), mma::transposed(planes, lp, D)};
  mma::gemm(blk, n, lp, &term, 1, [&](int64_t i, int64_t p, float acc) { u[i * lp + p] = tanhf(acc); });
}

// phi (n, S) from u (n, LP): phi_l(x)_r = prod_b sigmoid(2 beta u_{l,b} c_{r,b}), c_{r,b} = +1 when bit
// (P-1-b) of r is set, i.e. sigmoid(2 beta u) for a set bit and 1 - sigmoid(2 beta u) otherwise.
// pad (n) or null: rows with pad[i] == 0 are pad keys and get phi = 0 exactly.
template <class Block>
RACE_HD void hash_features(const Block& blk, const Dims& d, float beta, const float* u, int64_t n,
                           const uint8_t* pad, float* phi) {
  const int S = d.buckets(), R = d.corners(), P = d.bits, lp = d.projections();
  for (int64_t item = blk.lane(); item < n * S; item += blk.lanes()) {
    const int64_t i = item / S;
    const int s = static_cast<int>(item % S), l = s / R, r = s % R;
    float value = 0.f;
    if (pad == nullptr || pad[i] != 0) {
      value = 1.f;
      for (int b = 0; b < P; ++b) {
        const float plus = sigmoid(2.f * beta * u[i * lp + l * P + b]);
        value *= ((r >> (P - 1 - b)) & 1) ? plus : 1.f - plus;
      }
    }
    phi[item] = value;
  }
}

// Backward of hash_features into the projections: dz (n, LP) = d loss / d (W x) from dphi, phi (n, S) and
// u (n, LP), with du_b = 2 beta (M+_b - sigmoid(2 beta u_b) M), m_r = dphi_r phi_r, M = sum_r m_r,
// M+_b = sum of m_r over corners with bit b set, and dz = du (1 - u^2). Returns this lane's share of
// d loss / d beta (sum of 2 u_b (M+_b - sig_b M)).
template <class Block>
RACE_HD double hash_backward_projections(const Block& blk, const Dims& d, float beta, const float* dphi,
                                         const float* phi, const float* u, int64_t n, float* dz) {
  const int S = d.buckets(), R = d.corners(), P = d.bits, lp = d.projections();
  double dbeta = 0.0;
  for (int64_t item = blk.lane(); item < n * lp; item += blk.lanes()) {
    const int64_t i = item / lp;
    const int p = static_cast<int>(item % lp), l = p / P, b = p % P;
    const float* dp = dphi + i * S + l * R;
    const float* ph = phi + i * S + l * R;
    float total = 0.f, with_bit = 0.f;
    for (int r = 0; r < R; ++r) {
      const float m = dp[r] * ph[r];
      total += m;
      if ((r >> (P - 1 - b)) & 1) with_bit += m;
    }
    const float ub = u[item];
    const float coef = with_bit - sigmoid(2.f * beta * ub) * total;
    dbeta += 2.0 * double(ub) * double(coef);
    dz[item] = 2.f * beta * coef * (1.f - ub * ub);
  }
  return dbeta;
}

// dx (n, D) = dz (n, LP) . planes (LP, D), stored to global memory; nothing when dx is null.
template <class Block, class T>
RACE_HD void hash_backward_input(const Block& blk, const Dims& d, const float* planes, const float* dz,
                                 int64_t n, T* dx) {
  if (dx == nullptr) return;
  const int lp = d.projections();
  const int64_t D = d.head_dim;
  const mma::Term term{mma::row_major(dz, n, lp), mma::row_major(planes, lp, D)};
  mma::gemm(blk, n, D, &term, 1, [&](int64_t i, int64_t c, float acc) { Element<T>::store(dx + i * D + c, acc); });
}

// a_t (n, S): the key sums each query of the chunk sees. Causal: the state's A plus the inclusive cumulative
// sum of phi_k over the chunk; bidirectional: the state's A (the document's total).
template <class Block>
RACE_HD void key_sums_per_query(const Block& blk, const Dims& d, bool causal, const float* state,
                                const float* phi_k, int64_t n, float* a_t) {
  const int S = d.buckets();
  const float* a_prev = state + S * d.head_dim;  // (S)
  for (int64_t item = blk.lane(); item < n * S; item += blk.lanes()) {
    const int64_t i = item / S, s = item % S;
    float acc = a_prev[s];
    if (causal)
      for (int64_t j = 0; j <= i; ++j) acc += phi_k[j * S + s];
    a_t[item] = acc;
  }
}

// ratio only: den_i = phi_q_i . A_i + eps.
RACE_HD float ratio_denominator(const Dims& d, float eps, const float* phi_q, const float* a_t, int64_t i) {
  const int S = d.buckets();
  float den = eps;
  for (int s = 0; s < S; ++s) den += phi_q[i * S + s] * a_t[i * S + s];
  return den;
}

// w (n, S): bucket w = phi_q / (A_t + eps); ratio w = phi_q / (phi_q . A_t + eps).
template <class Block>
RACE_HD void query_features(const Block& blk, const Dims& d, bool ratio, float eps, const float* phi_q,
                            const float* a_t, int64_t n, float* w) {
  const int S = d.buckets();
  for (int64_t item = blk.lane(); item < n * S; item += blk.lanes()) {
    const int64_t i = item / S;
    w[item] = ratio ? phi_q[item] / ratio_denominator(d, eps, phi_q, a_t, i) : phi_q[item] / (a_t[item] + eps);
  }
}

// out (n, n): out[i, j] = a_i . b_j over `width` columns (a, b: (n, width)); 0 above the diagonal for lower.
template <class Block>
RACE_HD void pair_dots(const Block& blk, Pairs pairs, const float* a, const float* b, int64_t width, int64_t n,
                       float* out) {
  const mma::Term term{mma::row_major(a, n, width), mma::transposed(b, n, width)};
  mma::gemm(blk, n, n, &term, 1, [&](int64_t i, int64_t j, float acc) {
    out[i * n + j] = pairs == Pairs::all || j <= i ? acc : 0.f;
  });
}

// out (n, D) = w B (the state's matrix) + scores v (causal: the chunk's own keys), stored to global memory.
// scores (n, n) is lower-triangular with zeros stored above the diagonal (pair_dots), so the full product is the
// causal sum over j <= i; bidirectional passes null scores.
template <class Block, class T>
RACE_HD void chunk_output(const Block& blk, const Dims& d, const float* w, const float* state,
                          const float* scores, const float* v, int64_t n, T* out) {
  const int S = d.buckets();
  const int64_t D = d.head_dim;
  const mma::Term terms[2] = {{mma::row_major(w, n, S), mma::row_major(state, S, D)},
                              {mma::row_major(scores, n, n), mma::row_major(v, n, D)}};
  mma::gemm(blk, n, D, terms, scores != nullptr ? 2 : 1,
            [&](int64_t i, int64_t c, float acc) { Element<T>::store(out + i * D + c, acc); });
}

// state += (left^T right, column sums of vec_terms): the matrix (S, D) += left (n, S)^T right (n, D) and
// the vector (S) += sum_i vec_terms (n, S). Keys: (phi_k, v, phi_k). Queries: (w, g, dA).
template <class Block>
RACE_HD void add_to_state(const Block& blk, const Dims& d, const float* left, const float* right,
                          const float* vec_terms, int64_t n, float* state) {
  const int S = d.buckets();
  const int64_t D = d.head_dim;
  const mma::Term term{mma::transposed(left, n, S), mma::row_major(right, n, D)};
  mma::gemm(blk, S, D, &term, 1, [&](int64_t s, int64_t c, float acc) { state[s * D + c] += acc; });
  float* vec = state + S * D;  // (S)
  for (int64_t s = blk.lane(); s < S; s += blk.lanes()) {
    float acc = 0.f;
    for (int64_t i = 0; i < n; ++i) acc += vec_terms[i * S + s];
    vec[s] += acc;
  }
}

// gb (n, S) = B_t g_t per query: g B^T over the state's matrix, plus (causal) sum_{j <= i} vg[i, j] phi_k[j]
// with vg[i, j] = g_i . v_j.
// vg (n, n) is lower-triangular with zeros stored above the diagonal (pair_dots).
template <class Block>
RACE_HD void query_state_dots(const Block& blk, const Dims& d, const float* state, const float* g,
                              const float* vg, const float* phi_k, int64_t n, float* gb) {
  const int S = d.buckets();
  const int64_t D = d.head_dim;
  const mma::Term terms[2] = {{mma::row_major(g, n, D), mma::transposed(state, S, D)},
                              {mma::row_major(vg, n, n), mma::row_major(phi_k, n, S)}};
  mma::gemm(blk, n, S, terms, vg != nullptr ? 2 : 1, [&](int64_t i, int64_t s, float acc) { gb[i * S + s] = acc; });
}

// From gb = B_t g_t: dphi_q (n, S) and the local gradient of the key sums, dA (n, S).
//   bucket: dphi_q = gb / (A_t + eps),                dA = -w gb / (A_t + eps)
//   ratio:  dphi_q = (gb - (w . gb) A_t) / den,       dA = -(w . gb) w
template <class Block>
RACE_HD void query_feature_backward(const Block& blk, const Dims& d, bool ratio, float eps, const float* phi_q,
                                    const float* w, const float* gb, const float* a_t, int64_t n,
                                    float* dphi_q, float* da) {
  const int S = d.buckets();
  for (int64_t item = blk.lane(); item < n * S; item += blk.lanes()) {
    const int64_t i = item / S;
    if (ratio) {
      float g_dot_o = 0.f;  // g_t . o_t = w_t . gb_t
      for (int s = 0; s < S; ++s) g_dot_o += w[i * S + s] * gb[i * S + s];
      dphi_q[item] = (gb[item] - g_dot_o * a_t[item]) / ratio_denominator(d, eps, phi_q, a_t, i);
      da[item] = -g_dot_o * w[item];
    } else {
      const float inv = 1.f / (a_t[item] + eps);
      dphi_q[item] = gb[item] * inv;
      da[item] = -w[item] * gb[item] * inv;
    }
  }
}

// dphi_k (n, S) for the chunk's keys, from the state of later queries (sum dA (S), G (S, D)):
//   dphi_k[j] = sum dA + G v_j  +  (causal) sum_{i >= j} (dA_i + w_i vg[i, j]),   vg[i, j] = g_i . v_j.
// The products v G^T + vg^T w run on tensor cores (vg is lower-triangular with zeros above the diagonal, so
// vg^T w sums over i >= j); the suffix sums of dA are additions, done by the lane that stores the element.
template <class Block>
RACE_HD void key_feature_grads(const Block& blk, const Dims& d, const float* state, const float* w,
                               const float* da, const float* v, const float* vg, int64_t n, float* dphi_k) {
  const int S = d.buckets();
  const int64_t D = d.head_dim;
  const float* da_sum = state + S * D;  // (S)
  const mma::Term terms[2] = {{mma::row_major(v, n, D), mma::transposed(state, S, D)},
                              {mma::transposed(vg, n, n), mma::row_major(w, n, S)}};
  mma::gemm(blk, n, S, terms, vg != nullptr ? 2 : 1, [&](int64_t j, int64_t s, float acc) {
    acc += da_sum[s];
    if (vg != nullptr)
      for (int64_t i = j; i < n; ++i) acc += da[i * S + s];
    dphi_k[j * S + s] = acc;
  });
}

// dv (n, D) = G^T phi_k_j  +  (causal) sum_{i >= j} scores[i, j] g_i with scores[i, j] = w_i . phi_k_j,
// stored to global memory; nothing when dv is null.
// scores (n, n) is lower-triangular with zeros above the diagonal, so scores^T g sums over i >= j.
template <class Block, class T>
RACE_HD void value_grads(const Block& blk, const Dims& d, const float* state, const float* phi_k,
                         const float* scores, const float* g, int64_t n, T* dv) {
  if (dv == nullptr) return;
  const int S = d.buckets();
  const int64_t D = d.head_dim;
  const mma::Term terms[2] = {{mma::row_major(phi_k, n, S), mma::row_major(state, S, D)},
                              {mma::transposed(scores, n, n), mma::row_major(g, n, D)}};
  mma::gemm(blk, n, D, terms, scores != nullptr ? 2 : 1,
            [&](int64_t j, int64_t c, float acc) { Element<T>::store(dv + j * D + c, acc); });
}

}  // namespace race::kernels::cuda::tile
