// Embedding lookup on CUDA devices, forward and backward, with the semantics of kernels/cpu/embedding_cpu.h:
// out (N, C) (+)= table (V, C)[ids (N)]; dtable[ids[n]] += dout[n] for n = 0, 1, ... in order. The caller
// checks the ids (index_check_cuda.h) first. Declared without CUDA headers; defined in embedding_cuda.cu.
// Does not synchronise.
#pragma once

#include <cstdint>

namespace race::kernels::cuda {

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t n, int64_t channels,
                       bool accumulate);
// Deterministic without atomics or sorting: thread (column c, vocabulary slice) walks n in order and adds
// dout[n, c] into dtable[ids[n], c] when ids[n] falls in its slice, so every element of dtable has one
// owner and receives its updates in the CPU's order (n = 0, 1, ...): the result matches the CPU bit for bit.
void embedding_backward(float* dtable, const int32_t* ids, const float* dout, int64_t n, int64_t vocab,
                        int64_t channels);

}  // namespace race::kernels::cuda
