// The block programs of the CUDA RACE attention kernels: what one block does for one span of one
// (batch, head) row, built from the chunk functions of race_tile.h, plus the scan that carries state
// across spans and the plan that cuts rows into spans. The CUDA kernels (race_attention_cuda.cu) and the
// host emulation in the tests run these same functions; see race_tile.h for the lane/barrier contract.
//
// Decomposition (deterministic: no atomics, every output element written by one block, every sum in a fixed
// order):
//   row r = (b, h), T tokens, cut into spans of span_chunks * kChunk tokens: one block per (row, span).
//   Inside a span, tokens are cut into pieces at document starts (segment ids) and pieces into chunks of at
//   most kChunk tokens starting at the piece's first token, so a chunk lies inside one document.
//   Forward:  1. key_span_sums  each span's head (keys before its first document start, if it continues
//                               a document) and tail (keys from its last document start) sums (S, D + 1)
//             2. scan_spans     per row and state element: carry_in[i] (the document's keys before span i)
//                               and carry_out[i] (after it), a segmented scan over spans in order
//             3. forward_span   causal: chunk by chunk with the state (A, B) starting from carry_in;
//                               bidirectional: per piece, the document total (piece + carries), then outputs
//   Backward: 1, 2 as above for the keys;
//             3. backward_queries_span  per chunk: w, dA (stored, (B, H, T, S) each), dq, and each span's
//                               head/tail sums of the query state (sum dA, G = sum w g^T)
//             4. scan_spans for the query state
//             5. backward_keys_span     causal: chunks in reverse with the suffix state from carry_out;
//                               bidirectional: per piece, the document's query totals; gives dk, dv
//             6. reduce_dbeta   per head, the blocks' partial sums in a fixed order
// No (T, S, D) tensor exists anywhere: global scratch is (rows, spans, S (D + 1)) sums and (rows, T, S) w/dA.
#pragma once

#include <cstdint>

#include "kernels/cuda/race_tile.h"

namespace race::kernels::cuda {

// Per-span sums of one kind of state (keys: (A, B); queries: (sum dA, G)) and their scan results.
struct SpanSums {
  float* head;         // (rows, spans, state_size): sums before the span's first document start, when the
                       // span continues a document; else 0
  float* tail;         // (rows, spans, state_size): sums from the span's last document start (or its start)
  float* carry_in;     // (rows, spans, state_size): the document's sums over tokens before the span
  float* carry_out;    // (rows, spans, state_size): the document's sums over tokens after the span
  int32_t* has_start;  // (rows, spans): 1 when a document starts anywhere in the span
};

// One call's whole problem: sizes, options, plan, tensors and scratch. T is float or bf16.
template <class T>
struct Problem {
  tile::Dims dims;
  int64_t batch, heads;
  bool planes_per_head, causal, ratio;
  float eps;
  int64_t span_chunks;  // chunks per span
  int64_t spans;        // spans per row

  const T* q;                   // (B, H, T, D)
  const T* k;                   // (B, H, T, D)
  const T* v;                   // (B, H, T, D)
  const T* dout;                // (B, H, T, D); backward only
  const float* planes;          // (L, P, D) or (H, L, P, D)
  const float* beta;            // (H)
  const uint8_t* key_mask;      // (B, T) or null
  const int32_t* segment_ids;   // (B, T) or null
  T* out;                       // (B, H, T, D); forward only
  T* dq;                        // (B, H, T, D) or null
  T* dk;                        // (B, H, T, D) or null
  T* dv;                        // (B, H, T, D) or null

  SpanSums keys, queries;       // queries: backward only
  float* w_store;               // (B, H, T, S): query features, backward
  float* da_store;              // (B, H, T, S): local key-sum gradients, backward
  double* dbeta_partial;        // (B, H, spans, 2): per block, queries then keys; backward

  RACE_HD int64_t rows() const { return batch * heads; }
};

// Chunks per span for a shape: enough spans that about 1024 blocks run, at most one span per chunk.
// Depends on the shape only, so results do not depend on the device.
inline int64_t plan_span_chunks(int64_t rows, int64_t seq_len) {
  const int64_t chunks = (seq_len + tile::kChunk - 1) / tile::kChunk;
  int64_t spans = 1024 / rows;
  if (spans < 1) spans = 1;
  if (spans > chunks) spans = chunks;
  return (chunks + spans - 1) / spans;
}
inline int64_t plan_spans(int64_t seq_len, int64_t span_chunks) {
  const int64_t chunks = (seq_len + tile::kChunk - 1) / tile::kChunk;
  return (chunks + span_chunks - 1) / span_chunks;
}

// Global scratch of one call, carved from `base` (null: sizes only); returns the bytes used. The forward
// needs the key sums; the backward also the query sums, w and dA per token and the dbeta partials.
template <class T>
int64_t carve_scratch(char* base, bool backward, Problem<T>* p) {
  const int64_t blocks = p->rows() * p->spans, size = p->dims.state_size();
  const int64_t features = p->rows() * p->dims.seq_len * p->dims.buckets();
  int64_t offset = 0;
  auto take = [&](int64_t bytes) {
    char* at = base == nullptr ? nullptr : base + offset;
    offset += (bytes + 255) / 256 * 256;
    return at;
  };
  auto sums = [&](SpanSums* s) {
    s->head = reinterpret_cast<float*>(take(blocks * size * int64_t{sizeof(float)}));
    s->tail = reinterpret_cast<float*>(take(blocks * size * int64_t{sizeof(float)}));
    s->carry_in = reinterpret_cast<float*>(take(blocks * size * int64_t{sizeof(float)}));
    s->carry_out = reinterpret_cast<float*>(take(blocks * size * int64_t{sizeof(float)}));
    s->has_start = reinterpret_cast<int32_t*>(take(blocks * int64_t{sizeof(int32_t)}));
  };
  sums(&p->keys);
  p->queries = SpanSums{};
  p->w_store = p->da_store = nullptr;
  p->dbeta_partial = nullptr;
  if (backward) {
    sums(&p->queries);
    p->w_store = reinterpret_cast<float*>(take(features * int64_t{sizeof(float)}));
    p->da_store = reinterpret_cast<float*>(take(features * int64_t{sizeof(float)}));
    p->dbeta_partial = reinterpret_cast<double*>(take(blocks * 2 * int64_t{sizeof(double)}));
  }
  return offset;
}

// Shared memory of one block, carved from one dynamic allocation.
struct Shared {
  double* lane_sums;  // (lanes)
  float* planes;      // (LP, D) this head's hyperplanes
  float* x;           // (C, D) the chunk's q or k
  float* v;           // (C, D)
  float* g;           // (C, D) dout
  float* state;       // (S (D + 1)) keys (A, B) or, in backward_keys_span, queries (sum dA, G)
  float* query_state; // (S (D + 1)) backward_queries_span: the piece's (sum dA, G)
  float* phi_q;       // (C, S)
  float* phi_k;       // (C, S)
  float* a_t;         // (C, S) key sums per query
  float* w;           // (C, S) query features
  float* dphi;        // (C, S)
  float* da;          // (C, S)
  float* gb;          // (C, S)
  float* u_q;         // (C, LP)
  float* u_k;         // (C, LP)
  float* dz;          // (C, LP)
  float* scores;      // (C, C)
  float* vg;          // (C, C)
};

// Lays out Shared from `base` (null: sizes only) and returns the bytes used.
RACE_HD int64_t carve_shared(char* base, const tile::Dims& d, int lanes, Shared* sh) {
  const int64_t C = tile::kChunk, D = d.head_dim, S = d.buckets(), lp = d.projections();
  int64_t offset = 0;
  auto take = [&](int64_t count, int64_t size) {
    char* at = base == nullptr ? nullptr : base + offset;
    offset += (count * size + 15) / 16 * 16;
    return at;
  };
  sh->lane_sums = reinterpret_cast<double*>(take(lanes, sizeof(double)));
  auto floats = [&](int64_t count) { return reinterpret_cast<float*>(take(count, sizeof(float))); };
  sh->planes = floats(lp * D);
  sh->x = floats(C * D);
  sh->v = floats(C * D);
  sh->g = floats(C * D);
  sh->state = floats(d.state_size());
  sh->query_state = floats(d.state_size());
  sh->phi_q = floats(C * S);
  sh->phi_k = floats(C * S);
  sh->a_t = floats(C * S);
  sh->w = floats(C * S);
  sh->dphi = floats(C * S);
  sh->da = floats(C * S);
  sh->gb = floats(C * S);
  sh->u_q = floats(C * lp);
  sh->u_k = floats(C * lp);
  sh->dz = floats(C * lp);
  sh->scores = floats(C * C);
  sh->vg = floats(C * C);
  return offset;
}

// The block's sum of each lane's `mine`, identical in every lane, added in lane order (deterministic).
template <class Block>
RACE_HD double block_sum(const Block& blk, double* lane_sums, double mine) {
  blk.sync();
  lane_sums[blk.lane()] = mine;
  blk.sync();
  double total = 0.0;
  for (int i = 0; i < blk.lanes(); ++i) total += lane_sums[i];
  blk.sync();
  return total;
}

// One (row, span): where its tokens, masks and planes are.
template <class T>
struct SpanView {
  const Problem<T>& p;
  int64_t row, index, begin, end;

  RACE_HD SpanView(const Problem<T>& problem, int64_t row_index, int64_t span_index)
      : p(problem), row(row_index), index(span_index) {
    begin = span_index * p.span_chunks * tile::kChunk;
    end = begin + p.span_chunks * tile::kChunk;
    if (end > p.dims.seq_len) end = p.dims.seq_len;
  }
  RACE_HD int64_t batch_index() const { return row / p.heads; }
  RACE_HD int64_t head() const { return row % p.heads; }
  RACE_HD int64_t token_offset(int64_t t) const { return (row * p.dims.seq_len + t) * p.dims.head_dim; }
  RACE_HD int64_t feature_offset(int64_t t) const { return (row * p.dims.seq_len + t) * p.dims.buckets(); }
  RACE_HD int64_t sums_offset() const { return (row * p.spans + index) * p.dims.state_size(); }
  RACE_HD const float* planes() const {
    const int64_t size = int64_t{p.dims.projections()} * p.dims.head_dim;
    return p.planes + (p.planes_per_head ? head() * size : 0);
  }
  RACE_HD float beta() const { return p.beta[head()]; }
  RACE_HD const uint8_t* key_mask(int64_t t) const {
    return p.key_mask == nullptr ? nullptr : p.key_mask + batch_index() * p.dims.seq_len + t;
  }
  RACE_HD bool doc_start(int64_t t) const {
    if (t == 0) return true;
    if (p.segment_ids == nullptr) return false;
    const int32_t* ids = p.segment_ids + batch_index() * p.dims.seq_len;
    return ids[t] != ids[t - 1];
  }
  // First document start after t and before `limit`, else `limit`.
  RACE_HD int64_t next_doc_start(int64_t t, int64_t limit) const {
    if (p.segment_ids == nullptr) return limit;
    for (int64_t i = t + 1; i < limit; ++i)
      if (doc_start(i)) return i;
    return limit;
  }
  // Last document start in (begin, e), else begin: the start of the piece that ends at e.
  RACE_HD int64_t piece_start_before(int64_t e) const {
    if (p.segment_ids == nullptr) return begin;
    for (int64_t i = e - 1; i > begin; --i)
      if (doc_start(i)) return i;
    return begin;
  }
  // A piece [a, b) continues a document from the previous span / into the next span.
  RACE_HD bool touches_begin(int64_t a) const { return a == begin && !doc_start(begin); }
  RACE_HD bool touches_end(int64_t b) const { return b == end && end < p.dims.seq_len && !doc_start(end); }
};

// Loads this span's planes into shared memory (followed by a barrier).
template <class Block, class T>
RACE_HD void load_planes(const Block& blk, const SpanView<T>& span, const Shared& sh) {
  tile::copy(blk, span.planes(), sh.planes, int64_t{span.p.dims.projections()} * span.p.dims.head_dim);
  blk.sync();
}

// Keys [a, a + n) into sh: phi_k (pad keys zero), u_k, and v. Ends with a barrier.
template <class Block, class T>
RACE_HD void load_keys(const Block& blk, const SpanView<T>& span, const Shared& sh, int64_t a, int64_t n) {
  const tile::Dims& d = span.p.dims;
  tile::load_rows(blk, span.p.k + span.token_offset(a), n, d.head_dim, sh.x);
  tile::load_rows(blk, span.p.v + span.token_offset(a), n, d.head_dim, sh.v);
  blk.sync();
  tile::hash_projections(blk, d, sh.planes, sh.x, n, sh.u_k);
  blk.sync();
  tile::hash_features(blk, d, span.beta(), sh.u_k, n, span.key_mask(a), sh.phi_k);
  blk.sync();
}

// Queries [a, a + n) into sh: phi_q and u_q. Ends with a barrier.
template <class Block, class T>
RACE_HD void load_queries(const Block& blk, const SpanView<T>& span, const Shared& sh, int64_t a, int64_t n) {
  const tile::Dims& d = span.p.dims;
  tile::load_rows(blk, span.p.q + span.token_offset(a), n, d.head_dim, sh.x);
  blk.sync();
  tile::hash_projections(blk, d, sh.planes, sh.x, n, sh.u_q);
  blk.sync();
  tile::hash_features(blk, d, span.beta(), sh.u_q, n, nullptr, sh.phi_q);
  blk.sync();
}

// sh.state += key sums (A, B) over the keys [a, b) (one piece). Ends with a barrier.
template <class Block, class T>
RACE_HD void sum_keys(const Block& blk, const SpanView<T>& span, const Shared& sh, int64_t a, int64_t b) {
  for (int64_t t = a; t < b; t += tile::kChunk) {
    const int64_t n = b - t < tile::kChunk ? b - t : tile::kChunk;
    load_keys(blk, span, sh, t, n);
    tile::add_to_state(blk, span.p.dims, sh.phi_k, sh.v, sh.phi_k, n, sh.state);
    blk.sync();
  }
}

// Adds the stored carries into sh.state for a piece [a, b) that continues across its span's edges.
template <class Block, class T>
RACE_HD void add_carries(const Block& blk, const SpanView<T>& span, const SpanSums& sums, int64_t a, int64_t b,
                         float* state) {
  const int64_t size = span.p.dims.state_size();
  if (span.touches_begin(a)) tile::copy(blk, sums.carry_in + span.sums_offset(), state, size, true);
  blk.sync();
  if (span.touches_end(b)) tile::copy(blk, sums.carry_out + span.sums_offset(), state, size, true);
  blk.sync();
}

// Writes a span's head or tail sums from shared memory.
template <class Block>
RACE_HD void store_sums(const Block& blk, const float* state, float* dst, int64_t size) {
  tile::copy(blk, state, dst, size);
  blk.sync();
}

// Forward step 1 and backward step 1: the span's key head and tail sums.
template <class Block, class T>
RACE_HD void key_span_sums(const Block& blk, const Problem<T>& p, int64_t row, int64_t index, char* smem) {
  const SpanView<T> span(p, row, index);
  Shared sh;
  carve_shared(smem, p.dims, blk.lanes(), &sh);
  const int64_t size = p.dims.state_size(), at = span.sums_offset();
  load_planes(blk, span, sh);
  tile::zero(blk, p.keys.head + at, size);
  tile::zero(blk, sh.state, size);
  blk.sync();
  bool seen_start = false;
  for (int64_t a = span.begin; a < span.end;) {
    const int64_t b = span.next_doc_start(a, span.end);
    if (span.doc_start(a)) {
      if (!seen_start && a != span.begin) store_sums(blk, sh.state, p.keys.head + at, size);
      seen_start = true;
      tile::zero(blk, sh.state, size);
      blk.sync();
    }
    sum_keys(blk, span, sh, a, b);
    a = b;
  }
  if (!seen_start) store_sums(blk, sh.state, p.keys.head + at, size);
  store_sums(blk, sh.state, p.keys.tail + at, size);
  if (blk.lane() == 0) p.keys.has_start[row * p.spans + index] = seen_start ? 1 : 0;
}

// Forward and backward steps 2/4: one state element e of one row, scanned over the row's spans in order.
//   carry_in[i]  = tail[i - 1] + (span i - 1 has a document start ? 0 : carry_in[i - 1])
//   carry_out[i] = head[i + 1] + (span i + 1 has a document start ? 0 : carry_out[i + 1])
RACE_HD void scan_spans(const SpanSums& s, int64_t spans, int64_t state_size, int64_t row, int64_t e) {
  const int64_t base = row * spans;
  float carry = 0.f;
  for (int64_t i = 0; i < spans; ++i) {
    s.carry_in[(base + i) * state_size + e] = carry;
    carry = s.tail[(base + i) * state_size + e] + (s.has_start[base + i] ? 0.f : carry);
  }
  carry = 0.f;
  for (int64_t i = spans - 1; i >= 0; --i) {
    s.carry_out[(base + i) * state_size + e] = carry;
    carry = s.head[(base + i) * state_size + e] + (s.has_start[base + i] ? 0.f : carry);
  }
}

// Forward step 3: the outputs of one span.
template <class Block, class T>
RACE_HD void forward_span(const Block& blk, const Problem<T>& p, int64_t row, int64_t index, char* smem) {
  const SpanView<T> span(p, row, index);
  const tile::Dims& d = p.dims;
  Shared sh;
  carve_shared(smem, d, blk.lanes(), &sh);
  load_planes(blk, span, sh);
  for (int64_t a = span.begin; a < span.end;) {
    const int64_t b = span.next_doc_start(a, span.end);
    tile::zero(blk, sh.state, d.state_size());
    blk.sync();
    if (p.causal) {
      if (span.touches_begin(a)) tile::copy(blk, p.keys.carry_in + span.sums_offset(), sh.state, d.state_size());
      blk.sync();
    } else {
      sum_keys(blk, span, sh, a, b);
      add_carries(blk, span, p.keys, a, b, sh.state);
    }
    for (int64_t t = a; t < b; t += tile::kChunk) {
      const int64_t n = b - t < tile::kChunk ? b - t : tile::kChunk;
      load_queries(blk, span, sh, t, n);
      load_keys(blk, span, sh, t, n);
      tile::key_sums_per_query(blk, d, p.causal, sh.state, sh.phi_k, n, sh.a_t);
      blk.sync();
      tile::query_features(blk, d, p.ratio, p.eps, sh.phi_q, sh.a_t, n, sh.w);
      blk.sync();
      if (p.causal) {
        tile::pair_dots(blk, tile::Pairs::lower, sh.w, sh.phi_k, d.buckets(), n, sh.scores);
        blk.sync();
      }
      tile::chunk_output(blk, d, sh.w, sh.state, p.causal ? sh.scores : nullptr, sh.v, n,
                         p.out + span.token_offset(t));
      blk.sync();
      if (p.causal) {
        tile::add_to_state(blk, d, sh.phi_k, sh.v, sh.phi_k, n, sh.state);
        blk.sync();
      }
    }
    a = b;
  }
}

// Backward step 3: per chunk w, dA (stored), dq, and the span's query head and tail sums.
template <class Block, class T>
RACE_HD void backward_queries_span(const Block& blk, const Problem<T>& p, int64_t row, int64_t index,
                                   char* smem) {
  const SpanView<T> span(p, row, index);
  const tile::Dims& d = p.dims;
  const int64_t size = d.state_size(), at = span.sums_offset(), S = d.buckets();
  Shared sh;
  carve_shared(smem, d, blk.lanes(), &sh);
  load_planes(blk, span, sh);
  tile::zero(blk, p.queries.head + at, size);
  blk.sync();
  double dbeta = 0.0;
  bool seen_start = false;
  for (int64_t a = span.begin; a < span.end;) {
    const int64_t b = span.next_doc_start(a, span.end);
    tile::zero(blk, sh.state, size);
    tile::zero(blk, sh.query_state, size);
    blk.sync();
    if (p.causal) {
      if (span.touches_begin(a)) tile::copy(blk, p.keys.carry_in + at, sh.state, size);
      blk.sync();
    } else {
      sum_keys(blk, span, sh, a, b);
      add_carries(blk, span, p.keys, a, b, sh.state);
    }
    for (int64_t t = a; t < b; t += tile::kChunk) {
      const int64_t n = b - t < tile::kChunk ? b - t : tile::kChunk;
      load_queries(blk, span, sh, t, n);
      load_keys(blk, span, sh, t, n);
      tile::load_rows(blk, p.dout + span.token_offset(t), n, d.head_dim, sh.g);
      tile::key_sums_per_query(blk, d, p.causal, sh.state, sh.phi_k, n, sh.a_t);
      blk.sync();
      tile::query_features(blk, d, p.ratio, p.eps, sh.phi_q, sh.a_t, n, sh.w);
      if (p.causal) tile::pair_dots(blk, tile::Pairs::lower, sh.g, sh.v, d.head_dim, n, sh.vg);
      blk.sync();
      tile::query_state_dots(blk, d, sh.state, sh.g, p.causal ? sh.vg : nullptr, sh.phi_k, n, sh.gb);
      tile::copy(blk, sh.w, p.w_store + span.feature_offset(t), n * S);
      blk.sync();
      tile::query_feature_backward(blk, d, p.ratio, p.eps, sh.phi_q, sh.w, sh.gb, sh.a_t, n, sh.dphi, sh.da);
      blk.sync();
      tile::copy(blk, sh.da, p.da_store + span.feature_offset(t), n * S);
      dbeta += tile::hash_backward_projections(blk, d, span.beta(), sh.dphi, sh.phi_q, sh.u_q, n, sh.dz);
      blk.sync();
      tile::hash_backward_input(blk, d, sh.planes, sh.dz, n, p.dq == nullptr ? nullptr : p.dq + span.token_offset(t));
      tile::add_to_state(blk, d, sh.w, sh.g, sh.da, n, sh.query_state);
      blk.sync();
      if (p.causal) {
        tile::add_to_state(blk, d, sh.phi_k, sh.v, sh.phi_k, n, sh.state);
        blk.sync();
      }
    }
    if (span.touches_begin(a)) store_sums(blk, sh.query_state, p.queries.head + at, size);
    if (b == span.end) store_sums(blk, sh.query_state, p.queries.tail + at, size);
    if (span.doc_start(a)) seen_start = true;
    a = b;
  }
  if (blk.lane() == 0) p.queries.has_start[row * p.spans + index] = seen_start ? 1 : 0;
  const double total = block_sum(blk, sh.lane_sums, dbeta);
  if (blk.lane() == 0) p.dbeta_partial[(row * p.spans + index) * 2] = total;
}

// Backward, one chunk of keys [t, t + n) against sh.state = the query state (sum dA, G) of the document's
// later queries (causal) or of all its queries (bidirectional): dk, dv; returns the lane's dbeta share.
template <class Block, class T>
RACE_HD double key_chunk_grads(const Block& blk, const SpanView<T>& span, const Shared& sh, int64_t t, int64_t n) {
  const Problem<T>& p = span.p;
  const tile::Dims& d = p.dims;
  const int64_t S = d.buckets();
  load_keys(blk, span, sh, t, n);
  if (p.causal) {
    tile::load_rows(blk, p.dout + span.token_offset(t), n, d.head_dim, sh.g);
    tile::copy(blk, p.w_store + span.feature_offset(t), sh.w, n * S);
    tile::copy(blk, p.da_store + span.feature_offset(t), sh.da, n * S);
    blk.sync();
    tile::pair_dots(blk, tile::Pairs::lower, sh.g, sh.v, d.head_dim, n, sh.vg);
    tile::pair_dots(blk, tile::Pairs::lower, sh.w, sh.phi_k, S, n, sh.scores);
    blk.sync();
  }
  tile::key_feature_grads(blk, d, sh.state, sh.w, sh.da, sh.v, p.causal ? sh.vg : nullptr, n, sh.dphi);
  tile::value_grads(blk, d, sh.state, sh.phi_k, p.causal ? sh.scores : nullptr, sh.g, n,
                    p.dv == nullptr ? nullptr : p.dv + span.token_offset(t));
  blk.sync();
  const double dbeta = tile::hash_backward_projections(blk, d, span.beta(), sh.dphi, sh.phi_k, sh.u_k, n, sh.dz);
  blk.sync();
  tile::hash_backward_input(blk, d, sh.planes, sh.dz, n, p.dk == nullptr ? nullptr : p.dk + span.token_offset(t));
  blk.sync();
  return dbeta;
}

// Backward step 5: dk and dv of one span.
template <class Block, class T>
RACE_HD void backward_keys_span(const Block& blk, const Problem<T>& p, int64_t row, int64_t index, char* smem) {
  const SpanView<T> span(p, row, index);
  const tile::Dims& d = p.dims;
  const int64_t size = d.state_size(), at = span.sums_offset(), S = d.buckets();
  Shared sh;
  carve_shared(smem, d, blk.lanes(), &sh);
  load_planes(blk, span, sh);
  double dbeta = 0.0;
  if (p.causal) {
    // Pieces from the span's end backwards, each piece's chunks from its end backwards.
    for (int64_t b = span.end; b > span.begin;) {
      const int64_t a = span.piece_start_before(b);
      tile::zero(blk, sh.state, size);
      blk.sync();
      if (span.touches_end(b)) tile::copy(blk, p.queries.carry_out + at, sh.state, size);
      blk.sync();
      for (int64_t t = a + (b - a - 1) / tile::kChunk * tile::kChunk; t >= a; t -= tile::kChunk) {
        const int64_t n = b - t < tile::kChunk ? b - t : tile::kChunk;
        dbeta += key_chunk_grads(blk, span, sh, t, n);
        tile::add_to_state(blk, d, sh.w, sh.g, sh.da, n, sh.state);
        blk.sync();
      }
      b = a;
    }
  } else {
    for (int64_t a = span.begin; a < span.end;) {
      const int64_t b = span.next_doc_start(a, span.end);
      // The piece's query state from the stored w and dA, then the carries of the document's other spans.
      tile::zero(blk, sh.state, size);
      blk.sync();
      for (int64_t t = a; t < b; t += tile::kChunk) {
        const int64_t n = b - t < tile::kChunk ? b - t : tile::kChunk;
        tile::load_rows(blk, p.dout + span.token_offset(t), n, d.head_dim, sh.g);
        tile::copy(blk, p.w_store + span.feature_offset(t), sh.w, n * S);
        tile::copy(blk, p.da_store + span.feature_offset(t), sh.da, n * S);
        blk.sync();
        tile::add_to_state(blk, d, sh.w, sh.g, sh.da, n, sh.state);
        blk.sync();
      }
      add_carries(blk, span, p.queries, a, b, sh.state);
      for (int64_t t = a; t < b; t += tile::kChunk) {
        const int64_t n = b - t < tile::kChunk ? b - t : tile::kChunk;
        dbeta += key_chunk_grads(blk, span, sh, t, n);
      }
      a = b;
    }
  }
  const double total = block_sum(blk, sh.lane_sums, dbeta);
  if (blk.lane() == 0) p.dbeta_partial[(row * p.spans + index) * 2 + 1] = total;
}

// Backward step 6: dbeta[h] = the partial sums of every block of head h, in (batch, span, part) order.
template <class T>
RACE_HD void reduce_dbeta(const Problem<T>& p, int64_t h, float* dbeta) {
  double total = 0.0;
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t i = 0; i < p.spans * 2; ++i) total += p.dbeta_partial[(b * p.heads + h) * p.spans * 2 + i];
  dbeta[h] = static_cast<float>(total);
}

}  // namespace race::kernels::cuda
