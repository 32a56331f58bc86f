// Rotary position embedding on CUDA devices, GPT-NeoX's half-split form, with the semantics of
// kernels/cpu/rope_cpu.h: angles, sines and cosines in fp64 (elementwise_math.h's rope_angle), the rotation in
// fp32; the backward turns by -angle. x, out (B, H, T, D) of one element type, fp32 or bf16 (read and
// stored through it, a bf16 store rounding to nearest even); out may be x. positions (B, T) or null (t). The
// caller checks the positions (index_check_cuda.h). Declared without CUDA headers; defined in rope_cuda.cu.
#pragma once

#include <cstdint>

#include "kernels/cuda/dtype.h"

namespace race::kernels::cuda {

// sign +1: forward; -1: backward (the transposed rotation). out and x of element type `type`.
void rope_rotate(void* out, const void* x, DType type, const int32_t* positions, int64_t batch, int64_t heads,
                 int64_t seq_len, int64_t head_dim, float base, float sign);

}  // namespace race::kernels::cuda
