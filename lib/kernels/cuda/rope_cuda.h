// Rotary position embedding on CUDA devices, GPT-NeoX's half-split form, with the semantics of
// kernels/cpu/rope_cpu.h: angles, sines and cosines in fp64 (elementwise_math.h's rope_angle), the rotation in
// fp32; the backward turns by -angle. x, out (B, H, T, D), out may be x; positions (B, T) or null (t). The
// caller checks the positions (index_check_cuda.h). Declared without CUDA headers; defined in rope_cuda.cu.
#pragma once

#include <cstdint>

namespace race::kernels::cuda {

// sign +1: forward; -1: backward (the transposed rotation).
void rope_rotate(float* out, const float* x, const int32_t* positions, int64_t batch, int64_t heads,
                 int64_t seq_len, int64_t head_dim, float base, float sign);

}  // namespace race::kernels::cuda
