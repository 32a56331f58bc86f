// Cross-entropy on CUDA: one block per row (row max, fp64 sum of exp, loss, gradient written in place of
// the logits if asked), per-row losses in fp64 scratch, then one block adds them by a fixed tree.
#include "kernels/cuda/cross_entropy_cuda.h"

#include <cfloat>

#include "kernels/cuda/block_reduce.h"
#include "kernels/cuda/cuda_check.h"

namespace race::kernels::cuda {
namespace {

constexpr int32_t kIgnoreTarget = -1;

// losses (N) fp64: loss_n, 0 for ignored rows.
__global__ void row_kernel(double* losses, float* dlogits, const float* logits, const int32_t* targets,
                           int64_t vocab, float grad_scale) {
  __shared__ float shared_max[kThreads];
  __shared__ double shared_sum[kThreads];
  const int64_t row = blockIdx.x;
  const float* lr = logits + row * vocab;                                 // (V)
  float* dr = dlogits != nullptr ? dlogits + row * vocab : nullptr;     // (V)
  const int32_t target = targets[row];
  if (target == kIgnoreTarget) {
    if (dr != nullptr)
      for (int64_t i = threadIdx.x; i < vocab; i += kThreads) dr[i] = 0.f;
    if (threadIdx.x == 0) losses[row] = 0.0;
    return;
  }
  const float target_logit = lr[target];  // read before dlogits (which may be logits) is written
  float row_max = -FLT_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) row_max = fmaxf(row_max, lr[i]);
  row_max = block_max<kThreads>(row_max, shared_max);
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) sum += static_cast<double>(expf(lr[i] - row_max));
  sum = block_sum<kThreads>(sum, shared_sum);  // its barriers also order every read of lr before the writes
  if (threadIdx.x == 0)
    losses[row] = log(sum) + static_cast<double>(row_max) - static_cast<double>(target_logit);
  if (dr == nullptr) return;
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float p = expf(lr[i] - row_max) * inv_sum;
    dr[i] = grad_scale * (i == target ? p - 1.f : p);
  }
}

constexpr int kSumThreads = 1024;

// One block: thread j adds rows j, j + 1024, ... in order, then a fixed tree. sums = {loss_sum, count}.
__global__ void sum_kernel(double* loss_sum, long long* count, const double* losses, const int32_t* targets,
                           int64_t rows) {
  __shared__ double shared[kSumThreads];
  __shared__ long long shared_count[kSumThreads];
  double sum = 0.0;
  long long counted = 0;
  for (int64_t i = threadIdx.x; i < rows; i += kSumThreads) {
    sum += losses[i];
    counted += targets[i] != kIgnoreTarget;
  }
  sum = block_sum<kSumThreads>(sum, shared);
  counted = block_sum<kSumThreads>(counted, shared_count);
  if (threadIdx.x == 0) {
    *loss_sum = sum;
    *count = counted;
  }
}

}  // namespace

CrossEntropySums cross_entropy(float* dlogits, const float* logits, const int32_t* targets, int64_t rows,
                               int64_t vocab, float grad_scale) {
  CrossEntropySums result;
  if (rows == 0) return result;
  // (N) per-row losses, then the loss sum and the count
  const size_t bytes = static_cast<size_t>(rows) * sizeof(double) + sizeof(double) + sizeof(long long);
  char* scratch = nullptr;
  RACE_CUDA_CHECK(cudaMalloc(&scratch, bytes));
  auto* losses = reinterpret_cast<double*>(scratch);
  auto* loss_sum = losses + rows;
  auto* count = reinterpret_cast<long long*>(loss_sum + 1);
  try {
    row_kernel<<<static_cast<unsigned>(rows), kThreads>>>(losses, dlogits, logits, targets, vocab, grad_scale);
    RACE_CUDA_CHECK(cudaGetLastError());
    sum_kernel<<<1, kSumThreads>>>(loss_sum, count, losses, targets, rows);
    RACE_CUDA_CHECK(cudaGetLastError());
    long long counted = 0;
    RACE_CUDA_CHECK(cudaMemcpy(&result.loss_sum, loss_sum, sizeof(double), cudaMemcpyDeviceToHost));
    RACE_CUDA_CHECK(cudaMemcpy(&counted, count, sizeof(long long), cudaMemcpyDeviceToHost));
    result.count = counted;
  } catch (...) {
    cudaFree(scratch);
    throw;
  }
  RACE_CUDA_CHECK(cudaFree(scratch));
  return result;
}

}  // namespace race::kernels::cuda
