// LayerNorm on the CPU: one row per loop iteration, OpenMP over rows. Row sums are fp64 `omp simd`
// reductions (their order is fixed when the code is compiled). The backward's parameter gradients are summed
// per block of rows into fp64 partials, then the partials are added in block order: the block size depends
// on N alone, so the result does not depend on the thread count.
#include "kernels/cpu/layernorm_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace race::kernels::cpu {
namespace {

void check(const char* function, int64_t rows, int64_t channels) {
  if (rows < 0) fail("{}: rows = {} must be >= 0", function, rows);
  if (channels < 1) fail("{}: channels = {} must be >= 1", function, channels);
}

void check_pointer(const char* function, const void* p, const char* name) {
  if (p == nullptr) fail("{}: {} is null", function, name);
}

// Normalises one row x (C) into y (C), which may be x, and saves its statistics.
void normalise_row(float* y, float* mean_out, float* rstd_out, const float* x, const float* weight,
                   const float* bias, int64_t channels, float eps) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < channels; ++c) sum += static_cast<double>(x[c]);
  const double mean = sum / static_cast<double>(channels);
  double squares = 0.0;  // two passes: the variance of a row far from zero mean loses nothing
#pragma omp simd reduction(+ : squares)
  for (int64_t c = 0; c < channels; ++c) {
    const double d = static_cast<double>(x[c]) - mean;
    squares += d * d;
  }
  const double rstd = 1.0 / std::sqrt(squares / static_cast<double>(channels) + static_cast<double>(eps));
  const float m = static_cast<float>(mean), s = static_cast<float>(rstd);
  // x - m is exact for x near m, but m is the mean rounded to fp32: on a row far from zero mean (a residual
  // stream at 1000 has an fp32 spacing of 6e-5) that rounding would shift every xhat of the row alike.
  const float shift = static_cast<float>((mean - static_cast<double>(m)) * rstd);
  for (int64_t c = 0; c < channels; ++c) {
    const float xhat = (x[c] - m) * s - shift;
    y[c] = xhat * (weight != nullptr ? weight[c] : 1.f) + (bias != nullptr ? bias[c] : 0.f);
  }
  *mean_out = m;
  *rstd_out = s;
}

void check_forward(const char* function, const float* y, const float* mean, const float* rstd, int64_t rows,
                   int64_t channels, float eps) {
  check(function, rows, channels);
  if (!(eps > 0.f)) fail("{}: eps = {} must be > 0", function, eps);
  if (rows == 0) return;
  check_pointer(function, y, "y");
  check_pointer(function, mean, "mean");
  check_pointer(function, rstd, "rstd");
}

}  // namespace

void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight,
                       const float* bias, int64_t rows, int64_t channels, float eps) {
  check_forward("layernorm_forward", y, mean, rstd, rows, channels, eps);
  if (rows == 0) return;
  check_pointer("layernorm_forward", x, "x");
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < rows; ++n)
    normalise_row(y + n * channels, mean + n, rstd + n, x + n * channels, weight, bias, channels, eps);
}

void residual_layernorm_forward(float* residual, float* y, float* mean, float* rstd, const float* x,
                                const float* r, const float* weight, const float* bias, int64_t rows,
                                int64_t channels, float eps) {
  check_forward("residual_layernorm_forward", y, mean, rstd, rows, channels, eps);
  if (rows == 0) return;
  check_pointer("residual_layernorm_forward", residual, "residual");
  check_pointer("residual_layernorm_forward", x, "x");
  check_pointer("residual_layernorm_forward", r, "r");
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < rows; ++n) {
    float* res = residual + n * channels;  // (C)
    const float* xn = x + n * channels;
    const float* rn = r + n * channels;
    for (int64_t c = 0; c < channels; ++c) res[c] = xn[c] + rn[c];
    normalise_row(y + n * channels, mean + n, rstd + n, res, weight, bias, channels, eps);
  }
}

void layernorm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                        const float* weight, const float* mean, const float* rstd, int64_t rows,
                        int64_t channels) {
  check("layernorm_backward", rows, channels);
  if (rows == 0) return;
  check_pointer("layernorm_backward", dx, "dx");
  check_pointer("layernorm_backward", dy, "dy");
  check_pointer("layernorm_backward", x, "x");
  check_pointer("layernorm_backward", mean, "mean");
  check_pointer("layernorm_backward", rstd, "rstd");
  const bool params = dweight != nullptr || dbias != nullptr;
  // At most 256 blocks, so the partials stay small (256 * 2C doubles) however long the batch is.
  const int64_t block_rows = std::max<int64_t>(16, (rows + 255) / 256);
  const int64_t blocks = (rows + block_rows - 1) / block_rows;
  // (blocks, 2, C)
  std::vector<double> partial(params ? static_cast<size_t>(blocks * 2 * channels) : 0, 0.0);
  const double inv_c = 1.0 / static_cast<double>(channels);
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    double* pw = params ? partial.data() + blk * 2 * channels : nullptr;  // (C) sum of dy * xhat
    double* pb = params ? pw + channels : nullptr;                        // (C) sum of dy
    for (int64_t n = blk * block_rows; n < std::min(rows, (blk + 1) * block_rows); ++n) {
      const float* dyn = dy + n * channels;  // (C)
      const float* xn = x + n * channels;    // (C)
      float* dxn = dx + n * channels;        // (C)
      const float m = mean[n], s = rstd[n];
      double g_sum = 0.0, gx_sum = 0.0;
#pragma omp simd reduction(+ : g_sum, gx_sum)
      for (int64_t c = 0; c < channels; ++c) {
        const double g = static_cast<double>(dyn[c] * (weight != nullptr ? weight[c] : 1.f));
        g_sum += g;
        gx_sum += g * static_cast<double>((xn[c] - m) * s);
      }
      const float g_mean = static_cast<float>(g_sum * inv_c), gx_mean = static_cast<float>(gx_sum * inv_c);
      for (int64_t c = 0; c < channels; ++c) {
        const float xhat = (xn[c] - m) * s;
        const float g = dyn[c] * (weight != nullptr ? weight[c] : 1.f);
        dxn[c] += s * (g - g_mean - xhat * gx_mean);
      }
      if (params)
        for (int64_t c = 0; c < channels; ++c) {
          pw[c] += static_cast<double>(dyn[c] * ((xn[c] - m) * s));
          pb[c] += static_cast<double>(dyn[c]);
        }
    }
  }
  if (!params) return;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < channels; ++c) {
    double w = 0.0, b = 0.0;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      w += partial[(blk * 2) * channels + c];
      b += partial[(blk * 2 + 1) * channels + c];
    }
    if (dweight != nullptr) dweight[c] += static_cast<float>(w);
    if (dbias != nullptr) dbias[c] += static_cast<float>(b);
  }
}

}  // namespace race::kernels::cpu
