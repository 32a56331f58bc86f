// Layer normalisation over the last dimension on the CPU, forward and backward, plus a forward fused with
// the residual add that precedes every LayerNorm of a pre-LN block:
//   y = (x - mean) * rstd * weight + bias,   mean, rstd per row of x (N, C), rstd = 1 / sqrt(var + eps),
//   var the biased (1/C) variance, as torch.nn.LayerNorm.
// Row statistics are fp64 sums in a fixed order (independent of the thread count); the parameter gradients
// are fp64 sums over blocks of a fixed number of rows, added in block order. So every result is
// bit-identical from run to run and for any OpenMP thread count.
#pragma once

#include <cstdint>

namespace race::kernels::cpu {

// y (N, C) overwritten; mean, rstd (N) written for the backward. weight, bias (C) may each be null (1 and 0).
// y may be x (in place); mean and rstd must not overlap anything else. Throws race::Error for C < 1, N < 0,
// eps <= 0 or a missing buffer.
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight,
                       const float* bias, int64_t rows, int64_t channels, float eps);

// residual (N, C) = x + r, then y = LayerNorm(residual) as layernorm_forward. residual may be x or r (the
// residual stream updated in place). The backward needs no fused twin: the gradient of residual reaches
// x and r unchanged, and layernorm_backward adds the normalisation's share into it (it accumulates).
void residual_layernorm_forward(float* residual, float* y, float* mean, float* rstd, const float* x,
                                const float* r, const float* weight, const float* bias, int64_t rows,
                                int64_t channels, float eps);

// Given dy (N, C) and the forward's x, mean, rstd, with g = dy * weight and xhat = (x - mean) * rstd:
//   dx (N, C) += rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))
//   dweight (C) += sum_n dy * xhat,   dbias (C) += sum_n dy
// Everything accumulates: in a pre-LN transformer dx is the residual stream's gradient, which already holds
// what the skip connection carried back, and dweight / dbias gather a whole accumulated step. dx may not
// overlap dy or x. dweight and dbias may each be null to skip them; weight null means all ones.
void layernorm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                        const float* weight, const float* mean, const float* rstd, int64_t rows,
                        int64_t channels);

}  // namespace race::kernels::cpu
