// Plain fp64 reference of rotary position embedding, GPT-NeoX half-split form (kernels/cpu/rope_cpu.h):
// in each head vector, element i pairs with i + D/2 and the pair turns by pos / base^(2i/D).
#pragma once

#include <cstdint>
#include <vector>

namespace race::reference {

// x (B, H, T, D); positions (B, T), empty meaning position t.
std::vector<double> rope_forward(const std::vector<double>& x, const std::vector<int32_t>& positions,
                                 int64_t batch, int64_t heads, int64_t seq_len, int64_t head_dim,
                                 double base);

// Gradient of sum(dout * rope_forward(x)) with respect to x: each pair turned back by the same angle.
std::vector<double> rope_backward(const std::vector<double>& dout, const std::vector<int32_t>& positions,
                                  int64_t batch, int64_t heads, int64_t seq_len, int64_t head_dim,
                                  double base);

}  // namespace race::reference
