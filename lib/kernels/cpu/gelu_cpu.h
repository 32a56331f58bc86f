// GELU with GPT-2's tanh approximation on the CPU, forward and backward, elementwise:
//   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3).
// Evaluated as x * sigmoid(2u) (the same function: 0.5 (1 + tanh(u)) = sigmoid(2u)), which needs one exp
// and has no cancellation near x = 0; the exp is the 16-lane one of kernels/cpu/vector_math.h.
#pragma once

#include <cstdint>

namespace race::kernels::cpu {

// y (n) = gelu(x (n)); y may be x. Any shape: the kernel sees n elements.
void gelu_forward(float* y, const float* x, int64_t n);

// dx (n) = dy * gelu'(x), overwritten; dx may be dy (in place), and x is the forward's input.
//   gelu'(x) = s + 2 x s (1 - s) u',  s = sigmoid(2u),  u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
void gelu_backward(float* dx, const float* dy, const float* x, int64_t n);

}  // namespace race::kernels::cpu
