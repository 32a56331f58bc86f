// Embedding lookup on the CPU: the forward copies rows (OpenMP over positions); the backward scatter-adds
// with each thread owning a range of table columns, cut in multiples of 16 (one 64-byte line when rows are
// aligned) so that threads seldom write the same cache line.
#include "kernels/cpu/embedding_cpu.h"

#include <omp.h>

#include <algorithm>

#include "core/error.h"

namespace race::kernels::cpu {
namespace {

void check(const char* function, const void* a, const char* a_name, const int32_t* ids, const void* b,
           const char* b_name, int64_t n, int64_t vocab, int64_t channels) {
  if (n < 0) fail("{}: n = {} must be >= 0", function, n);
  if (vocab < 1 || vocab > int64_t{1} << 31) fail("{}: vocab = {} must be in [1, 2^31]", function, vocab);
  if (channels < 1) fail("{}: channels = {} must be >= 1", function, channels);
  if (n == 0) return;
  if (a == nullptr) fail("{}: {} is null", function, a_name);
  if (b == nullptr) fail("{}: {} is null", function, b_name);
  if (ids == nullptr) fail("{}: ids is null", function);
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      fail("{}: id {} at position {} is outside the vocabulary [0, {})", function, ids[i], i, vocab);
}

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t n, int64_t vocab,
                       int64_t channels, bool accumulate) {
  check("embedding_forward", out, "out", ids, table, "table", n, vocab, channels);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = table + static_cast<int64_t>(ids[i]) * channels;  // (C)
    float* o = out + i * channels;                                       // (C)
    if (accumulate) {
      for (int64_t c = 0; c < channels; ++c) o[c] += row[c];
    } else {
      std::copy(row, row + channels, o);
    }
  }
}

void embedding_backward(float* dtable, const int32_t* ids, const float* dout, int64_t n, int64_t vocab,
                        int64_t channels) {
  check("embedding_backward", dtable, "dtable", ids, dout, "dout", n, vocab, channels);
  if (n == 0) return;
  constexpr int64_t kLine = 16;  // floats per 64-byte cache line
  const int64_t lines = (channels + kLine - 1) / kLine;
#pragma omp parallel
  {
    const int parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t begin = std::min(channels, lines * part / parts * kLine);
    const int64_t end = std::min(channels, lines * (part + 1) / parts * kLine);
    for (int64_t i = 0; i < n && begin < end; ++i) {
      const float* g = dout + i * channels;                           // (C)
      float* row = dtable + static_cast<int64_t>(ids[i]) * channels;  // (C)
      for (int64_t c = begin; c < end; ++c) row[c] += g[c];
    }
  }
}

}  // namespace race::kernels::cpu
