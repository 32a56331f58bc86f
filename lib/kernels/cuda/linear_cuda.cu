// Linear layer on CUDA: block_programs.h's tiled product serves all three products of forward and backward
// (each reads its operands through the strides of work_items.h's Product), plus a column sum for the bias
// gradient.
#include "kernels/cuda/linear_cuda.h"

#include "kernels/cuda/block_programs.h"
#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/work_items.h"

namespace race::kernels::cuda {
namespace {

using programs::kMatmulTile;
using items::Product;

// grid: rows of C on x (up to 2^31 - 1 tiles: B * T rows of a long context), columns on y (65535 tiles).
__global__ void matmul_kernel(float* c, Product p, const float* bias, bool accumulate) {
  __shared__ float shared[programs::kMatmulSharedFloats];
  programs::matmul_tile(CudaBlock<programs::kMatmulLanes>{}, shared, c, p, bias, accumulate, blockIdx.x, blockIdx.y);
}

void matmul(float* c, const Product& p, const float* bias, bool accumulate) {
  if (p.m == 0 || p.n == 0) return;
  const dim3 grid(static_cast<unsigned>((p.m + kMatmulTile - 1) / kMatmulTile),
                  static_cast<unsigned>((p.n + kMatmulTile - 1) / kMatmulTile));
  matmul_kernel<<<grid, programs::kMatmulLanes>>>(c, p, bias, accumulate);
  RACE_CUDA_CHECK(cudaGetLastError());
}

// dbias (out) += sum over rows of dy (rows, out): one thread per column, rows in order, fp64 (as the CPU).
__global__ void column_sum_kernel(float* dbias, const float* dy, int64_t rows, int64_t out) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= out) return;
  double sum = 0.0;
  for (int64_t n = 0; n < rows; ++n) sum += static_cast<double>(dy[n * out + col]);
  dbias[col] += static_cast<float>(sum);
}

}  // namespace

void linear_forward(float* y, const float* x, const float* weight, const float* bias, int64_t rows, int64_t in,
                    int64_t out) {
  matmul(y, items::forward_product(x, weight, rows, in, out), bias, false);
}

void linear_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x,
                     const float* weight, int64_t rows, int64_t in, int64_t out) {
  if (dx != nullptr) matmul(dx, items::input_grad_product(dy, weight, rows, in, out), nullptr, false);
  if (dweight != nullptr) matmul(dweight, items::weight_grad_product(dy, x, rows, in, out), nullptr, true);
  if (dbias != nullptr && out > 0) {
    column_sum_kernel<<<static_cast<unsigned>((out + kThreads - 1) / kThreads), kThreads>>>(dbias, dy, rows, out);
    RACE_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace race::kernels::cuda
