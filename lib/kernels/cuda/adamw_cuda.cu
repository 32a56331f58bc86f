// AdamW and the gradient norm on CUDA: a grid-stride elementwise update, and a two-pass fixed-shape reduction.
#include "kernels/cuda/adamw_cuda.h"

#include <cmath>

#include "kernels/cuda/block_programs.h"
#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/stream_scratch.h"
#include "kernels/cuda/launch.h"

namespace race::kernels::cuda {
namespace {

constexpr int kNormBlocks = 512;  // fixed, whatever n: the partial sums and their order do not change

__global__ void square_sum_kernel(double* partial, const float* grads, int64_t n) {
  __shared__ double shared[kThreads];
  double sum = 0.0;
  const int64_t stride = static_cast<int64_t>(kNormBlocks) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride)
    sum += static_cast<double>(grads[i]) * static_cast<double>(grads[i]);
  sum = programs::block_sum(CudaBlock<kThreads>{}, sum, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

__global__ void partial_sum_kernel(double* total, const double* partial) {
  __shared__ double shared[kNormBlocks];
  const double sum = programs::block_sum(CudaBlock<kNormBlocks>{}, partial[threadIdx.x], shared);
  if (threadIdx.x == 0) *total = sum;
}

// Each block walks chunks blockIdx.x, + gridDim.x, ...; a chunk's range comes from a binary search.
__global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, const AdamWRange* ranges,
                             int64_t range_count, int64_t chunks, math::AdamWConstants constants) {
  for (int64_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
    const AdamWRange r = ranges[adamw_range_of_chunk(ranges, range_count, chunk)];
    math::AdamWConstants c = constants;
    if (r.decay == 0) c.lr_wd = 0.f;
    const int64_t begin = (chunk - r.first_chunk) * kAdamWChunk;
    const int64_t end = begin + kAdamWChunk < r.count ? begin + kAdamWChunk : r.count;
    for (int64_t i = r.offset + begin + threadIdx.x; i < r.offset + end; i += blockDim.x)
      math::adamw_update(params[i], m[i], v[i], grads[i], c);
  }
}

}  // namespace

double grad_norm(const float* grads, int64_t n) {
  if (n <= 0) return 0.0;
  const StreamScratch scratch((kNormBlocks + 1) * static_cast<int64_t>(sizeof(double)));
  auto* partial = reinterpret_cast<double*>(scratch.data());  // (kNormBlocks) then the total
  double total = 0.0;
  square_sum_kernel<<<kNormBlocks, kThreads>>>(partial, grads, n);
  RACE_CUDA_CHECK(cudaGetLastError());
  partial_sum_kernel<<<1, kNormBlocks>>>(partial + kNormBlocks, partial);
  RACE_CUDA_CHECK(cudaGetLastError());
  RACE_CUDA_CHECK(cudaMemcpy(&total, partial + kNormBlocks, sizeof(double), cudaMemcpyDeviceToHost));
  return std::sqrt(total);
}

void adamw(float* params, const float* grads, float* m, float* v, std::vector<AdamWRange> ranges,
           const math::AdamWConstants& constants) {
  const int64_t chunks = number_adamw_chunks(ranges);
  if (chunks == 0) return;
  const int64_t table_bytes = static_cast<int64_t>(ranges.size() * sizeof(AdamWRange));
  const StreamScratch table(table_bytes);  // (ranges)
  // From pageable memory the copy returns once the table is staged, so `ranges` may go right after.
  RACE_CUDA_CHECK(cudaMemcpyAsync(table.data(), ranges.data(), static_cast<size_t>(table_bytes),
                                  cudaMemcpyHostToDevice));
  const unsigned blocks = static_cast<unsigned>(chunks < 65536 ? chunks : 65536);
  adamw_kernel<<<blocks, kThreads>>>(params, grads, m, v, reinterpret_cast<const AdamWRange*>(table.data()),
                                     static_cast<int64_t>(ranges.size()), chunks, constants);
  RACE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace race::kernels::cuda
