// Linear layer on CUDA: one strided tiled matrix product serves all three products of forward and backward
// (each reads its operands through the strides of work_items.h's Product), plus a column sum for the bias
// gradient.
#include "kernels/cuda/linear_cuda.h"

#include "kernels/cuda/launch.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/work_items.h"

namespace race::kernels::cuda {
namespace {

constexpr int kTile = 32;         // C tile (kTile, kTile), k steps of kTile
constexpr int kRowsPerThread = 4;  // a (kTile, kTile / kRowsPerThread) thread block; each thread 4 rows

using items::Product;
using items::Strided;

// C (M, N) = A (M, K) B (K, N) + (accumulate ? C : 0) + (bias ? bias[n] : 0), C row-major with ld N.
// Each output element is summed over k in increasing order by one thread: deterministic.
__global__ void matmul_kernel(float* c, Strided a, Strided b, const float* bias, int64_t m_count, int64_t n_count,
                              int64_t k_count, bool accumulate) {
  __shared__ float a_tile[kTile][kTile + 1];  // (m, k); +1 avoids bank conflicts on the column reads
  __shared__ float b_tile[kTile][kTile + 1];  // (k, n)
  const int tx = threadIdx.x, ty = threadIdx.y;  // tx: column in the tile, ty: first of the thread's rows
  // rows on grid.x (up to 2^31 - 1 tiles: B * T rows of a long context), columns on grid.y (65535 tiles)
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kTile, n0 = static_cast<int64_t>(blockIdx.y) * kTile;
  float acc[kRowsPerThread] = {};
  for (int64_t k0 = 0; k0 < k_count; k0 += kTile) {
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int r = ty + i * (kTile / kRowsPerThread);
      const int64_t am = m0 + r, ak = k0 + tx, bk = k0 + r, bn = n0 + tx;
      a_tile[r][tx] = am < m_count && ak < k_count ? a.at(am, ak) : 0.f;
      b_tile[r][tx] = bk < k_count && bn < n_count ? b.at(bk, bn) : 0.f;
    }
    __syncthreads();
    for (int kk = 0; kk < kTile; ++kk) {
      const float bv = b_tile[kk][tx];
      for (int i = 0; i < kRowsPerThread; ++i) acc[i] += a_tile[ty + i * (kTile / kRowsPerThread)][kk] * bv;
    }
    __syncthreads();
  }
  const int64_t col = n0 + tx;
  if (col >= n_count) return;
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t row = m0 + ty + i * (kTile / kRowsPerThread);
    if (row >= m_count) continue;
    float value = acc[i];
    if (bias != nullptr) value += bias[col];
    if (accumulate) value += c[row * n_count + col];
    c[row * n_count + col] = value;
  }
}

void matmul(float* c, const Product& p, const float* bias, bool accumulate) {
  const int64_t m = p.m, n = p.n;
  if (m == 0 || n == 0) return;
  const dim3 grid(static_cast<unsigned>((m + kTile - 1) / kTile), static_cast<unsigned>((n + kTile - 1) / kTile));
  matmul_kernel<<<grid, dim3(kTile, kTile / kRowsPerThread)>>>(c, p.a, p.b, bias, m, n, p.k, accumulate);
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
