// Softmax attention on the CPU, flash style (FlashAttention-2 order of work, deterministic backward).
//
// Forward, per query tile: loop over the key tiles inside the causal/window band, compute the scores of the
// tile, update a running max m and sum l per query (online softmax), rescale and accumulate P V.
// Backward, per key tile: loop over query tiles, recompute P = exp(S - lse), accumulate dV += P^T dO and
// dK += dS^T Q with dS = P * (dO V^T - D_t), D_t = dout_t . out_t; then, per query tile, loop over key
// tiles for dQ += dS K. Computing dQ apart costs two extra tile products but lets every gradient row be
// owned by one thread (no atomics), which makes the result independent of the thread count.
//
// A task takes a group of up to kMaxGroup neighbouring tiles of one (batch, head), so that each tile of the
// other side is loaded once per group: at long T the K/V (or Q/dO) stream comes from DRAM, and sharing it
// between tiles keeps the kernel compute-bound. Tiles are aligned to multiples of kTile on both sides and a
// tile meets exactly the tiles of its own band, so the grouping (which follows the thread count) changes no
// arithmetic.
//
// All tile products go through one register-blocked kernel, c += a b, whose right operand b is read as
// contiguous rows of vectors and whose left operand a is only broadcast, one element at a time, so a may
// be stored either way round. Each product is arranged so that the operand that would need a transpose is
// one that stays fixed for the whole loop over tiles (Q^T in the forward, K^T and V^T in the key-tile pass,
// Q^T and dO^T in the query-tile pass): it is transposed once per task, never per pair of tiles.
#include "kernels/cpu/softmax_attention_cpu.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <vector>

#include "core/error.h"

namespace race::kernels::cpu {
namespace {

constexpr int64_t kTile = 64;       // queries per query tile and keys per key tile
constexpr int64_t kMaxGroup = 4;    // tiles per task sharing each loaded tile of the other side
constexpr int64_t kLanes = 16;      // scratch rows are padded to a multiple of this (one AVX-512 vector)
constexpr int64_t kBlockRows = 4;   // rows of the register block; tile rows are padded to a multiple
constexpr int64_t kBlockCols = 64;  // columns of the register block: 4 x 4 vectors of accumulators
constexpr float kInf = std::numeric_limits<float>::infinity();

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Positions [begin, end) along the sequence.
struct Range {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

// The validated problem, with the defaults resolved.
struct Problem {
  int64_t batch = 0;
  int64_t heads = 0;
  int64_t seq_len = 0;
  int64_t dim = 0;         // D
  int64_t padded_dim = 0;  // D rounded up to kLanes: the row stride of scratch tiles
  // Query t sees key j (before masks and segments) when min_lag <= t - j <= max_lag.
  int64_t min_lag = 0;
  int64_t max_lag = 0;
  float scale = 0.f;
  const float* q = nullptr;              // (B, H, T, D)
  const float* k = nullptr;              // (B, H, T, D)
  const float* v = nullptr;              // (B, H, T, D)
  const uint8_t* key_mask = nullptr;     // (B, T) or null
  const int32_t* segment_ids = nullptr;  // (B, T) document number of each token, or null
  std::vector<int32_t> documents;        // (B, T) storage behind segment_ids

  int64_t tiles() const { return (seq_len + kTile - 1) / kTile; }
  Range tile(int64_t index) const { return {index * kTile, std::min(seq_len, index * kTile + kTile)}; }
  // Row t of head bh of a (B, H, T, D) tensor.
  int64_t row(int64_t bh, int64_t t) const { return (bh * seq_len + t) * dim; }
};

Problem resolve(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                const SoftmaxAttentionInputs& inputs) {
  const auto require_positive = [](const char* name, int64_t value) {
    if (value <= 0) fail("softmax attention: {} must be positive, got {}", name, value);
  };
  require_positive("batch", shape.batch);
  require_positive("heads", shape.heads);
  require_positive("seq_len", shape.seq_len);
  require_positive("head_dim", shape.head_dim);
  int64_t elements = 0;
  if (__builtin_mul_overflow(shape.batch, shape.heads, &elements) ||
      __builtin_mul_overflow(elements, shape.seq_len, &elements) ||
      __builtin_mul_overflow(elements, shape.head_dim, &elements)) {
    fail("softmax attention: B*H*T*D overflows int64 (B={}, H={}, T={}, D={})", shape.batch, shape.heads,
         shape.seq_len, shape.head_dim);
  }
  if (options.window < 0) {
    fail("softmax attention: window must be >= 0 (0 = full attention), got {}", options.window);
  }
  if (!std::isfinite(options.scale) || options.scale < 0.f) {
    fail("softmax attention: scale must be finite and >= 0 (0 = 1/sqrt(head_dim)), got {}", options.scale);
  }
  if (inputs.q == nullptr) fail("softmax attention: q is null");
  if (inputs.k == nullptr) fail("softmax attention: k is null");
  if (inputs.v == nullptr) fail("softmax attention: v is null");

  Problem p;
  p.batch = shape.batch;
  p.heads = shape.heads;
  p.seq_len = shape.seq_len;
  p.dim = shape.head_dim;
  p.padded_dim = round_up(shape.head_dim, kLanes);
  // Lags beyond +-(T - 1) never occur, so they stand for "unbounded".
  const int64_t reach = options.window > 0 ? std::min(options.window, p.seq_len) - 1 : p.seq_len - 1;
  p.max_lag = reach;
  p.min_lag = options.causal ? 0 : -reach;
  p.scale = options.scale > 0.f ? options.scale : static_cast<float>(1.0 / std::sqrt(double(shape.head_dim)));
  p.q = inputs.q;
  p.k = inputs.k;
  p.v = inputs.v;
  p.key_mask = inputs.key_mask;
  if (inputs.segment_ids != nullptr) {
    // A document is a maximal run of equal ids (as for RACE layers), so an id that comes back later in
    // the row is a new document: number the runs and compare run numbers.
    p.documents.resize(static_cast<size_t>(p.batch * p.seq_len));
    for (int64_t b = 0; b < p.batch; ++b) {
      const int32_t* ids = inputs.segment_ids + b * p.seq_len;
      int32_t run = 0;
      for (int64_t t = 0; t < p.seq_len; ++t) {
        if (t > 0 && ids[t] != ids[t - 1]) ++run;
        p.documents[static_cast<size_t>(b * p.seq_len + t)] = run;
      }
    }
    p.segment_ids = p.documents.data();
  }
  return p;
}

// Tiles per task: groups save memory traffic, but a causal triangle needs several tasks per thread to
// balance. Any value gives bit-identical results (see the file comment).
int64_t group_size(const Problem& p) {
  const int64_t tiles = p.batch * p.heads * p.tiles();
  return std::clamp<int64_t>(tiles / (8 * omp_get_max_threads()), 1, kMaxGroup);
}

// Scratch of one thread: 64-byte aligned and zeroed once, because the padding lanes of a tile (columns
// D..padded_dim) are read by the vector loops and must stay zero; loads only ever write the first D.
struct AlignedDelete {
  void operator()(float* data) const { ::operator delete[](data, std::align_val_t{64}); }
};
using Buffer = std::unique_ptr<float[], AlignedDelete>;

Buffer make_buffer(int64_t floats) { return Buffer(new (std::align_val_t{64}) float[floats]()); }

// exp(x) for x <= ~88, returning exactly 0 below -87 (and for -inf), written so that gcc vectorises it
// inside simd loops (libm's expf is not vectorised without -ffast-math). Cody-Waite reduction
// x = n ln2 + r, |r| <= ln2/2, and the Cephes polynomial: relative error ~2 ulp.
inline float exp_approx(float x) {
  const float clamped = std::min(std::max(x, -87.f), 88.f);
  const float n = std::nearbyint(clamped * 1.44269504088896341f);  // std::floor would not vectorise
  const float r = clamped - n * 0.693359375f + n * 2.12194440e-4f;
  float poly = 1.9875691500e-4f;
  poly = poly * r + 1.3981999507e-3f;
  poly = poly * r + 8.3334519073e-3f;
  poly = poly * r + 4.1665795894e-2f;
  poly = poly * r + 1.6666665459e-1f;
  poly = poly * r + 5.0000001201e-1f;
  const float exp_r = poly * r * r + r + 1.f;
  const float two_n = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return x < -87.f ? 0.f : exp_r * two_n;
}

// c (kBlockRows, N) = [c +] a (kBlockRows, depth) b (depth, N). a(r, x) = a[r * a_row + x * a_col]; b rows
// are ldb apart. The accumulators stay in registers for the whole depth loop.
template <int64_t N>
void gemm_block(int64_t depth, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
                float* c, int64_t ldc, bool accumulate) {
  float acc[kBlockRows][N];
  for (int64_t r = 0; r < kBlockRows; ++r) {
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) acc[r][j] = accumulate ? c[r * ldc + j] : 0.f;
  }
  for (int64_t x = 0; x < depth; ++x) {
    const float* b_row = b + x * ldb;
    for (int64_t r = 0; r < kBlockRows; ++r) {
      const float a_rx = a[r * a_row + x * a_col];
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) acc[r][j] += a_rx * b_row[j];
    }
  }
  for (int64_t r = 0; r < kBlockRows; ++r) {
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) c[r * ldc + j] = acc[r][j];
  }
}

// c (rows, cols) = [c +] a (rows, depth) b (depth, cols), with a stored as in gemm_block; rows a multiple of
// kBlockRows and cols a multiple of kLanes (scratch tiles are padded so both hold).
void gemm(int64_t rows, int64_t cols, int64_t depth, const float* a, int64_t a_row, int64_t a_col,
          const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < rows; i += kBlockRows) {
    const float* a_i = a + i * a_row;
    float* c_i = c + i * ldc;
    int64_t j = 0;
    for (; j + kBlockCols <= cols; j += kBlockCols) {
      gemm_block<kBlockCols>(depth, a_i, a_row, a_col, b + j, ldb, c_i + j, ldc, accumulate);
    }
    switch (cols - j) {
      case 48:
        gemm_block<48>(depth, a_i, a_row, a_col, b + j, ldb, c_i + j, ldc, accumulate);
        break;
      case 32:
        gemm_block<32>(depth, a_i, a_row, a_col, b + j, ldb, c_i + j, ldc, accumulate);
        break;
      case 16:
        gemm_block<16>(depth, a_i, a_row, a_col, b + j, ldb, c_i + j, ldc, accumulate);
        break;
      default:
        break;
    }
  }
}

// dst (round_up(n, kBlockRows), padded_dim) = factor * src (n, D); the padding rows are zeroed so that
// products over whole register blocks read zeros there.
void load_rows(const Problem& p, const float* src, int64_t n, float factor, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const float* s = src + i * p.dim;
    float* d = dst + i * p.padded_dim;
#pragma omp simd
    for (int64_t x = 0; x < p.dim; ++x) d[x] = factor * s[x];
  }
  std::memset(dst + n * p.padded_dim, 0,
              sizeof(float) * static_cast<size_t>((round_up(n, kBlockRows) - n) * p.padded_dim));
}

// dst (D, kTile) = factor * src (n, D) transposed; columns n..kTile zeroed.
void load_transposed(const Problem& p, const float* src, int64_t n, float factor, float* dst) {
  for (int64_t x = 0; x < p.dim; ++x) {
    float* d = dst + x * kTile;
    for (int64_t i = 0; i < n; ++i) d[i] = factor * src[i * p.dim + x];
    for (int64_t i = n; i < kTile; ++i) d[i] = 0.f;
  }
}

// Keys that some query in `queries` may see under the causal and window rules.
Range key_band(const Problem& p, Range queries) {
  return {std::max<int64_t>(0, queries.begin - p.max_lag), std::min(p.seq_len, queries.end - p.min_lag)};
}

// Queries that may see some key in `keys` under the causal and window rules.
Range query_band(const Problem& p, Range keys) {
  return {std::max<int64_t>(0, keys.begin + p.min_lag), std::min(p.seq_len, keys.end + p.max_lag)};
}

bool overlaps(Range a, Range b) { return a.begin < b.end && b.begin < a.end; }

// Whether every (query, key) pair of the tiles passes the causal and window rules.
bool band_covers(const Problem& p, Range queries, Range keys) {
  return queries.begin - (keys.end - 1) >= p.min_lag && (queries.end - 1) - keys.begin <= p.max_lag;
}

// Sets the scores of invisible pairs to -inf in a keys-major tile s (kTile keys, kTile queries).
void mask_keys_major(const Problem& p, int64_t b, Range queries, Range keys, float* s) {
  const uint8_t* key_mask = p.key_mask != nullptr ? p.key_mask + b * p.seq_len : nullptr;        // (T)
  const int32_t* segments = p.segment_ids != nullptr ? p.segment_ids + b * p.seq_len : nullptr;  // (T)
  const bool band = !band_covers(p, queries, keys);
  if (!band && key_mask == nullptr && segments == nullptr) return;
  const int64_t nq = queries.size();
  const int64_t min_lag = p.min_lag;
  const int64_t max_lag = p.max_lag;
  for (int64_t j = keys.begin; j < keys.end; ++j) {
    float* row = s + (j - keys.begin) * kTile;
    if (key_mask != nullptr && key_mask[j] == 0) {
      std::fill_n(row, nq, -kInf);
      continue;
    }
    if (band) {
      const int64_t lag0 = queries.begin - j;
#pragma omp simd
      for (int64_t i = 0; i < nq; ++i) row[i] = lag0 + i >= min_lag && lag0 + i <= max_lag ? row[i] : -kInf;
    }
    if (segments != nullptr) {
      const int32_t segment_j = segments[j];
      const int32_t* segment_t = segments + queries.begin;
#pragma omp simd
      for (int64_t i = 0; i < nq; ++i) row[i] = segment_t[i] == segment_j ? row[i] : -kInf;
    }
  }
}

// Sets the scores of invisible pairs to -inf in a queries-major tile s (kTile queries, kTile keys).
void mask_queries_major(const Problem& p, int64_t b, Range queries, Range keys, float* s) {
  const uint8_t* key_mask = p.key_mask != nullptr ? p.key_mask + b * p.seq_len + keys.begin : nullptr;
  const int32_t* segments = p.segment_ids != nullptr ? p.segment_ids + b * p.seq_len : nullptr;  // (T)
  const bool band = !band_covers(p, queries, keys);
  if (!band && key_mask == nullptr && segments == nullptr) return;
  const int64_t nk = keys.size();
  const int64_t min_lag = p.min_lag;
  const int64_t max_lag = p.max_lag;
  for (int64_t t = queries.begin; t < queries.end; ++t) {
    float* row = s + (t - queries.begin) * kTile;
    if (band) {
      const int64_t lag0 = t - keys.begin;
#pragma omp simd
      for (int64_t jj = 0; jj < nk; ++jj)
        row[jj] = lag0 - jj >= min_lag && lag0 - jj <= max_lag ? row[jj] : -kInf;
    }
    if (key_mask != nullptr) {
#pragma omp simd
      for (int64_t jj = 0; jj < nk; ++jj) row[jj] = key_mask[jj] != 0 ? row[jj] : -kInf;
    }
    if (segments != nullptr) {
      const int32_t segment_t = segments[t];
      const int32_t* segment_j = segments + keys.begin;
#pragma omp simd
      for (int64_t jj = 0; jj < nk; ++jj) row[jj] = segment_j[jj] == segment_t ? row[jj] : -kInf;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Forward

// The state of one query tile of a group.
struct ForwardQueryTile {
  explicit ForwardQueryTile(int64_t padded_dim)
      : q_t(make_buffer(padded_dim * kTile)),
        acc(make_buffer(kTile * padded_dim)),
        max(make_buffer(kTile)),
        sum(make_buffer(kTile)) {}
  Buffer q_t;  // (D, kTile) scale * Q^T
  Buffer acc;  // (kTile, padded_dim) unnormalised output
  Buffer max;  // (kTile) running max of the scores per query
  Buffer sum;  // (kTile) running sum of exp(score - max) per query
};

struct ForwardScratch {
  explicit ForwardScratch(int64_t padded_dim)
      : k(make_buffer(kTile * padded_dim)),
        v(make_buffer(kTile * padded_dim)),
        s(make_buffer(kTile * kTile)) {
    for (int64_t u = 0; u < kMaxGroup; ++u) tiles.emplace_back(padded_dim);
  }
  std::vector<ForwardQueryTile> tiles;  // kMaxGroup
  Buffer k;                             // (kTile, padded_dim) the current key tile
  Buffer v;                             // (kTile, padded_dim)
  Buffer s;                             // (kTile keys, kTile queries) scores, then probabilities
};

// One (query tile, key tile) step of the online softmax; k and v hold the key tile.
void forward_pair(const Problem& p, int64_t b, Range queries, Range keys, ForwardQueryTile& w, const float* k,
                  const float* v, float* s) {
  const int64_t dp = p.padded_dim;
  const int64_t nk = keys.size();

  // S^T (keys, queries) = K (scale Q)^T: keys-major, so the online softmax runs along rows, vectorised
  // over the queries.
  gemm(round_up(nk, kBlockRows), kTile, p.dim, k, dp, 1, w.q_t.get(), kTile, s, kTile, false);
  mask_keys_major(p, b, queries, keys, s);

  float* max = w.max.get();
  float* sum = w.sum.get();
  float tile_max[kTile];
  std::fill_n(tile_max, kTile, -kInf);
  for (int64_t jj = 0; jj < nk; ++jj) {
#pragma omp simd
    for (int64_t i = 0; i < kTile; ++i) tile_max[i] = std::max(tile_max[i], s[jj * kTile + i]);
  }
  float shift[kTile];
  float rescale[kTile];
#pragma omp simd
  for (int64_t i = 0; i < kTile; ++i) {
    const float new_max = std::max(max[i], tile_max[i]);
    // exp(-inf - (-inf)) would be NaN for a query that has seen no key yet: shift by 0 then.
    shift[i] = new_max == -kInf ? 0.f : new_max;
    rescale[i] = exp_approx(max[i] - shift[i]);
    max[i] = new_max;
  }
  float tile_sum[kTile] = {};
  for (int64_t jj = 0; jj < nk; ++jj) {
    float* row = s + jj * kTile;
#pragma omp simd
    for (int64_t i = 0; i < kTile; ++i) {
      row[i] = exp_approx(row[i] - shift[i]);
      tile_sum[i] += row[i];
    }
  }
#pragma omp simd
  for (int64_t i = 0; i < kTile; ++i) sum[i] = sum[i] * rescale[i] + tile_sum[i];
  for (int64_t i = 0; i < queries.size(); ++i) {
    if (rescale[i] == 1.f) continue;
    float* acc_row = w.acc.get() + i * dp;
#pragma omp simd
    for (int64_t x = 0; x < dp; ++x) acc_row[x] *= rescale[i];
  }
  // acc (queries, padded_dim) += P V, reading P from the keys-major tile.
  gemm(round_up(queries.size(), kBlockRows), dp, nk, s, 1, kTile, v, dp, w.acc.get(), dp, true);
}

// Query tiles [first_tile, first_tile + count) of head bh.
void forward_group(const Problem& p, int64_t bh, int64_t first_tile, int64_t count, ForwardScratch& w,
                   float* out, float* lse) {
  const int64_t b = bh / p.heads;
  for (int64_t u = 0; u < count; ++u) {
    const Range queries = p.tile(first_tile + u);
    ForwardQueryTile& tile = w.tiles[u];
    load_transposed(p, p.q + p.row(bh, queries.begin), queries.size(), p.scale, tile.q_t.get());
    std::fill_n(tile.max.get(), kTile, -kInf);
    std::fill_n(tile.sum.get(), kTile, 0.f);
    std::memset(tile.acc.get(), 0, sizeof(float) * static_cast<size_t>(kTile * p.padded_dim));
  }

  const Range band{key_band(p, p.tile(first_tile)).begin, key_band(p, p.tile(first_tile + count - 1)).end};
  for (int64_t key_tile = band.begin / kTile; key_tile * kTile < band.end; ++key_tile) {
    const Range keys = p.tile(key_tile);
    load_rows(p, p.k + p.row(bh, keys.begin), keys.size(), 1.f, w.k.get());
    load_rows(p, p.v + p.row(bh, keys.begin), keys.size(), 1.f, w.v.get());
    for (int64_t u = 0; u < count; ++u) {
      const Range queries = p.tile(first_tile + u);
      if (overlaps(keys, key_band(p, queries))) {
        forward_pair(p, b, queries, keys, w.tiles[u], w.k.get(), w.v.get(), w.s.get());
      }
    }
  }

  for (int64_t u = 0; u < count; ++u) {
    const Range queries = p.tile(first_tile + u);
    const ForwardQueryTile& tile = w.tiles[u];
    for (int64_t t = queries.begin; t < queries.end; ++t) {
      const int64_t i = t - queries.begin;
      const float l = tile.sum[i];
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const float* acc_row = tile.acc.get() + i * p.padded_dim;
      float* out_row = out + p.row(bh, t);
#pragma omp simd
      for (int64_t x = 0; x < p.dim; ++x) out_row[x] = acc_row[x] * inv;
      if (lse != nullptr) lse[bh * p.seq_len + t] = l > 0.f ? tile.max[i] + std::log(l) : -kInf;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Backward

struct BackwardTensors {
  const float* out;   // (B, H, T, D)
  const float* lse;   // (B, H, T)
  const float* dout;  // (B, H, T, D)
  SoftmaxAttentionGradients grads;
};

// Per query of a tile: lse, with -inf (a query that sees nothing) replaced by +inf so that
// exp(score - lse) is 0 for it instead of exp(-inf + inf) = NaN; and D_t = dout_t . out_t.
void load_query_stats(const Problem& p, const BackwardTensors& x, int64_t bh, Range queries, float* lse,
                      float* delta) {
  for (int64_t t = queries.begin; t < queries.end; ++t) {
    const float saved = x.lse[bh * p.seq_len + t];
    lse[t - queries.begin] = saved == -kInf ? kInf : saved;
    const float* out = x.out + p.row(bh, t);
    const float* dout = x.dout + p.row(bh, t);
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int64_t d = 0; d < p.dim; ++d) dot += dout[d] * out[d];
    delta[t - queries.begin] = dot;
  }
}

// The key-tile pass: dK and dV of one key tile of a group.
struct BackwardKeyTile {
  explicit BackwardKeyTile(int64_t padded_dim)
      : k_t(make_buffer(padded_dim * kTile)),
        v_t(make_buffer(padded_dim * kTile)),
        dk(make_buffer(kTile * padded_dim)),
        dv(make_buffer(kTile * padded_dim)) {}
  Buffer k_t;  // (D, kTile) K^T
  Buffer v_t;  // (D, kTile) V^T
  Buffer dk;   // (kTile, padded_dim) dK / scale
  Buffer dv;   // (kTile, padded_dim)
};

struct KeyPassScratch {
  explicit KeyPassScratch(int64_t padded_dim)
      : q(make_buffer(kTile * padded_dim)),
        dout(make_buffer(kTile * padded_dim)),
        lse(make_buffer(kTile)),
        delta(make_buffer(kTile)),
        p(make_buffer(kTile * kTile)),
        ds(make_buffer(kTile * kTile)) {
    for (int64_t u = 0; u < kMaxGroup; ++u) tiles.emplace_back(padded_dim);
  }
  std::vector<BackwardKeyTile> tiles;  // kMaxGroup
  Buffer q;                            // (kTile, padded_dim) scale * Q of the current query tile
  Buffer dout;                         // (kTile, padded_dim)
  Buffer lse;                          // (kTile)
  Buffer delta;                        // (kTile) D_t
  Buffer p;                            // (kTile queries, kTile keys) scores, then probabilities
  Buffer ds;                           // (kTile queries, kTile keys) dP, then dS
};

void backward_key_pair(const Problem& p, const BackwardTensors& x, int64_t b, Range queries, Range keys,
                       BackwardKeyTile& tile, KeyPassScratch& w) {
  const int64_t dp = p.padded_dim;
  const int64_t nq = queries.size();
  const int64_t nk = keys.size();
  const int64_t q_rows = round_up(nq, kBlockRows);
  const int64_t k_rows = round_up(nk, kBlockRows);

  float* prob = w.p.get();
  gemm(q_rows, kTile, p.dim, w.q.get(), dp, 1, tile.k_t.get(), kTile, prob, kTile, false);
  mask_queries_major(p, b, queries, keys, prob);
  for (int64_t i = 0; i < nq; ++i) {
    const float lse_i = w.lse[i];
    float* row = prob + i * kTile;
#pragma omp simd
    for (int64_t jj = 0; jj < nk; ++jj) row[jj] = exp_approx(row[jj] - lse_i);
  }
  // The products below contract over the nq valid queries only, so the padding rows of prob are never read.
  if (x.grads.dv != nullptr) gemm(k_rows, dp, nq, prob, 1, kTile, w.dout.get(), dp, tile.dv.get(), dp, true);
  if (x.grads.dk != nullptr) {
    float* ds = w.ds.get();
    gemm(q_rows, kTile, p.dim, w.dout.get(), dp, 1, tile.v_t.get(), kTile, ds, kTile, false);
    for (int64_t i = 0; i < nq; ++i) {
      const float delta_i = w.delta[i];
      const float* p_row = prob + i * kTile;
      float* ds_row = ds + i * kTile;
#pragma omp simd
      for (int64_t jj = 0; jj < nk; ++jj) ds_row[jj] = p_row[jj] * (ds_row[jj] - delta_i);
    }
    gemm(k_rows, dp, nq, ds, 1, kTile, w.q.get(), dp, tile.dk.get(), dp, true);
  }
}

// Key tiles [first_tile, first_tile + count) of head bh.
void backward_key_group(const Problem& p, const BackwardTensors& x, int64_t bh, int64_t first_tile,
                        int64_t count, KeyPassScratch& w) {
  const int64_t b = bh / p.heads;
  for (int64_t u = 0; u < count; ++u) {
    const Range keys = p.tile(first_tile + u);
    BackwardKeyTile& tile = w.tiles[u];
    load_transposed(p, p.k + p.row(bh, keys.begin), keys.size(), 1.f, tile.k_t.get());
    if (x.grads.dk != nullptr)
      load_transposed(p, p.v + p.row(bh, keys.begin), keys.size(), 1.f, tile.v_t.get());
    std::memset(tile.dk.get(), 0, sizeof(float) * static_cast<size_t>(kTile * p.padded_dim));
    std::memset(tile.dv.get(), 0, sizeof(float) * static_cast<size_t>(kTile * p.padded_dim));
  }

  const Range band{query_band(p, p.tile(first_tile)).begin,
                   query_band(p, p.tile(first_tile + count - 1)).end};
  for (int64_t query_tile = band.begin / kTile; query_tile * kTile < band.end; ++query_tile) {
    const Range queries = p.tile(query_tile);
    // Q is scaled here, which folds the scale into both S = (scale Q) K^T and dK = dS^T (scale Q).
    load_rows(p, p.q + p.row(bh, queries.begin), queries.size(), p.scale, w.q.get());
    load_rows(p, x.dout + p.row(bh, queries.begin), queries.size(), 1.f, w.dout.get());
    load_query_stats(p, x, bh, queries, w.lse.get(), w.delta.get());
    for (int64_t u = 0; u < count; ++u) {
      const Range keys = p.tile(first_tile + u);
      if (overlaps(queries, query_band(p, keys))) backward_key_pair(p, x, b, queries, keys, w.tiles[u], w);
    }
  }

  for (int64_t u = 0; u < count; ++u) {
    const Range keys = p.tile(first_tile + u);
    const BackwardKeyTile& tile = w.tiles[u];
    const auto bytes = sizeof(float) * static_cast<size_t>(p.dim);
    for (int64_t j = keys.begin; j < keys.end; ++j) {
      const int64_t jj = j - keys.begin;
      if (x.grads.dk != nullptr)
        std::memcpy(x.grads.dk + p.row(bh, j), tile.dk.get() + jj * p.padded_dim, bytes);
      if (x.grads.dv != nullptr)
        std::memcpy(x.grads.dv + p.row(bh, j), tile.dv.get() + jj * p.padded_dim, bytes);
    }
  }
}

// The query-tile pass: dQ of one query tile of a group.
struct BackwardQueryTile {
  explicit BackwardQueryTile(int64_t padded_dim)
      : q_t(make_buffer(padded_dim * kTile)),
        dout_t(make_buffer(padded_dim * kTile)),
        dq(make_buffer(kTile * padded_dim)),
        lse(make_buffer(kTile)),
        delta(make_buffer(kTile)) {}
  Buffer q_t;     // (D, kTile) scale * Q^T
  Buffer dout_t;  // (D, kTile) dO^T
  Buffer dq;      // (kTile, padded_dim) dQ / scale
  Buffer lse;     // (kTile)
  Buffer delta;   // (kTile) D_t
};

struct QueryPassScratch {
  explicit QueryPassScratch(int64_t padded_dim)
      : k(make_buffer(kTile * padded_dim)),
        v(make_buffer(kTile * padded_dim)),
        p(make_buffer(kTile * kTile)),
        ds(make_buffer(kTile * kTile)) {
    for (int64_t u = 0; u < kMaxGroup; ++u) tiles.emplace_back(padded_dim);
  }
  std::vector<BackwardQueryTile> tiles;  // kMaxGroup
  Buffer k;                              // (kTile, padded_dim) the current key tile
  Buffer v;                              // (kTile, padded_dim)
  Buffer p;                              // (kTile keys, kTile queries) scores
  Buffer ds;                             // (kTile keys, kTile queries) dP^T, then dS^T
};

void backward_query_pair(const Problem& p, int64_t b, Range queries, Range keys, BackwardQueryTile& tile,
                         QueryPassScratch& w) {
  const int64_t dp = p.padded_dim;
  const int64_t nq = queries.size();
  const int64_t nk = keys.size();
  const int64_t k_rows = round_up(nk, kBlockRows);

  float* scores = w.p.get();
  gemm(k_rows, kTile, p.dim, w.k.get(), dp, 1, tile.q_t.get(), kTile, scores, kTile, false);
  mask_keys_major(p, b, queries, keys, scores);
  float* ds = w.ds.get();
  gemm(k_rows, kTile, p.dim, w.v.get(), dp, 1, tile.dout_t.get(), kTile, ds, kTile, false);
  const float* lse = tile.lse.get();
  const float* delta = tile.delta.get();
  for (int64_t jj = 0; jj < nk; ++jj) {
    const float* s_row = scores + jj * kTile;
    float* ds_row = ds + jj * kTile;
#pragma omp simd
    for (int64_t i = 0; i < nq; ++i) ds_row[i] = exp_approx(s_row[i] - lse[i]) * (ds_row[i] - delta[i]);
  }
  // dQ (queries, padded_dim) += dS K, reading dS from the keys-major tile.
  gemm(round_up(nq, kBlockRows), dp, nk, ds, 1, kTile, w.k.get(), dp, tile.dq.get(), dp, true);
}

// Query tiles [first_tile, first_tile + count) of head bh.
void backward_query_group(const Problem& p, const BackwardTensors& x, int64_t bh, int64_t first_tile,
                          int64_t count, QueryPassScratch& w) {
  const int64_t b = bh / p.heads;
  for (int64_t u = 0; u < count; ++u) {
    const Range queries = p.tile(first_tile + u);
    BackwardQueryTile& tile = w.tiles[u];
    load_transposed(p, p.q + p.row(bh, queries.begin), queries.size(), p.scale, tile.q_t.get());
    load_transposed(p, x.dout + p.row(bh, queries.begin), queries.size(), 1.f, tile.dout_t.get());
    load_query_stats(p, x, bh, queries, tile.lse.get(), tile.delta.get());
    std::memset(tile.dq.get(), 0, sizeof(float) * static_cast<size_t>(kTile * p.padded_dim));
  }

  const Range band{key_band(p, p.tile(first_tile)).begin, key_band(p, p.tile(first_tile + count - 1)).end};
  for (int64_t key_tile = band.begin / kTile; key_tile * kTile < band.end; ++key_tile) {
    const Range keys = p.tile(key_tile);
    load_rows(p, p.k + p.row(bh, keys.begin), keys.size(), 1.f, w.k.get());
    load_rows(p, p.v + p.row(bh, keys.begin), keys.size(), 1.f, w.v.get());
    for (int64_t u = 0; u < count; ++u) {
      const Range queries = p.tile(first_tile + u);
      if (overlaps(keys, key_band(p, queries))) backward_query_pair(p, b, queries, keys, w.tiles[u], w);
    }
  }

  for (int64_t u = 0; u < count; ++u) {
    const Range queries = p.tile(first_tile + u);
    const BackwardQueryTile& tile = w.tiles[u];
    for (int64_t t = queries.begin; t < queries.end; ++t) {
      const float* dq_row = tile.dq.get() + (t - queries.begin) * p.padded_dim;
      float* dst = x.grads.dq + p.row(bh, t);
#pragma omp simd
      for (int64_t d = 0; d < p.dim; ++d) dst[d] = p.scale * dq_row[d];
    }
  }
}

// Runs task(scratch, i) for i in [0, n) on OpenMP threads, each thread with its own scratch built before
// the region (an exception must never leave an OpenMP region: the process would terminate). The first
// exception of any task is rethrown after the loop.
template <typename ScratchT, typename Task>
void run_tasks(int64_t n, int64_t padded_dim, Task&& task) {
  std::vector<ScratchT> scratch;
  for (int i = 0; i < omp_get_max_threads(); ++i) scratch.emplace_back(padded_dim);
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1) num_threads(static_cast <int>(scratch.size()))
  for (int64_t i = 0; i < n; ++i) {
    try {
      task(scratch[omp_get_thread_num()], i);
    } catch (...) {
#pragma omp critical(softmax_attention_cpu_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace

void softmax_attention_forward(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                               const SoftmaxAttentionInputs& inputs, float* out, float* lse) {
  const Problem p = resolve(shape, options, inputs);
  if (out == nullptr) fail("softmax attention forward: out is null");
  const int64_t group = group_size(p);
  const int64_t groups = (p.tiles() + group - 1) / group;
  // Last query tiles first: under a causal mask they see the most keys, so the schedule ends on short
  // tasks and the threads finish together.
  run_tasks<ForwardScratch>(p.batch * p.heads * groups, p.padded_dim,
                            [&](ForwardScratch& scratch, int64_t task) {
                              const int64_t first_tile = (groups - 1 - task % groups) * group;
                              forward_group(p, task / groups, first_tile,
                                            std::min(group, p.tiles() - first_tile), scratch, out, lse);
                            });
}

void softmax_attention_backward(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                                const SoftmaxAttentionInputs& inputs, const float* out, const float* lse,
                                const float* dout, const SoftmaxAttentionGradients& grads) {
  const Problem p = resolve(shape, options, inputs);
  if (out == nullptr) fail("softmax attention backward: out is null");
  if (lse == nullptr) fail("softmax attention backward: lse is null (save it from the forward)");
  if (dout == nullptr) fail("softmax attention backward: dout is null");
  const BackwardTensors x{out, lse, dout, grads};
  const int64_t group = group_size(p);
  const int64_t groups = (p.tiles() + group - 1) / group;
  const int64_t tasks = p.batch * p.heads * groups;
  if (grads.dk != nullptr || grads.dv != nullptr) {
    // First key tiles first: under a causal mask they are seen by the most queries.
    run_tasks<KeyPassScratch>(tasks, p.padded_dim, [&](KeyPassScratch& scratch, int64_t task) {
      const int64_t first_tile = task % groups * group;
      backward_key_group(p, x, task / groups, first_tile, std::min(group, p.tiles() - first_tile), scratch);
    });
  }
  if (grads.dq != nullptr) {
    run_tasks<QueryPassScratch>(tasks, p.padded_dim, [&](QueryPassScratch& scratch, int64_t task) {
      const int64_t first_tile = (groups - 1 - task % groups) * group;
      backward_query_group(p, x, task / groups, first_tile, std::min(group, p.tiles() - first_tile), scratch);
    });
  }
}

}  // namespace race::kernels::cpu
