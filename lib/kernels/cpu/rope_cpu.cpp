// RoPE on the CPU: OpenMP over (batch, block of positions). Each block's cosines and sines are computed once
// (fp64) and serve every head; the rotation itself is elementwise, so results do not depend on threads.
#include "kernels/cpu/rope_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace race::kernels::cpu {
namespace {

constexpr int64_t kBlock = 32;  // positions per work item: their tables (32 x D floats) stay in L1

void check(const char* function, const float* out, const float* in, const int32_t* positions, int64_t batch,
           int64_t heads, int64_t seq_len, int64_t head_dim, float base) {
  if (batch < 0) fail("{}: batch = {} must be >= 0", function, batch);
  if (heads < 0) fail("{}: heads = {} must be >= 0", function, heads);
  if (seq_len < 0) fail("{}: seq_len = {} must be >= 0", function, seq_len);
  if (head_dim < 2 || head_dim % 2 != 0) fail("{}: head_dim = {} must be even and >= 2", function, head_dim);
  if (!(base > 0.f && std::isfinite(base))) fail("{}: base = {} must be finite and > 0", function, base);
  if (batch * heads * seq_len == 0) return;
  if (out == nullptr || in == nullptr)
    fail("{}: {} is null", function, out == nullptr ? "the output" : "the input");
  if (positions != nullptr)
    for (int64_t i = 0; i < batch * seq_len; ++i)
      if (positions[i] < 0)
        fail("{}: position {} at (batch {}, token {}) must be >= 0", function, positions[i], i / seq_len,
             i % seq_len);
}

// sign = +1 turns every pair forward, -1 backward.
void rotate(float* out, const float* in, const int32_t* positions, int64_t batch, int64_t heads,
            int64_t seq_len, int64_t head_dim, float base, float sign) {
  if (batch * heads * seq_len == 0) return;
  const int64_t half = head_dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));  // (D/2) base^(-2i/D)
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] =
        std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
  const int64_t blocks = (seq_len + kBlock - 1) / kBlock;
  // (threads, 2, block, D/2): each thread's cosines then sines, allocated outside the parallel region so
  // that no exception (bad_alloc) can be thrown inside it
  std::vector<float> tables(static_cast<size_t>(omp_get_max_threads() * 2 * kBlock * half));
#pragma omp parallel
  {
    float* cos_t = tables.data() + omp_get_thread_num() * 2 * kBlock * half;  // (block, D/2)
    float* sin_t = cos_t + kBlock * half;                                     // (block, D/2)
#pragma omp for schedule(static)
    for (int64_t work = 0; work < batch * blocks; ++work) {
      const int64_t b = work / blocks, t0 = work % blocks * kBlock, t1 = std::min(seq_len, t0 + kBlock);
      for (int64_t t = t0; t < t1; ++t) {
        const double pos =
            positions != nullptr ? static_cast<double>(positions[b * seq_len + t]) : static_cast<double>(t);
        for (int64_t i = 0; i < half; ++i) {
          const double angle = pos * inv_freq[i];
          cos_t[(t - t0) * half + i] = static_cast<float>(std::cos(angle));
          sin_t[(t - t0) * half + i] = sign * static_cast<float>(std::sin(angle));
        }
      }
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t offset = ((b * heads + h) * seq_len + t) * head_dim;
          const float* x = in + offset;  // (D)
          float* y = out + offset;       // (D)
          const float* c = cos_t + (t - t0) * half;
          const float* s = sin_t + (t - t0) * half;
          for (int64_t i = 0; i < half; ++i) {
            const float lo = x[i], hi = x[i + half];
            y[i] = lo * c[i] - hi * s[i];
            y[i + half] = lo * s[i] + hi * c[i];
          }
        }
    }
  }
}

}  // namespace

void rope_forward(float* out, const float* x, const int32_t* positions, int64_t batch, int64_t heads,
                  int64_t seq_len, int64_t head_dim, float base) {
  check("rope_forward", out, x, positions, batch, heads, seq_len, head_dim, base);
  rotate(out, x, positions, batch, heads, seq_len, head_dim, base, 1.f);
}

void rope_backward(float* dx, const float* dout, const int32_t* positions, int64_t batch, int64_t heads,
                   int64_t seq_len, int64_t head_dim, float base) {
  check("rope_backward", dx, dout, positions, batch, heads, seq_len, head_dim, base);
  rotate(dx, dout, positions, batch, heads, seq_len, head_dim, base, -1.f);
}

}  // namespace race::kernels::cpu
