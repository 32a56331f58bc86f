// The linear layer's bias gradient on CUDA: a column sum of dy. The products themselves are cuBLASLt's
// (linear_cublaslt.cpp).
#include "kernels/cuda/linear_cuda.h"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"

namespace race::kernels::cuda {
namespace {

// dbias (out) += sum over rows of dy (rows, out): one thread per column, rows in order, fp64 (as the CPU),
// so the result does not depend on scheduling.
__global__ void column_sum_kernel(float* dbias, const float* dy, int64_t rows, int64_t out) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= out) return;
  double sum = 0.0;
  for (int64_t n = 0; n < rows; ++n) sum += static_cast<double>(dy[n * out + col]);
  dbias[col] += static_cast<float>(sum);
}

}  // namespace

void bias_grad_accumulate(float* dbias, const float* dy, int64_t rows, int64_t out) {
  if (out <= 0) return;
  column_sum_kernel<<<static_cast<unsigned>((out + kThreads - 1) / kThreads), kThreads>>>(dbias, dy, rows,
                                                                                          out);
  RACE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace race::kernels::cuda
