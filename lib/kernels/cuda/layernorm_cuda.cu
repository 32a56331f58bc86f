// LayerNorm on CUDA: one block per row for the row work (fp64 block sums in a fixed tree), and one thread per
// channel, rows in order, for the parameter gradients, so every result is the same on every run.
#include "kernels/cuda/layernorm_cuda.h"

#include "kernels/cuda/block_reduce.h"
#include "kernels/cuda/cuda_check.h"

namespace race::kernels::cuda {
namespace {

__global__ void forward_kernel(float* y, float* mean_out, float* rstd_out, const float* x, const float* weight,
                               const float* bias, int64_t channels, float eps) {
  __shared__ double shared[kThreads];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * channels;  // (C)
  float* yr = y + row * channels;        // (C)
  double sum = 0.0;
  for (int64_t c = threadIdx.x; c < channels; c += kThreads) sum += static_cast<double>(xr[c]);
  const double mean = block_sum<kThreads>(sum, shared) / static_cast<double>(channels);
  double squares = 0.0;  // two passes, as the CPU: a row far from zero mean loses nothing
  for (int64_t c = threadIdx.x; c < channels; c += kThreads) {
    const double d = static_cast<double>(xr[c]) - mean;
    squares += d * d;
  }
  const double rstd =
      1.0 / sqrt(block_sum<kThreads>(squares, shared) / static_cast<double>(channels) + static_cast<double>(eps));
  const float m = static_cast<float>(mean), s = static_cast<float>(rstd);
  const float shift = static_cast<float>((mean - static_cast<double>(m)) * rstd);  // see layernorm_cpu.cpp
  for (int64_t c = threadIdx.x; c < channels; c += kThreads) {
    const float xhat = (xr[c] - m) * s - shift;
    yr[c] = xhat * (weight != nullptr ? weight[c] : 1.f) + (bias != nullptr ? bias[c] : 0.f);
  }
  if (threadIdx.x == 0) {
    mean_out[row] = m;
    rstd_out[row] = s;
  }
}

// dx += rstd (g - mean_c(g) - xhat mean_c(g xhat)), g = dy * weight.
__global__ void backward_rows_kernel(float* dx, const float* dy, const float* x, const float* weight,
                                     const float* mean, const float* rstd, int64_t channels) {
  __shared__ double shared[kThreads];
  const int64_t row = blockIdx.x;
  const float* dyr = dy + row * channels;
  const float* xr = x + row * channels;
  float* dxr = dx + row * channels;
  const float m = mean[row], s = rstd[row];
  double g_sum = 0.0, gx_sum = 0.0;
  for (int64_t c = threadIdx.x; c < channels; c += kThreads) {
    const double g = static_cast<double>(dyr[c] * (weight != nullptr ? weight[c] : 1.f));
    g_sum += g;
    gx_sum += g * static_cast<double>((xr[c] - m) * s);
  }
  const double inv_c = 1.0 / static_cast<double>(channels);
  const float g_mean = static_cast<float>(block_sum<kThreads>(g_sum, shared) * inv_c);
  const float gx_mean = static_cast<float>(block_sum<kThreads>(gx_sum, shared) * inv_c);
  for (int64_t c = threadIdx.x; c < channels; c += kThreads) {
    const float xhat = (xr[c] - m) * s;
    const float g = dyr[c] * (weight != nullptr ? weight[c] : 1.f);
    dxr[c] += s * (g - g_mean - xhat * gx_mean);
  }
}

// dweight (C) += sum_n dy xhat, dbias (C) += sum_n dy: one thread per channel, rows in order, fp64.
__global__ void backward_params_kernel(float* dweight, float* dbias, const float* dy, const float* x,
                                       const float* mean, const float* rstd, int64_t rows, int64_t channels) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  double w_sum = 0.0, b_sum = 0.0;
  for (int64_t n = 0; n < rows; ++n) {
    const float g = dy[n * channels + c];
    w_sum += static_cast<double>(g * ((x[n * channels + c] - mean[n]) * rstd[n]));
    b_sum += static_cast<double>(g);
  }
  if (dweight != nullptr) dweight[c] += static_cast<float>(w_sum);
  if (dbias != nullptr) dbias[c] += static_cast<float>(b_sum);
}

}  // namespace

void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight, const float* bias,
                       int64_t rows, int64_t channels, float eps) {
  if (rows == 0) return;
  forward_kernel<<<static_cast<unsigned>(rows), kThreads>>>(y, mean, rstd, x, weight, bias, channels, eps);
  RACE_CUDA_CHECK(cudaGetLastError());
}

void layernorm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                        const float* weight, const float* mean, const float* rstd, int64_t rows,
                        int64_t channels) {
  if (rows == 0) return;
  backward_rows_kernel<<<static_cast<unsigned>(rows), kThreads>>>(dx, dy, x, weight, mean, rstd, channels);
  RACE_CUDA_CHECK(cudaGetLastError());
  if (dweight == nullptr && dbias == nullptr) return;
  backward_params_kernel<<<static_cast<unsigned>((channels + kThreads - 1) / kThreads), kThreads>>>(
      dweight, dbias, dy, x, mean, rstd, rows, channels);
  RACE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace race::kernels::cuda
