// Plain fp64 reference of GELU with the tanh approximation (kernels/cpu/gelu_cpu.h), in GPT-2's own form:
//   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
// (the kernel evaluates it as x sigmoid(2u); the two are the same function).
#pragma once

#include <vector>

namespace race::reference {

std::vector<double> gelu_forward(const std::vector<double>& x);

// dx = dy * gelu'(x), gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u'.
std::vector<double> gelu_backward(const std::vector<double>& dy, const std::vector<double>& x);

}  // namespace race::reference
