// Embedding lookup on the CPU, forward and backward: row ids[n] of a table (V, C) for each of N positions.
// The same kernel serves token embeddings and learned absolute position embeddings (ids = positions).
// Every id is checked before anything is written: an id outside [0, V) throws race::Error naming the id and
// its position, and leaves the outputs untouched.
#pragma once

#include <cstdint>

namespace race::kernels::cpu {

// out (N, C) = table (V, C)[ids (N)], or += when accumulate (e.g. token embedding, then position embedding
// added by a second call). out must not overlap table.
void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t n, int64_t vocab,
                       int64_t channels, bool accumulate);

// dtable (V, C) += scatter of dout (N, C): dtable[ids[n]] += dout[n] for every n, accumulated (so tied
// input/output embeddings and gradient accumulation just add up). No atomics: each thread owns a range of
// columns and visits n in order, so every row of dtable receives its updates in the order n = 0, 1, ...
// and the result is bit-identical for any thread count.
void embedding_backward(float* dtable, const int32_t* ids, const float* dout, int64_t n, int64_t vocab,
                        int64_t channels);

}  // namespace race::kernels::cpu
