// Cross-entropy on CUDA: one block per row running block_programs.h's cross_entropy_row (row max, fp64 sum of
// exp, loss, gradient written in place of the logits if asked), per-row losses in fp64 scratch, then one
// block adds them by a fixed tree. The row kernel is instantiated for an fp32 and a bf16 dlogits.
#include "kernels/cuda/cross_entropy_cuda.h"

#include <cuda_bf16.h>

#include "kernels/cuda/block_programs.h"
#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/stream_scratch.h"
#include "kernels/cuda/launch.h"

namespace race::kernels::cuda {
namespace {

constexpr int32_t kIgnoreTarget = -1;

// losses (N) fp64: loss_n, 0 for ignored rows.
template <class G>
__global__ void row_kernel(double* losses, G* dlogits, const float* logits, const int32_t* targets,
                           int64_t vocab, float grad_scale) {
  __shared__ double shared[kThreads];
  const int64_t row = blockIdx.x;
  const double loss = programs::cross_entropy_row(CudaBlock<kThreads>{}, shared,
                                                  dlogits != nullptr ? dlogits + row * vocab : nullptr,
                                                  logits + row * vocab, targets[row], vocab, grad_scale);
  if (threadIdx.x == 0) losses[row] = loss;
}

constexpr int kSumThreads = 1024;

// One block: thread j adds rows j, j + 1024, ... in order, then a fixed tree (counts are exact in fp64).
__global__ void sum_kernel(double* loss_sum, long long* count, const double* losses, const int32_t* targets,
                           int64_t rows) {
  __shared__ double shared[kSumThreads];
  double sum = 0.0, counted = 0.0;
  for (int64_t i = threadIdx.x; i < rows; i += kSumThreads) {
    sum += losses[i];
    counted += targets[i] != kIgnoreTarget ? 1.0 : 0.0;
  }
  const CudaBlock<kSumThreads> block;
  sum = programs::block_sum(block, sum, shared);
  counted = programs::block_sum(block, counted, shared);
  if (threadIdx.x == 0) {
    *loss_sum = sum;
    *count = static_cast<long long>(counted);
  }
}

}  // namespace

CrossEntropySums cross_entropy(void* dlogits, DType dlogits_type, const float* logits, const int32_t* targets,
                               int64_t rows, int64_t vocab, float grad_scale) {
  CrossEntropySums result;
  if (rows == 0) return result;
  // (N) per-row losses, then the loss sum and the count
  const size_t bytes = static_cast<size_t>(rows) * sizeof(double) + sizeof(double) + sizeof(long long);
  const StreamScratch scratch(static_cast<int64_t>(bytes));
  auto* losses = reinterpret_cast<double*>(scratch.data());
  auto* loss_sum = losses + rows;
  auto* count = reinterpret_cast<long long*>(loss_sum + 1);
  const auto blocks = static_cast<unsigned>(rows);
  if (dlogits_type == DType::bf16)
    row_kernel<<<blocks, kThreads>>>(losses, static_cast<__nv_bfloat16*>(dlogits), logits, targets, vocab,
                                     grad_scale);
  else
    row_kernel<<<blocks, kThreads>>>(losses, static_cast<float*>(dlogits), logits, targets, vocab, grad_scale);
  RACE_CUDA_CHECK(cudaGetLastError());
  sum_kernel<<<1, kSumThreads>>>(loss_sum, count, losses, targets, rows);
  RACE_CUDA_CHECK(cudaGetLastError());
  long long counted = 0;
  RACE_CUDA_CHECK(cudaMemcpy(&result.loss_sum, loss_sum, sizeof(double), cudaMemcpyDeviceToHost));
  RACE_CUDA_CHECK(cudaMemcpy(&counted, count, sizeof(long long), cudaMemcpyDeviceToHost));
  result.count = counted;
  return result;
}

}  // namespace race::kernels::cuda
