// The per-element math of the CUDA model kernels (GELU, dropout's keep mask, AdamW's update, RoPE's
// frequencies), written once as __host__ __device__ functions: the .cu kernels call them per thread, and the
// host tests check them against the fp64 references of tests/reference without a GPU.
// C++17 and no CUDA headers: the host compiler includes this file too (RACE_HD is empty there).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda/race_tile.h"

namespace race::kernels::cuda::math {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

// sigmoid(2 u(x)) = 0.5 (1 + tanh(u(x))), u = sqrt(2/pi) (x + 0.044715 x^3): one exp, no cancellation at 0.
RACE_HD float gelu_gate(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  return 1.f / (1.f + expf(-2.f * u));
}

RACE_HD float gelu_forward(float x) { return x * gelu_gate(x); }

// dy * gelu'(x), gelu'(x) = s + 2 x s (1 - s) u',  u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
RACE_HD float gelu_backward(float dy, float x) {
  const float s = gelu_gate(x);
  const float du = kSqrt2OverPi * (1.f + 3.f * kGeluCubic * x * x);
  return dy * (s + 2.f * x * s * (1.f - s) * du);
}

// Dropout's mask, as CpuOps::dropout draws it: keep element `index` when the top 24 bits of
// splitmix64(seed + golden * (index + 1)) are at or above threshold = p * 2^24.
RACE_HD uint64_t dropout_threshold(float p) { return static_cast<uint64_t>(static_cast<double>(p) * 16777216.0); }

RACE_HD bool dropout_keep(uint64_t seed, int64_t index, uint64_t threshold) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(index + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return (z >> 40) >= threshold;
}

// The step-dependent constants of one AdamW update, computed once on the host in fp64 as adamw_cpu.cpp does.
struct AdamWConstants {
  float beta1, beta2, eps, grad_scale;
  float lr_wd;           // lr weight_decay: p - (lr wd) p keeps the decay exact where fp32 1 - lr wd would not
  float step_size;       // lr / (1 - beta1^step)
  float inv_sqrt_bias2;  // 1 / sqrt(1 - beta2^step)
};

inline AdamWConstants adamw_constants(float lr, float beta1, float beta2, float eps, float weight_decay,
                                      int64_t step, float grad_scale) {
  const double steps = static_cast<double>(step);
  AdamWConstants c{};
  c.beta1 = beta1;
  c.beta2 = beta2;
  c.eps = eps;
  c.grad_scale = grad_scale;
  c.lr_wd = static_cast<float>(static_cast<double>(lr) * static_cast<double>(weight_decay));
  c.step_size = static_cast<float>(lr / (1.0 - std::pow(static_cast<double>(beta1), steps)));
  c.inv_sqrt_bias2 = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(static_cast<double>(beta2), steps)));
  return c;
}

// One element of torch.optim.AdamW with the arithmetic of adamw_cpu.cpp: p, m, v updated in place.
RACE_HD void adamw_update(float& p, float& m, float& v, float grad, const AdamWConstants& c) {
  const float g = grad * c.grad_scale;
  m = c.beta1 * m + (1.f - c.beta1) * g;
  v = c.beta2 * v + (1.f - c.beta2) * (g * g);
  p -= c.lr_wd * p + c.step_size * m / (sqrtf(v) * c.inv_sqrt_bias2 + c.eps);
}

// RoPE's angle for pair i of a head of D at `position`: position * base^(-2i/D), in fp64 as on the CPU.
RACE_HD double rope_angle(int64_t position, int64_t pair, int64_t head_dim, float base) {
  return static_cast<double>(position) *
         pow(static_cast<double>(base), -2.0 * static_cast<double>(pair) / static_cast<double>(head_dim));
}

}  // namespace race::kernels::cuda::math
