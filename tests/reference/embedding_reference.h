// Plain fp64 reference of the embedding lookup (kernels/cpu/embedding_cpu.h): out[n] = table[ids[n]].
#pragma once

#include <cstdint>
#include <vector>

namespace race::reference {

// out (N, C) from ids (N) into table (V, C).
std::vector<double> embedding_forward(const std::vector<int32_t>& ids, const std::vector<double>& table,
                                      int64_t channels);

// dtable (V, C) = gradient of sum(dout * out) for dout (N, C): row ids[n] gathers dout[n].
std::vector<double> embedding_backward(const std::vector<int32_t>& ids, const std::vector<double>& dout,
                                       int64_t vocab, int64_t channels);

}  // namespace race::reference
