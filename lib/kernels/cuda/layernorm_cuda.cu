// LayerNorm on CUDA: one block per row running block_programs.h's row programs (fp64 block sums in a fixed
// tree), and column_sums_cuda.h's two fixed-order stages for the parameter gradients, so every result is the
// same on every run. The forward kernels are instantiated for an fp32 and a bf16 y.
#include "kernels/cuda/layernorm_cuda.h"

#include <cuda_bf16.h>

#include "kernels/cuda/block_programs.h"
#include "kernels/cuda/column_sums_cuda.h"
#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"

namespace race::kernels::cuda {
namespace {

template <class Y>
__global__ void forward_kernel(Y* y, float* mean, float* rstd, const float* x, const float* weight,
                               const float* bias, int64_t channels, float eps) {
  __shared__ double shared[kThreads];
  const int64_t row = blockIdx.x;
  programs::layernorm_forward_row(CudaBlock<kThreads>{}, shared, y + row * channels, mean + row, rstd + row,
                                  x + row * channels, weight, bias, channels, eps);
}

template <class Y>
__global__ void residual_forward_kernel(float* residual, Y* y, float* mean, float* rstd, const float* x,
                                        const float* r, const float* weight, const float* bias, int64_t channels,
                                        float eps) {
  __shared__ double shared[kThreads];
  const int64_t row = blockIdx.x;
  programs::residual_layernorm_forward_row(CudaBlock<kThreads>{}, shared, residual + row * channels,
                                           y + row * channels, mean + row, rstd + row, x + row * channels,
                                           r + row * channels, weight, bias, channels, eps);
}

__global__ void backward_rows_kernel(float* dx, const float* dy, const float* x, const float* weight,
                                     const float* mean, const float* rstd, int64_t channels) {
  __shared__ double shared[kThreads];
  const int64_t row = blockIdx.x;
  programs::layernorm_backward_row(CudaBlock<kThreads>{}, shared, dx + row * channels, dy + row * channels,
                                   x + row * channels, weight, mean[row], rstd[row], channels);
}

}  // namespace

void layernorm_forward(void* y, DType y_type, float* mean, float* rstd, const float* x, const float* weight,
                       const float* bias, int64_t rows, int64_t channels, float eps) {
  if (rows == 0) return;
  const auto blocks = static_cast<unsigned>(rows);
  if (y_type == DType::bf16)
    forward_kernel<<<blocks, kThreads>>>(static_cast<__nv_bfloat16*>(y), mean, rstd, x, weight, bias, channels, eps);
  else
    forward_kernel<<<blocks, kThreads>>>(static_cast<float*>(y), mean, rstd, x, weight, bias, channels, eps);
  RACE_CUDA_CHECK(cudaGetLastError());
}

void residual_layernorm_forward(float* residual, void* y, DType y_type, float* mean, float* rstd, const float* x,
                                const float* r, const float* weight, const float* bias, int64_t rows,
                                int64_t channels, float eps) {
  if (rows == 0) return;
  const auto blocks = static_cast<unsigned>(rows);
  if (y_type == DType::bf16)
    residual_forward_kernel<<<blocks, kThreads>>>(residual, static_cast<__nv_bfloat16*>(y), mean, rstd, x, r,
                                                  weight, bias, channels, eps);
  else
    residual_forward_kernel<<<blocks, kThreads>>>(residual, static_cast<float*>(y), mean, rstd, x, r, weight, bias,
                                                  channels, eps);
  RACE_CUDA_CHECK(cudaGetLastError());
}

void layernorm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                        const float* weight, const float* mean, const float* rstd, int64_t rows,
                        int64_t channels) {
  if (rows == 0) return;
  backward_rows_kernel<<<static_cast<unsigned>(rows), kThreads>>>(dx, dy, x, weight, mean, rstd, channels);
  RACE_CUDA_CHECK(cudaGetLastError());
  layernorm_param_sums(dweight, dbias, dy, x, mean, rstd, rows, channels);
}

}  // namespace race::kernels::cuda
