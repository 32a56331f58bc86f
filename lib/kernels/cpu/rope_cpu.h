// Rotary position embedding (RoPE) on the CPU, forward and backward, GPT-NeoX's half-split form: in each
// head vector x (D), element i pairs with element i + D/2 (not 2i with 2i + 1), and the pair turns by the
// angle pos * base^(-2i/D), i < D/2:
//   out[i]       = x[i] cos - x[i + D/2] sin
//   out[i + D/2] = x[i] sin + x[i + D/2] cos
// The backward is the transpose, a turn by -angle. Angles and their sines and cosines are fp64 (at position
// 10^6 an fp32 angle would be off by a tenth of a radian), stored as fp32 for the rotation.
// Positions come per token, so packed documents can each restart at 0; without them position = t.
#pragma once

#include <cstdint>

namespace race::kernels::cpu {

// Rotates x (B, H, T, D) into out (B, H, T, D), overwritten; out may be x (in place). positions (B, T) may be
// null (position t). base > 0 (10000 in GPT-NeoX and Llama 2). Call once for q and once for k (they may
// have different head counts). Throws race::Error for an odd or zero D, a negative position (naming it and
// where), base <= 0, or a missing buffer.
void rope_forward(float* out, const float* x, const int32_t* positions, int64_t batch, int64_t heads,
                  int64_t seq_len, int64_t head_dim, float base);

// dx (B, H, T, D) = the transposed rotation of dout (B, H, T, D), overwritten; dx may be dout (in place).
void rope_backward(float* dx, const float* dout, const int32_t* positions, int64_t batch, int64_t heads,
                   int64_t seq_len, int64_t head_dim, float base);

}  // namespace race::kernels::cpu
