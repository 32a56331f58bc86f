// The optimizer on CUDA devices: the global gradient norm and one fused AdamW update (the clipping scale
// applied to the gradients on the fly, as kernels/cpu/adamw_cpu.h), per element elementwise_math.h's
// adamw_update. Declared without CUDA headers; defined in adamw_cuda.cu.
#pragma once

#include <cstdint>

#include "kernels/cuda/elementwise_math.h"

namespace race::kernels::cuda {

// sqrt(sum grads^2): fp64 partial sums of a fixed grid (each block its grid-stride share), added by a fixed
// tree, so the result is the same bits on every run. Synchronises (the norm comes back).
double grad_norm(const float* grads, int64_t n);

// params, m, v (n) updated in place from grads (n). Does not synchronise.
void adamw(float* params, const float* grads, float* m, float* v, int64_t n, const math::AdamWConstants& constants);

}  // namespace race::kernels::cuda
