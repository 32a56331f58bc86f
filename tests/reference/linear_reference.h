// Plain fp64 reference of the fully connected layer (kernels/cpu/linear_cpu.h): y = x W^T + b, triple loops.
#pragma once

#include <cstdint>
#include <vector>

namespace race::reference {

// y (N, out) from x (N, in), weight (out, in), bias (out; empty: no bias).
std::vector<double> linear_forward(const std::vector<double>& x, const std::vector<double>& weight,
                                   const std::vector<double>& bias, int64_t rows, int64_t in, int64_t out);

struct LinearGradients {
  std::vector<double> dx;       // (N, in)    dy . W
  std::vector<double> dweight;  // (out, in)  dy^T . x
  std::vector<double> dbias;    // (out)      column sums of dy
};

// Gradients of sum(dy * y) for dy (N, out).
LinearGradients linear_backward(const std::vector<double>& dy, const std::vector<double>& x,
                                const std::vector<double>& weight, int64_t rows, int64_t in, int64_t out);

}  // namespace race::reference
