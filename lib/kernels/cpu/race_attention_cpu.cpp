// RACE attention on the CPU: forward and backward in the chunked linear-attention form.
//
// Causal RACE is linear attention with query feature w_t = phi(q_t) / (A_t + eps) (bucket) or
// phi(q_t) / (phi(q_t) . A_t + eps) (ratio) and key feature phi(k_j). A chunk of C tokens is done as
//   O = W_c B_prev + tril(W_c Phi_c^T) V_c,      B += Phi_c^T V_c,      A += column sums of Phi_c
// with the state B_prev (S, D) and the chunk's own values stacked into one row buffer, so the whole output
// is one register-blocked accumulate_rows call. The backward runs a forward sweep (rebuilding the prefix
// state, never subtracting from final sums: that loses q/k gradient accuracy at long T) that yields dq and
// stores w and dA per token, then a reverse sweep with the suffix state (G = sum w_t g_t^T, sum dA_t) that
// yields dk and dv. States and running sums are fp64; chunk products are fp32.
//
// Parallelism: work items are (row, span) with row = (batch, head). When there are fewer rows than
// threads, each row is split into spans; a span's incoming state is a segmented scan over the spans before
// it (documents reset the state), so all threads work at B = H = 1. Results depend only on the inputs and
// the number of spans, which is fixed by the thread count: deterministic for a fixed thread count.
#include "kernels/cpu/race_attention_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/row_products.h"
#include "kernels/cpu/soft_hash.h"

namespace race::kernels {

namespace {
// S = L * 2^P buckets: the state is S x D per row and thread; past this it is a configuration mistake.
constexpr int64_t kMaxBuckets = int64_t{1} << 20;
}  // namespace

void validate(const RaceAttentionShape& shape, const RaceAttentionOptions& options) {
  if (shape.batch < 1) fail("race attention: batch must be >= 1, got {}", shape.batch);
  if (shape.heads < 1) fail("race attention: heads must be >= 1, got {}", shape.heads);
  if (shape.seq_len < 1) fail("race attention: seq_len must be >= 1, got {}", shape.seq_len);
  if (shape.head_dim < 1) fail("race attention: head_dim must be >= 1, got {}", shape.head_dim);
  if (shape.tables < 1) fail("race attention: tables (L) must be >= 1, got {}", shape.tables);
  if (shape.bits < 1 || shape.bits > 12)
    fail("race attention: bits (P) must be in [1, 12] (2^P buckets per table), got {}", shape.bits);
  if (int64_t{shape.tables} << shape.bits > kMaxBuckets)
    fail("race attention: tables (L) * 2^bits (P) = {} buckets, at most {} supported (L = {}, P = {})",
         int64_t{shape.tables} << shape.bits, kMaxBuckets, shape.tables, shape.bits);
  int64_t elements = 0;
  if (__builtin_mul_overflow(shape.batch * shape.heads, shape.seq_len, &elements) ||
      __builtin_mul_overflow(elements, shape.head_dim, &elements) || shape.batch > (int64_t{1} << 40) ||
      shape.heads > (int64_t{1} << 20))
    fail("race attention: B * H * T * D = {} * {} * {} * {} overflows 64 bits", shape.batch, shape.heads,
         shape.seq_len, shape.head_dim);
  // phi / eps must stay finite in fp32 (phi <= 1), so a query that sees only pad keys gets 0, not NaN.
  if (!(options.eps >= 1e-30f) || !std::isfinite(options.eps))
    fail("race attention: eps must be a finite number >= 1e-30, got {}", options.eps);
}

}  // namespace race::kernels

namespace race::kernels::cpu {
namespace {

// Tokens per chunk: intra-chunk work grows with C, per-chunk state work shrinks with it.
constexpr int64_t kChunk = 32;
constexpr int64_t kMinSpanTokens = 4096;  // below this, splitting a row costs more than it gains

// One (batch, head) row of the inputs.
struct Row {
  const float* q;              // (T, D)
  const float* k;              // (T, D)
  const float* v;              // (T, D)
  const uint8_t* key_mask;     // (T) or null
  const int32_t* segment_ids;  // (T) or null
  SoftHash hash;
  int64_t seq_len;

  bool doc_start(int64_t t) const {
    return t == 0 || (segment_ids != nullptr && segment_ids[t] != segment_ids[t - 1]);
  }
  bool pad_key(int64_t t) const { return key_mask != nullptr && key_mask[t] == 0; }
  // First position after t that starts a document, or `end`.
  int64_t next_doc_start(int64_t t, int64_t end) const {
    if (segment_ids == nullptr) return end;
    for (int64_t i = t + 1; i < end; ++i)
      if (segment_ids[i] != segment_ids[i - 1]) return i;
    return end;
  }
};

// Running sums over keys (forward: A and B) or over queries (backward: sum dA and G): (S) and (S, D).
struct State {
  std::vector<double> vec;  // (S)
  std::vector<double> mat;  // (S, D)
  State(int64_t S, int64_t D) : vec(S, 0.0), mat(S * D, 0.0) {}
  void clear() {
    std::fill(vec.begin(), vec.end(), 0.0);
    std::fill(mat.begin(), mat.end(), 0.0);
  }
  void add(const State& other) {
    for (size_t i = 0; i < vec.size(); ++i) vec[i] += other.vec[i];
    for (size_t i = 0; i < mat.size(); ++i) mat[i] += other.mat[i];
  }
};

// Per-work-item scratch, sized for one chunk. Products read the state and the chunk's rows stacked
// ([state ; chunk] as rows, or [state^T | chunk^T] as columns for dot products).
struct Workspace {
  int64_t S, D, ld_t, ld_c;
  std::vector<float> rows;          // (S + C, D): fp32 copy of the state matrix, then the chunk's rows
  std::vector<float> rows_t;        // (D, ld_t): the same transposed, zero-padded to a 16 multiple
  std::vector<float> coef;          // (C, ld_c = S + C): features against the state, then scores
  std::vector<float> dots;          // (C, ld_t): products with rows_t
  std::vector<float> u_q, u_k;      // (C, LPpad) tanh projections
  std::vector<float> phi_q, phi_k;  // (C, S)
  std::vector<float> feature_t;     // (S, C): a feature matrix transposed
  std::vector<float> chunk_sum;     // (S, D)
  std::vector<float> dphi;          // (C, S)
  std::vector<float> dz, plus;      // (C, LPpad) hash scratch
  std::vector<float> d_key_sum;     // (C, S) local dA per query
  std::vector<double> key_sums;     // (C, S) A_t, the key sums query t sees (causal)
  std::vector<double> den;          // (C) ratio: phi(q_t) . A_t + eps

  Workspace(int64_t s, int64_t d, int64_t lp_padded)
      : S(s),
        D(d),
        ld_t(round_up16(s + kChunk)),
        ld_c(s + kChunk),
        rows((s + kChunk) * d),
        rows_t(d * ld_t),
        coef(kChunk * ld_c),
        dots(kChunk * ld_t),
        u_q(kChunk * lp_padded),
        u_k(kChunk * lp_padded),
        phi_q(kChunk * s),
        phi_k(kChunk * s),
        feature_t(s * kChunk),
        chunk_sum(s * d),
        dphi(kChunk * s),
        dz(kChunk * lp_padded),
        plus(kChunk * lp_padded),
        d_key_sum(kChunk * s),
        key_sums(kChunk * s),
        den(kChunk) {}

  float* chunk_rows() { return rows.data() + S * D; }
  void load_state(const State& state) {
    for (int64_t i = 0; i < S * D; ++i) rows[i] = static_cast<float>(state.mat[i]);
  }
  // rows_t[:, :S] = state^T, through rows[:S] (which it overwrites): convert, then transpose in fp32.
  void load_state_t(const State& state) {
    load_state(state);
    transpose(rows.data(), D, S, D, rows_t.data(), ld_t);
  }
  void load_chunk(const float* src, int64_t n) { std::copy(src, src + n * D, chunk_rows()); }
  void load_chunk_t(const float* src, int64_t n) { transpose(src, D, n, D, rows_t.data() + S, ld_t); }
  // dots (n, S + n) = x (n, D) . [state^T | chunk^T]; the padding columns come along for the vector width.
  void dot_with_rows_t(const float* x, int64_t n, int64_t columns) {
    const int64_t m = round_up16(columns);
    multiply_rows(dots.data(), ld_t, n, m, x, D, rows_t.data(), ld_t, 0, D);
  }
  // feature_t (S, C) = features (n, S) transposed.
  const float* transpose_features(const float* features, int64_t n) {
    transpose(features, S, n, S, feature_t.data(), kChunk);
    return feature_t.data();
  }

  // phi_k for keys [t0, t0 + n), pad keys zeroed: a pad key contributes exactly nothing.
  void hash_keys(const Row& row, int64_t t0, int64_t n) {
    row.hash.forward(row.k + t0 * D, n, u_k.data(), phi_k.data(), plus.data());
    for (int64_t j = 0; j < n; ++j)
      if (row.pad_key(t0 + j)) std::fill_n(phi_k.data() + j * S, S, 0.f);
  }
  void hash_queries(const Row& row, int64_t t0, int64_t n) {
    row.hash.forward(row.q + t0 * D, n, u_q.data(), phi_q.data(), plus.data());
  }
  double hash_backward_queries(const Row& row, int64_t n, float* dq) {
    return row.hash.backward(dphi.data(), phi_q.data(), u_q.data(), n, dz.data(), plus.data(), dq);
  }
  double hash_backward_keys(const Row& row, int64_t n, float* dk) {
    return row.hash.backward(dphi.data(), phi_k.data(), u_k.data(), n, dz.data(), plus.data(), dk);
  }

  // state.mat += features^T (n, S) . values (n, D);  state.vec += column sums of `vec_terms` (n, S).
  void add_outer_products(State& state, const float* features, const float* values, int64_t n,
                          const float* vec_terms) {
    multiply_rows(chunk_sum.data(), D, S, D, transpose_features(features, n), kChunk, values, D, 0, n);
    for (int64_t i = 0; i < S * D; ++i) state.mat[i] += chunk_sum[i];
    for (int64_t j = 0; j < n; ++j)
      for (int64_t s = 0; s < S; ++s) state.vec[s] += vec_terms[j * S + s];
  }
};

// Query features for one token seeing key sums A (S): w = phi_q / (A + eps) (bucket) or
// phi_q / (phi_q . A + eps) (ratio, whose denominator goes to *den).
inline void query_features(RaceEstimator estimator, float eps, const float* phi_q, const double* key_sum,
                           int64_t S, float* w, double* den) {
  if (estimator == RaceEstimator::bucket) {
    for (int64_t s = 0; s < S; ++s) w[s] = static_cast<float>(phi_q[s] / (key_sum[s] + eps));
  } else {
    double total = eps;
    for (int64_t s = 0; s < S; ++s) total += phi_q[s] * key_sum[s];
    *den = total;
    const double inv = 1.0 / total;
    for (int64_t s = 0; s < S; ++s) w[s] = static_cast<float>(phi_q[s] * inv);
  }
}

// For one token, from gB = B_t g_t (S): dphi_q (S) and the local gradient of the key sums dA (S).
inline void query_feature_backward(RaceEstimator estimator, float eps, const float* w, const float* g_b,
                                   const double* key_sum, double den, int64_t S, float* dphi_q,
                                   float* d_key_sum) {
  if (estimator == RaceEstimator::bucket) {
    for (int64_t s = 0; s < S; ++s) {
      const double inv = 1.0 / (key_sum[s] + eps);
      dphi_q[s] = static_cast<float>(g_b[s] * inv);
      d_key_sum[s] = static_cast<float>(-w[s] * g_b[s] * inv);
    }
  } else {
    double g_dot_o = 0.0;  // g_t . o_t = w_t . gB_t
    for (int64_t s = 0; s < S; ++s) g_dot_o += double(w[s]) * g_b[s];
    for (int64_t s = 0; s < S; ++s) {
      dphi_q[s] = static_cast<float>((g_b[s] - g_dot_o * key_sum[s]) / den);
      d_key_sum[s] = static_cast<float>(-g_dot_o * w[s]);
    }
  }
}

// Zeroes the strictly upper (keep_lower) or strictly lower triangle of an (n, n) block.
inline void mask_triangle(float* block, int64_t ld, int64_t n, bool keep_lower) {
  for (int64_t i = 0; i < n; ++i) {
    if (keep_lower)
      std::fill(block + i * ld + i + 1, block + i * ld + n, 0.f);
    else
      std::fill(block + i * ld, block + i * ld + i, 0.f);
  }
}

// ptr + offset * width, or null when the caller did not ask for that tensor.
inline float* rows_at(float* ptr, int64_t offset, int64_t width = 1) {
  return ptr == nullptr ? nullptr : ptr + offset * width;
}

// A half-open token range inside one document.
struct Piece {
  int64_t begin, end;
};

// Splits [begin, end) at document starts.
std::vector<Piece> pieces_of(const Row& row, int64_t begin, int64_t end) {
  std::vector<Piece> pieces;
  for (int64_t a = begin; a < end;) {
    const int64_t b = row.next_doc_start(a, end);
    pieces.push_back({a, b});
    a = b;
  }
  return pieces;
}

// ---- sums over a range of keys ------------------------------------------------------------------

// state += (sum phi(k_j), sum phi(k_j) v_j^T) over keys in [begin, end) (one document).
void sum_keys(const Row& row, Workspace& ws, int64_t begin, int64_t end, State& state) {
  for (int64_t t0 = begin; t0 < end; t0 += kChunk) {
    const int64_t n = std::min(kChunk, end - t0);
    ws.hash_keys(row, t0, n);
    ws.add_outer_products(state, ws.phi_k.data(), row.v + t0 * ws.D, n, ws.phi_k.data());
  }
}

// ---- causal forward -----------------------------------------------------------------------------

// Processes [begin, end) (one document) with `state` holding the sums of the document's earlier keys.
void causal_forward_piece(const Row& row, const RaceAttentionOptions& opt, Workspace& ws, int64_t begin,
                          int64_t end, State& state, float* out) {
  const int64_t S = ws.S, D = ws.D, ld = ws.ld_c;
  for (int64_t t0 = begin; t0 < end; t0 += kChunk) {
    const int64_t n = std::min(kChunk, end - t0);
    const float* v = row.v + t0 * D;  // (n, D)
    ws.hash_queries(row, t0, n);
    ws.hash_keys(row, t0, n);
    ws.load_state(state);
    ws.load_chunk(v, n);
    std::copy(state.vec.begin(), state.vec.end(), ws.key_sums.begin());
    for (int64_t t = 0; t < n; ++t) {
      double* a = ws.key_sums.data();
      for (int64_t s = 0; s < S; ++s) a[s] += ws.phi_k[t * S + s];
      query_features(opt.estimator, opt.eps, ws.phi_q.data() + t * S, a, S, ws.coef.data() + t * ld,
                     &ws.den[t]);
    }
    // coef = [w | tril(w phi_k^T)] against rows = [B_prev ; V_c]
    for (int64_t t = 0; t < n; ++t) std::fill_n(ws.coef.data() + t * ld + S, n, 0.f);
    accumulate_rows(ws.coef.data() + S, ld, n, n, ws.coef.data(), ld,
                    ws.transpose_features(ws.phi_k.data(), n), kChunk, 0, S);
    mask_triangle(ws.coef.data() + S, ld, n, true);
    float* o = out + t0 * D;  // (n, D)
    std::fill_n(o, n * D, 0.f);
    for (int64_t i0 = 0; i0 < n; i0 += 8) {
      const int64_t rows_here = std::min<int64_t>(8, n - i0);
      accumulate_rows(o + i0 * D, D, rows_here, D, ws.coef.data() + i0 * ld, ld, ws.rows.data(), D, 0,
                      S + i0 + rows_here);
    }
    ws.add_outer_products(state, ws.phi_k.data(), v, n, ws.phi_k.data());
  }
}

// ---- causal backward ----------------------------------------------------------------------------

// Forward sweep over [begin, end) (one document), `state` = sums of earlier keys. Writes dq for the
// range and stores w and dA per token in w_store, da_store ((end - begin, S) each). When `query_sums`
// is given, adds (sum dA_t, sum w_t g_t^T) over the range into it. Returns the dbeta contribution.
double causal_backward_forward_sweep(const Row& row, const RaceAttentionOptions& opt, Workspace& ws,
                                     int64_t begin, int64_t end, State& state, const float* dout, float* dq,
                                     float* w_store, float* da_store, State* query_sums) {
  const int64_t S = ws.S, D = ws.D, ld = ws.ld_t;
  double dbeta = 0.0;
  for (int64_t t0 = begin; t0 < end; t0 += kChunk) {
    const int64_t n = std::min(kChunk, end - t0);
    const float* v = row.v + t0 * D;                // (n, D)
    const float* g = dout + t0 * D;                 // (n, D)
    float* w_chunk = w_store + (t0 - begin) * S;    // (n, S)
    float* da_chunk = da_store + (t0 - begin) * S;  // (n, S)
    ws.hash_queries(row, t0, n);
    ws.hash_keys(row, t0, n);
    std::copy(state.vec.begin(), state.vec.end(), ws.key_sums.begin());
    for (int64_t t = 0; t < n; ++t) {
      double* a = ws.key_sums.data() + t * S;
      if (t > 0) std::copy_n(a - S, S, a);
      for (int64_t s = 0; s < S; ++s) a[s] += ws.phi_k[t * S + s];
      query_features(opt.estimator, opt.eps, ws.phi_q.data() + t * S, a, S, w_chunk + t * S, &ws.den[t]);
    }
    // dots[t, s] = B_prev[s] . g_t, then += sum_{j <= t} (g_t . v_j) phi_k[j, s]: dots[t, :S] = B_t g_t
    ws.load_state_t(state);
    ws.load_chunk_t(v, n);
    ws.dot_with_rows_t(g, n, S + n);
    mask_triangle(ws.dots.data() + S, ld, n, true);
    accumulate_rows(ws.dots.data(), ld, n, S, ws.dots.data() + S, ld, ws.phi_k.data(), S, 0, n);
    for (int64_t t = 0; t < n; ++t)
      query_feature_backward(opt.estimator, opt.eps, w_chunk + t * S, ws.dots.data() + t * ld,
                             ws.key_sums.data() + t * S, ws.den[t], S, ws.dphi.data() + t * S,
                             da_chunk + t * S);
    dbeta += ws.hash_backward_queries(row, n, rows_at(dq, t0, D));
    if (query_sums != nullptr) ws.add_outer_products(*query_sums, w_chunk, g, n, da_chunk);
    ws.add_outer_products(state, ws.phi_k.data(), v, n, ws.phi_k.data());
  }
  return dbeta;
}

// Reverse sweep over [begin, end) (one document), `suffix` = (sum dA, sum w g^T) over the document's
// later queries. Reads w and dA from the forward sweep's scratch; writes dk and dv.
double causal_backward_reverse_sweep(const Row& row, Workspace& ws, int64_t begin, int64_t end, State& suffix,
                                     const float* dout, const float* w_store, const float* da_store,
                                     float* dk, float* dv) {
  const int64_t S = ws.S, D = ws.D, ld = ws.ld_t, ldc = ws.ld_c;
  double dbeta = 0.0;
  const int64_t last_chunk = begin + (end - begin - 1) / kChunk * kChunk;
  for (int64_t t0 = last_chunk; t0 >= begin; t0 -= kChunk) {
    const int64_t n = std::min(kChunk, end - t0);
    const float* v = row.v + t0 * D;                // (n, D)
    const float* g = dout + t0 * D;                 // (n, D)
    const float* w = w_store + (t0 - begin) * S;    // (n, S)
    const float* da = da_store + (t0 - begin) * S;  // (n, S)
    ws.hash_keys(row, t0, n);
    // dots[j, s] = G_after[s] . v_j;  dots[j, S + t] = v_j . g_t, kept for t >= j
    ws.load_state_t(suffix);
    ws.load_chunk_t(g, n);
    ws.dot_with_rows_t(v, n, S + n);
    mask_triangle(ws.dots.data() + S, ld, n, false);
    // dphi_k[j] = sum_{t >= j} dA_t + G_after v_j + sum_{t >= j} (v_j . g_t) w_t
    for (int64_t j = 0; j < n; ++j) std::copy_n(ws.dots.data() + j * ld, S, ws.dphi.data() + j * S);
    accumulate_rows(ws.dphi.data(), S, n, S, ws.dots.data() + S, ld, w, S, 0, n);
    for (int64_t j = n - 1; j >= 0; --j) {
      float* dphi = ws.dphi.data() + j * S;
      for (int64_t s = 0; s < S; ++s) {
        suffix.vec[s] += da[j * S + s];
        dphi[s] += static_cast<float>(suffix.vec[s]);
      }
      if (row.pad_key(t0 + j)) std::fill_n(dphi, S, 0.f);
    }
    // coef = [phi_k | triu(phi_k w^T)] against rows = [G_after ; G_c]
    for (int64_t j = 0; j < n; ++j) {
      std::copy_n(ws.phi_k.data() + j * S, S, ws.coef.data() + j * ldc);
      std::fill_n(ws.coef.data() + j * ldc + S, n, 0.f);
    }
    accumulate_rows(ws.coef.data() + S, ldc, n, n, ws.phi_k.data(), S, ws.transpose_features(w, n), kChunk, 0,
                    S);
    mask_triangle(ws.coef.data() + S, ldc, n, false);
    ws.load_chunk(g, n);  // rows[:S] already holds G_after from load_state_t
    if (dv != nullptr) {
      float* dv_chunk = dv + t0 * D;  // (n, D)
      for (int64_t i0 = 0; i0 < n; i0 += 8) {
        const int64_t rows_here = std::min<int64_t>(8, n - i0);
        const float* c = ws.coef.data() + i0 * ldc;
        multiply_rows(dv_chunk + i0 * D, D, rows_here, D, c, ldc, ws.rows.data(), D, 0, S);
        accumulate_rows(dv_chunk + i0 * D, D, rows_here, D, c, ldc, ws.rows.data(), D, S + i0, S + n);
      }
    }
    dbeta += ws.hash_backward_keys(row, n, rows_at(dk, t0, D));
    multiply_rows(ws.chunk_sum.data(), D, S, D, ws.feature_t.data(), kChunk, g, D, 0, n);
    for (int64_t i = 0; i < S * D; ++i) suffix.mat[i] += ws.chunk_sum[i];
  }
  return dbeta;
}

// ---- bidirectional ------------------------------------------------------------------------------

// Outputs for queries in [begin, end) that see the key sums `total`.
void bidirectional_forward_piece(const Row& row, const RaceAttentionOptions& opt, Workspace& ws,
                                 int64_t begin, int64_t end, const State& total, float* out) {
  const int64_t S = ws.S, D = ws.D, ld = ws.ld_c;
  ws.load_state(total);
  for (int64_t t0 = begin; t0 < end; t0 += kChunk) {
    const int64_t n = std::min(kChunk, end - t0);
    ws.hash_queries(row, t0, n);
    for (int64_t t = 0; t < n; ++t)
      query_features(opt.estimator, opt.eps, ws.phi_q.data() + t * S, total.vec.data(), S,
                     ws.coef.data() + t * ld, &ws.den[t]);
    multiply_rows(out + t0 * D, D, n, D, ws.coef.data(), ld, ws.rows.data(), D, 0, S);
  }
}

// dq for queries in [begin, end) seeing key sums `total`; adds (sum dA, sum w g^T) into `query_sums`.
double bidirectional_backward_queries(const Row& row, const RaceAttentionOptions& opt, Workspace& ws,
                                      int64_t begin, int64_t end, const State& total, const float* dout,
                                      float* dq, State& query_sums) {
  const int64_t S = ws.S, D = ws.D, ld = ws.ld_t;
  double dbeta = 0.0;
  ws.load_state_t(total);
  for (int64_t t0 = begin; t0 < end; t0 += kChunk) {
    const int64_t n = std::min(kChunk, end - t0);
    const float* g = dout + t0 * D;
    ws.hash_queries(row, t0, n);
    ws.dot_with_rows_t(g, n, S);
    float* w = ws.coef.data();  // (n, S), dense
    for (int64_t t = 0; t < n; ++t) {
      query_features(opt.estimator, opt.eps, ws.phi_q.data() + t * S, total.vec.data(), S, w + t * S,
                     &ws.den[t]);
      query_feature_backward(opt.estimator, opt.eps, w + t * S, ws.dots.data() + t * ld, total.vec.data(),
                             ws.den[t], S, ws.dphi.data() + t * S, ws.d_key_sum.data() + t * S);
    }
    dbeta += ws.hash_backward_queries(row, n, rows_at(dq, t0, D));
    ws.add_outer_products(query_sums, w, g, n, ws.d_key_sum.data());
  }
  return dbeta;
}

// dk, dv for keys in [begin, end) whose document's query sums are `total` = (sum dA, G).
double bidirectional_backward_keys(const Row& row, Workspace& ws, int64_t begin, int64_t end,
                                   const State& total, float* dk, float* dv) {
  const int64_t S = ws.S, D = ws.D, ld = ws.ld_t;
  double dbeta = 0.0;
  ws.load_state_t(total);  // fills rows[:S] too
  for (int64_t t0 = begin; t0 < end; t0 += kChunk) {
    const int64_t n = std::min(kChunk, end - t0);
    ws.hash_keys(row, t0, n);
    ws.dot_with_rows_t(row.v + t0 * D, n, S);
    for (int64_t j = 0; j < n; ++j) {
      float* dphi = ws.dphi.data() + j * S;
      for (int64_t s = 0; s < S; ++s) dphi[s] = static_cast<float>(total.vec[s]) + ws.dots[j * ld + s];
      if (row.pad_key(t0 + j)) std::fill_n(dphi, S, 0.f);
    }
    if (dv != nullptr) multiply_rows(dv + t0 * D, D, n, D, ws.phi_k.data(), S, ws.rows.data(), D, 0, S);
    dbeta += ws.hash_backward_keys(row, n, rows_at(dk, t0, D));
  }
  return dbeta;
}

// ---- running work items on threads -------------------------------------------------------------

// What one thread needs while it works on spans: built before a parallel region, never inside one.
struct ThreadScratch {
  Workspace ws;
  State state, sums;
  ThreadScratch(int64_t S, int64_t D, int64_t lp_padded) : ws(S, D, lp_padded), state(S, D), sums(S, D) {}
};

std::vector<ThreadScratch> thread_scratch(const RaceAttentionShape& shape) {
  const int64_t S = shape.buckets(), D = shape.head_dim;
  std::vector<ThreadScratch> scratch;
  for (int i = 0; i < omp_get_max_threads(); ++i)
    scratch.emplace_back(S, D, round_up16(int64_t{shape.tables} * shape.bits));
  return scratch;
}

// Runs body(scratch, i) for i in [0, n) on OpenMP threads. An exception must never leave an OpenMP region
// (the process would terminate), so the first one thrown is carried out and rethrown after the loop.
template <typename Body>
void for_each_item(int64_t n, std::vector<ThreadScratch>& scratch, Body&& body) {
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) {
    try {
      body(scratch[omp_get_thread_num()], i);
    } catch (...) {
#pragma omp critical(race_attention_cpu_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// ---- work split and the scans across spans ------------------------------------------------------

struct Span {
  int64_t row, begin, end;
};

struct Plan {
  int64_t rows, spans_per_row;
  std::vector<Span> spans;  // row-major: spans of row r are [r * spans_per_row, (r + 1) * spans_per_row)
};

Plan make_plan(const RaceAttentionShape& shape) {
  const int64_t rows = shape.batch * shape.heads;
  const int64_t threads = omp_get_max_threads();
  int64_t per_row = 1;
  if (rows < threads)
    per_row = std::clamp<int64_t>((threads + rows - 1) / rows, 1,
                                  std::max<int64_t>(1, shape.seq_len / kMinSpanTokens));
  Plan plan{rows, per_row, {}};
  const int64_t T = shape.seq_len;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < per_row; ++i) {
      // span edges on chunk multiples, so splitting a row does not shorten its chunks (documents still do)
      const int64_t chunks = (T + kChunk - 1) / kChunk;
      const int64_t b = std::min(T, chunks * i / per_row * kChunk);
      const int64_t e = std::min(T, chunks * (i + 1) / per_row * kChunk);
      plan.spans.push_back({r, b, e});
    }
  return plan;
}

// Sums of a span's leading piece (when it continues a document from the previous span) and of its
// trailing piece (from its last document start, or the span start, to the span end).
struct SpanSums {
  State head, tail;
  bool has_doc_start = false;
  SpanSums(int64_t S, int64_t D) : head(S, D), tail(S, D) {}
};

// Given each span's SpanSums for one row, the state flowing into each span from the left (carry_in:
// sums over the document's tokens before the span) and from the right (carry_out: after the span).
struct SpanCarries {
  std::vector<State> in, out;
};

SpanCarries scan_spans(const std::vector<SpanSums>& sums, int64_t S, int64_t D) {
  const int64_t n = static_cast<int64_t>(sums.size());
  SpanCarries c{std::vector<State>(n, State(S, D)), std::vector<State>(n, State(S, D))};
  for (int64_t i = 1; i < n; ++i) {
    c.in[i] = sums[i - 1].tail;
    if (!sums[i - 1].has_doc_start) c.in[i].add(c.in[i - 1]);
  }
  for (int64_t i = n - 2; i >= 0; --i) {
    c.out[i] = sums[i + 1].head;
    if (!sums[i + 1].has_doc_start) c.out[i].add(c.out[i + 1]);
  }
  return c;
}

// The hyperplanes of each head group transposed to (D, LPpad) with zero padding, for the hash's
// projections: (1 or H, D, LPpad).
std::vector<float> transpose_planes(const RaceAttentionShape& shape, const float* planes) {
  const int64_t groups = shape.planes_per_head ? shape.heads : 1, D = shape.head_dim;
  const int64_t lp = int64_t{shape.tables} * shape.bits, ld = round_up16(lp);
  std::vector<float> planes_t(groups * D * ld, 0.f);
  for (int64_t h = 0; h < groups; ++h)
    for (int64_t i = 0; i < lp; ++i)
      for (int64_t d = 0; d < D; ++d) planes_t[(h * D + d) * ld + i] = planes[(h * lp + i) * D + d];
  return planes_t;
}

Row make_row(const RaceAttentionShape& shape, const RaceAttentionInputs& in,
             const std::vector<float>& planes_t, int64_t row_index) {
  const int64_t b = row_index / shape.heads, h = row_index % shape.heads;
  const int64_t T = shape.seq_len, D = shape.head_dim;
  const int64_t lp = int64_t{shape.tables} * shape.bits;
  const int64_t offset = row_index * T * D;
  const int64_t group = shape.planes_per_head ? h : 0;
  return Row{in.q + offset,
             in.k + offset,
             in.v + offset,
             in.key_mask ? in.key_mask + b * T : nullptr,
             in.segment_ids ? in.segment_ids + b * T : nullptr,
             SoftHash{in.planes + group * lp * D, planes_t.data() + group * D * round_up16(lp), in.beta[h],
                      shape.tables, shape.bits, D},
             T};
}

void check_pointers(const RaceAttentionInputs& in) {
  RACE_CHECK(in.q && in.k && in.v && in.planes && in.beta,
             "race attention: q, k, v, planes and beta "
             "must all be given");
}

// Where a piece meets the edges of its span while its document goes on past them (only in split rows).
struct Edges {
  bool touches_begin = false, touches_end = false;
};

Edges edges_of(const Row& row, const Span& span, const Piece& p, bool split) {
  if (!split) return {};
  return {p.begin == span.begin && !row.doc_start(p.begin),
          p.end == span.end && span.end < row.seq_len && !row.doc_start(p.end)};
}

// The key sums of every span: tails (for the causal carry) always, heads only for bidirectional.
std::vector<SpanSums> key_span_sums(const RaceAttentionShape& shape, const RaceAttentionInputs& in,
                                    const std::vector<float>& planes_t, const Plan& plan, bool need_heads) {
  const int64_t S = shape.buckets(), D = shape.head_dim;
  std::vector<SpanSums> sums(plan.spans.size(), SpanSums(S, D));
  std::vector<ThreadScratch> per_thread = thread_scratch(shape);
  for_each_item(static_cast<int64_t>(plan.spans.size()), per_thread, [&](ThreadScratch& thread, int64_t i) {
    Workspace& ws = thread.ws;
    const Span& span = plan.spans[i];
    const Row row = make_row(shape, in, planes_t, span.row);
    const auto pieces = pieces_of(row, span.begin, span.end);
    const bool continues = !row.doc_start(span.begin);
    const bool last_in_row = span.end == row.seq_len;
    sums[i].has_doc_start = !continues || pieces.size() > 1;
    if (pieces.size() == 1 && continues) {
      if (need_heads || !last_in_row) {
        sum_keys(row, ws, span.begin, span.end, sums[i].head);
        sums[i].tail = sums[i].head;
      }
      return;
    }
    if (need_heads && continues) sum_keys(row, ws, pieces.front().begin, pieces.front().end, sums[i].head);
    if (!last_in_row) sum_keys(row, ws, pieces.back().begin, pieces.back().end, sums[i].tail);
  });
  return sums;
}

std::vector<SpanCarries> row_carries(const std::vector<SpanSums>& sums, const Plan& plan, int64_t S,
                                     int64_t D) {
  std::vector<SpanCarries> carries;
  for (int64_t r = 0; r < plan.rows; ++r) {
    const auto first = sums.begin() + r * plan.spans_per_row;
    carries.push_back(scan_spans(std::vector<SpanSums>(first, first + plan.spans_per_row), S, D));
  }
  return carries;
}

// Sums over a whole document, for a piece of span i with sums `piece_sum`: the document's tokens before
// the span arrive in carry_in[i], those after it in carry_out[i].
State document_total(const SpanCarries& c, int64_t i, const Edges& e, const State& piece_sum) {
  State total = piece_sum;
  if (e.touches_begin) total.add(c.in[i]);
  if (e.touches_end) total.add(c.out[i]);
  return total;
}

// Floats of w/dA storage the causal backward needs: every span's when rows are split (kept across the
// two phases), else one row per thread (indexed by thread number, so every thread's, even idle ones).
int64_t store_floats(const RaceAttentionShape& shape, const RaceAttentionOptions& options, const Plan& plan) {
  if (!options.causal) return 0;
  const int64_t row_floats = 2 * shape.buckets() * shape.seq_len;
  if (plan.spans_per_row > 1) return plan.rows * row_floats;
  return int64_t{omp_get_max_threads()} * row_floats;
}

void reduce_dbeta(const RaceAttentionShape& shape, const Plan& plan, const std::vector<double>& partial,
                  float* dbeta) {
  if (dbeta == nullptr) return;
  for (int64_t h = 0; h < shape.heads; ++h) {
    double total = 0.0;
    for (int64_t b = 0; b < shape.batch; ++b)
      for (int64_t i = 0; i < plan.spans_per_row; ++i)
        total += partial[(b * shape.heads + h) * plan.spans_per_row + i];
    dbeta[h] = static_cast<float>(total);
  }
}

}  // namespace

void race_attention_forward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                            const RaceAttentionInputs& inputs, float* out) {
  validate(shape, options);
  check_pointers(inputs);
  const int64_t S = shape.buckets(), D = shape.head_dim;
  const std::vector<float> planes_t = transpose_planes(shape, inputs.planes);
  const Plan plan = make_plan(shape);
  const bool split = plan.spans_per_row > 1;
  std::vector<SpanCarries> carries;
  if (split) carries = row_carries(key_span_sums(shape, inputs, planes_t, plan, !options.causal), plan, S, D);

  std::vector<ThreadScratch> per_thread = thread_scratch(shape);
  for_each_item(static_cast<int64_t>(plan.spans.size()), per_thread, [&](ThreadScratch& thread, int64_t i) {
    Workspace& ws = thread.ws;
    State& state = thread.state;
    const Span& span = plan.spans[i];
    const int64_t in_row = i % plan.spans_per_row;
    const Row row = make_row(shape, inputs, planes_t, span.row);
    float* row_out = out + span.row * shape.seq_len * D;
    for (const Piece& p : pieces_of(row, span.begin, span.end)) {
      const Edges e = edges_of(row, span, p, split);
      if (options.causal) {
        if (e.touches_begin)
          state = carries[span.row].in[in_row];
        else
          state.clear();
        causal_forward_piece(row, options, ws, p.begin, p.end, state, row_out);
      } else {
        state.clear();
        sum_keys(row, ws, p.begin, p.end, state);
        if (split) state = document_total(carries[span.row], in_row, e, state);
        bidirectional_forward_piece(row, options, ws, p.begin, p.end, state, row_out);
      }
    }
  });
}

int64_t race_attention_backward_scratch_bytes(const RaceAttentionShape& shape,
                                              const RaceAttentionOptions& options) {
  validate(shape, options);
  return store_floats(shape, options, make_plan(shape)) * int64_t{sizeof(float)};
}

void race_attention_backward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                             const RaceAttentionInputs& inputs, const float* dout,
                             const RaceAttentionGradients& grads, Scratch scratch) {
  validate(shape, options);
  check_pointers(inputs);
  RACE_CHECK(dout != nullptr, "race attention backward: dout must be given");
  const int64_t S = shape.buckets(), D = shape.head_dim, T = shape.seq_len;
  const std::vector<float> planes_t = transpose_planes(shape, inputs.planes);
  const Plan plan = make_plan(shape);
  const bool split = plan.spans_per_row > 1;
  const int64_t needed = store_floats(shape, options, plan);
  std::vector<float> own_store;
  float* store_base = static_cast<float*>(scratch.data);
  if (store_base == nullptr) {
    own_store.resize(needed);
    store_base = own_store.data();
  } else {
    RACE_CHECK(scratch.bytes >= needed * int64_t{sizeof(float)},
               "race attention backward: scratch of {} bytes, {} needed (the thread count changed since "
               "race_attention_backward_scratch_bytes?)",
               scratch.bytes, needed * int64_t{sizeof(float)});
  }
  const int64_t n_spans = static_cast<int64_t>(plan.spans.size());
  std::vector<SpanCarries> key_carries;
  if (split)
    key_carries = row_carries(key_span_sums(shape, inputs, planes_t, plan, !options.causal), plan, S, D);
  std::vector<double> dbeta_partial(n_spans, 0.0);
  // Query sums (sum dA, sum w g^T) of the pieces that continue a document across span edges.
  std::vector<SpanSums> query_sums(split ? n_spans : 0, SpanSums(split ? S : 0, split ? D : 0));
  // Causal: w and dA per token, (2, span length, S) per span. Split rows keep every span's from phase 1 to
  // phase 2; otherwise each thread reuses one row-sized slice.
  auto span_store = [&](int64_t i) {
    const Span& span = plan.spans[i];
    return split ? store_base + 2 * S * (span.row * T + span.begin)
                 : store_base + 2 * S * T * omp_get_thread_num();
  };

  // Phase 1: every piece's queries (dq), and the keys (dk, dv) of pieces whose document ends in the span.
  std::vector<ThreadScratch> per_thread = thread_scratch(shape);
  for_each_item(n_spans, per_thread, [&](ThreadScratch& thread, int64_t i) {
    Workspace& ws = thread.ws;
    State& state = thread.state;
    State& sums = thread.sums;
    const Span& span = plan.spans[i];
    const int64_t in_row = i % plan.spans_per_row;
    const Row row = make_row(shape, inputs, planes_t, span.row);
    const int64_t off = span.row * T * D;
    const auto pieces = pieces_of(row, span.begin, span.end);
    if (split) query_sums[i].has_doc_start = row.doc_start(span.begin) || pieces.size() > 1;
    float* store = options.causal ? span_store(i) : nullptr;
    const int64_t span_len = span.end - span.begin;
    for (const Piece& p : pieces) {
      const Edges e = edges_of(row, span, p, split);
      if (options.causal) {
        if (e.touches_begin)
          state = key_carries[span.row].in[in_row];
        else
          state.clear();
        float* w_store = store + (p.begin - span.begin) * S;
        float* da_store = w_store + span_len * S;
        dbeta_partial[i] += causal_backward_forward_sweep(row, options, ws, p.begin, p.end, state, dout + off,
                                                          rows_at(grads.dq, off), w_store, da_store,
                                                          e.touches_begin ? &query_sums[i].head : nullptr);
        if (!e.touches_end) {
          state.clear();
          dbeta_partial[i] +=
              causal_backward_reverse_sweep(row, ws, p.begin, p.end, state, dout + off, w_store, da_store,
                                            rows_at(grads.dk, off), rows_at(grads.dv, off));
        }
      } else {
        state.clear();
        sum_keys(row, ws, p.begin, p.end, state);
        if (split) state = document_total(key_carries[span.row], in_row, e, state);
        sums.clear();
        dbeta_partial[i] += bidirectional_backward_queries(row, options, ws, p.begin, p.end, state,
                                                           dout + off, rows_at(grads.dq, off), sums);
        if (e.touches_begin) query_sums[i].head = sums;
        if (e.touches_end) query_sums[i].tail = sums;
        if (!e.touches_begin && !e.touches_end)
          dbeta_partial[i] += bidirectional_backward_keys(row, ws, p.begin, p.end, sums,
                                                          rows_at(grads.dk, off), rows_at(grads.dv, off));
      }
    }
  });

  if (split) {
    // Phase 2: keys of the pieces whose document continues past an edge of their span.
    const auto query_carries = row_carries(query_sums, plan, S, D);
    for_each_item(n_spans, per_thread, [&](ThreadScratch& thread, int64_t i) {
      Workspace& ws = thread.ws;
      State& state = thread.state;
      const Span& span = plan.spans[i];
      const int64_t in_row = i % plan.spans_per_row;
      const Row row = make_row(shape, inputs, planes_t, span.row);
      const int64_t off = span.row * T * D;
      const SpanCarries& carry = query_carries[span.row];
      for (const Piece& p : pieces_of(row, span.begin, span.end)) {
        const Edges e = edges_of(row, span, p, split);
        if (options.causal && e.touches_end) {
          state = carry.out[in_row];
          const float* w_store = span_store(i) + (p.begin - span.begin) * S;
          const float* da_store = w_store + (span.end - span.begin) * S;
          dbeta_partial[i] +=
              causal_backward_reverse_sweep(row, ws, p.begin, p.end, state, dout + off, w_store, da_store,
                                            rows_at(grads.dk, off), rows_at(grads.dv, off));
        } else if (!options.causal && (e.touches_begin || e.touches_end)) {
          const State& own = e.touches_begin ? query_sums[i].head : query_sums[i].tail;
          dbeta_partial[i] +=
              bidirectional_backward_keys(row, ws, p.begin, p.end, document_total(carry, in_row, e, own),
                                          rows_at(grads.dk, off), rows_at(grads.dv, off));
        }
      }
    });
  }
  reduce_dbeta(shape, plan, dbeta_partial, grads.dbeta);
}

}  // namespace race::kernels::cpu
