// The per-thread work of the CUDA model kernels whose threads are independent (no barrier, no shared
// memory): head layouts, RoPE, the embedding backward, pooling, and the two stages of the column sums (the
// linear layer's bias gradient, LayerNorm's weight and bias gradients). The .cu kernels call these for their
// thread's item; the host tests call them for every item in a loop and compare with CpuOps and the fp64
// references, so the index arithmetic is checked without a GPU. Tensors that may be fp32 or bf16 (the heads
// and the rows the layouts write, the heads that RoPE turns, the pooled rows, the bias gradient's dy) have a
// template element type, read and written through race_tile.h's Element.
// C++17 and no CUDA headers: the host compiler includes this file too.
#pragma once

#include <cstdint>

#include "kernels/cuda/elementwise_math.h"
#include "kernels/cuda/race_tile.h"

namespace race::kernels::cuda::items {

// Element i of rows (B, T, parts, H, D) is element `offset` of heads tensor `part` (B, H, T, D).
struct HeadsPlace {
  int64_t part, offset;
};
RACE_HD HeadsPlace heads_place(int64_t i, int64_t seq_len, int64_t heads, int64_t head_dim, int64_t parts) {
  const int64_t d = i % head_dim, h = (i / head_dim) % heads, rest = i / (head_dim * heads);
  const int64_t bt = rest / parts, t = bt % seq_len, b = bt / seq_len;
  return {rest % parts, ((b * heads + h) * seq_len + t) * head_dim + d};
}

// The moves of element i between fp32 rows (B*T, parts, H, D) and heads h0, h1, h2 (B, H, T, D) of type Hd
// (h1, h2 unused when parts is 1): into the heads, or out of them into rows of type R.
template <class Hd>
RACE_HD void row_element_to_heads(Hd* h0, Hd* h1, Hd* h2, const float* rows, int64_t i, int64_t seq_len,
                                  int64_t heads, int64_t head_dim, int64_t parts) {
  const HeadsPlace place = heads_place(i, seq_len, heads, head_dim, parts);
  Hd* tensor = place.part == 0 ? h0 : (place.part == 1 ? h1 : h2);
  tile::Element<Hd>::store(tensor + place.offset, rows[i]);
}
template <class R, class Hd>
RACE_HD void heads_element_to_row(R* rows, const Hd* h0, const Hd* h1, const Hd* h2, int64_t i, int64_t seq_len,
                                  int64_t heads, int64_t head_dim, int64_t parts) {
  const HeadsPlace place = heads_place(i, seq_len, heads, head_dim, parts);
  const Hd* tensor = place.part == 0 ? h0 : (place.part == 1 ? h1 : h2);
  tile::Element<R>::store(rows + i, tile::Element<Hd>::load(tensor + place.offset));
}

// RoPE, pair p of (B, H, T, D/2): turns (x[i], x[i + D/2]) of its head vector by sign * angle, in fp32;
// x and out of element type T. Both elements are read before either is written, so out may be x.
template <class T>
RACE_HD void rope_pair(T* out, const T* x, const int32_t* positions, int64_t p, int64_t heads, int64_t seq_len,
                       int64_t head_dim, float base, float sign) {
  const int64_t half = head_dim / 2, i = p % half, row = p / half;  // row = (b * H + h) * T + t
  const int64_t t = row % seq_len, b = row / (seq_len * heads);
  const int64_t position = positions != nullptr ? positions[b * seq_len + t] : t;
  const double angle = math::rope_angle(position, i, head_dim, base);
  const float c = static_cast<float>(cos(angle)), s = sign * static_cast<float>(sin(angle));
  const float lo = tile::Element<T>::load(x + row * head_dim + i);
  const float hi = tile::Element<T>::load(x + row * head_dim + i + half);
  tile::Element<T>::store(out + row * head_dim + i, lo * c - hi * s);
  tile::Element<T>::store(out + row * head_dim + i + half, lo * s + hi * c);
}

// Embedding backward, column c of vocabulary rows [first, last): walks n in order.
RACE_HD void embedding_backward_column(float* dtable, const int32_t* ids, const float* dout, int64_t n,
                                       int64_t channels, int64_t c, int64_t first, int64_t last) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids[i];
    if (id >= first && id < last) dtable[id * channels + c] += dout[i * channels + c];
  }
}

RACE_HD bool is_real(const uint8_t* key_mask, int64_t b, int64_t t, int64_t seq_len) {
  return key_mask == nullptr || key_mask[b * seq_len + t] != 0;
}

// Pooling of channel c of row b (item b * C + c) of rows (B, T, C) of type T: token 0 (cls), or the fp64 mean
// over real tokens.
template <class T>
RACE_HD void pool_forward_channel(float* pooled, const T* rows, const uint8_t* key_mask, int64_t item,
                                  int64_t seq_len, int64_t channels, bool cls) {
  const int64_t b = item / channels, c = item % channels;
  const T* row = rows + b * seq_len * channels + c;  // token t at row[t * C]
  if (cls) {
    pooled[item] = tile::Element<T>::load(row);
    return;
  }
  double sum = 0.0;
  int64_t count = 0;
  for (int64_t t = 0; t < seq_len; ++t)
    if (is_real(key_mask, b, t, seq_len)) {
      sum += static_cast<double>(tile::Element<T>::load(row + t * channels));
      ++count;
    }
  pooled[item] = count > 0 ? static_cast<float>(sum / static_cast<double>(count)) : 0.f;
}

// Its backward: writes channel c of every token of row b (zero where the pool does not look).
RACE_HD void pool_backward_channel(float* drows, const float* dpooled, const uint8_t* key_mask, int64_t item,
                                   int64_t seq_len, int64_t channels, bool cls) {
  const int64_t b = item / channels, c = item % channels;
  float* row = drows + b * seq_len * channels + c;
  int64_t count = 0;
  for (int64_t t = 0; t < seq_len; ++t) count += is_real(key_mask, b, t, seq_len);
  const float g = cls ? dpooled[item] : (count > 0 ? dpooled[item] / static_cast<float>(count) : 0.f);
  for (int64_t t = 0; t < seq_len; ++t) row[t * channels] = (cls ? t == 0 : is_real(key_mask, b, t, seq_len)) ? g : 0.f;
}

// ---- Column sums over rows: out[k] (cols) += sum_n term_k(n, c), for every k < Terms::kSums ----
// In two fixed-order stages, so there are no float atomics and every run gives the same bits: stage 1, item
// (chunk, c), sums column c over the rows of its chunk in row order, in fp64, into partial (chunks, cols) of
// each sum; stage 2, item c, adds column c's partials in chunk order, in fp64, and adds that total rounded to
// fp32 into out[k][c]. The CPU also sums in fp64, but in another order (the linear layer's bias gradient in
// one serial pass over the rows, LayerNorm's over its own row blocks), so the two differ only in the last
// fp64 bits before the rounding to fp32: not always bit for bit.
// The chunk is 256 rows, fixed (the order, hence the bits, must not depend on the device): a stage-1 thread
// is one (chunk, column), so the smallest long-context case, 65,536 rows of 768 columns, launches 256 x 768
// = 196,608 threads, about 0.7 of what an H100 or H200 (132 SMs x 2048) holds at once, and 0.9 of an A100;
// 512 rows would leave those GPUs a third full, 128 would add a half-empty second wave. At the largest
// (262,144 x 3072) the partials are 1024 x 3072 doubles, 25 MB next to the 3.2 GB that stage 1 reads. A warp
// is 32 neighbouring columns, so each of its 256 row steps loads 32 consecutive floats (coalesced).
constexpr int64_t kColumnChunkRows = 256;

RACE_HD int64_t column_chunks(int64_t rows) { return (rows + kColumnChunkRows - 1) / kColumnChunkRows; }

// The terms of the linear layer's bias gradient: dy (rows, cols) of type T itself.
template <class T>
struct ColumnTerms {
  static constexpr int kSums = 1;
  const T* dy;  // (rows, cols)
  RACE_HD void operator()(double* terms, int64_t n, int64_t c, int64_t cols) const {
    terms[0] = static_cast<double>(tile::Element<T>::load(dy + n * cols + c));
  }
};

// The terms of LayerNorm's parameter gradients, dy xhat (dweight) and dy (dbias), with xhat = (x - mean) rstd
// in fp32 as the CPU forms it (kernels/cpu/layernorm_cpu.cpp's backward).
struct LayerNormParamTerms {
  static constexpr int kSums = 2;
  const float *dy, *x;       // (rows, C)
  const float *mean, *rstd;  // (rows)
  RACE_HD void operator()(double* terms, int64_t n, int64_t c, int64_t cols) const {
    const float g = dy[n * cols + c];
    terms[0] = static_cast<double>(g * ((x[n * cols + c] - mean[n]) * rstd[n]));
    terms[1] = static_cast<double>(g);
  }
};

// Stage 1, item (chunk, c): partial (Terms::kSums, chunks, cols) gets the fp64 sums of column c over the
// rows of `chunk`, in row order.
template <class Terms>
RACE_HD void column_chunk_sums(double* partial, const Terms& terms, int64_t rows, int64_t cols, int64_t chunk,
                               int64_t c) {
  double sums[Terms::kSums] = {};
  const int64_t first = chunk * kColumnChunkRows;
  const int64_t last = rows - first < kColumnChunkRows ? rows : first + kColumnChunkRows;
  for (int64_t n = first; n < last; ++n) {
    double t[Terms::kSums];
    terms(t, n, c, cols);
    for (int k = 0; k < Terms::kSums; ++k) sums[k] += t[k];
  }
  const int64_t chunks = column_chunks(rows);
  for (int k = 0; k < Terms::kSums; ++k) partial[(k * chunks + chunk) * cols + c] = sums[k];
}

// Stage 2, item c: out (cols) += column c of one sum's partial (chunks, cols), added in chunk order in fp64.
RACE_HD void column_total(float* out, const double* partial, int64_t chunks, int64_t cols, int64_t c) {
  double sum = 0.0;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial[chunk * cols + c];
  out[c] += static_cast<float>(sum);
}

}  // namespace race::kernels::cuda::items
