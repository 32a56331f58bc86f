// AdamW and the gradient norm on CUDA: a grid-stride elementwise update, and a two-pass fixed-shape reduction.
#include "kernels/cuda/adamw_cuda.h"

#include <algorithm>
#include <cmath>
#include <utility>

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
    for (int64_t i = r.offset + begin + threadIdx.x; i < r.offset + end; i += blockDim.x) {
      math::adamw_update(params[i], m[i], v[i], grads[i], c);
      if (r.copy == nullptr) continue;
      if (r.copy_dtype == DType::bf16)
        static_cast<__nv_bfloat16*>(r.copy)[i - r.offset] = __float2bfloat16(params[i]);
      else
        static_cast<float*>(r.copy)[i - r.offset] = params[i];
    }
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

AdamWTable::~AdamWTable() {
  // Errors are ignored: a destructor cannot throw, and a failed free after a fault changes nothing.
  if (device_ != nullptr) cudaFree(device_);
}

void AdamWTable::adamw(float* params, const float* grads, float* m, float* v,
                       const std::vector<AdamWRange>& ranges, const math::AdamWConstants& constants) {
  const auto same = [](const AdamWRange& a, const AdamWRange& b) {
    return a.offset == b.offset && a.count == b.count && a.decay == b.decay && a.copy == b.copy &&
           a.copy_dtype == b.copy_dtype;
  };
  if (ranges.size() != ranges_.size() || !std::equal(ranges.begin(), ranges.end(), ranges_.begin(), same)) {
    std::vector<AdamWRange> numbered = ranges;
    const int64_t chunks = number_adamw_chunks(numbered);
    AdamWRange* device = nullptr;
    if (!numbered.empty()) {
      const size_t bytes = numbered.size() * sizeof(AdamWRange);
      RACE_CUDA_CHECK(cudaMalloc(&device, bytes));
      // cudaMemcpy from pageable memory and cudaFree both wait for queued work, so no queued update reads
      // a table after it is freed.
      const cudaError_t copied = cudaMemcpy(device, numbered.data(), bytes, cudaMemcpyHostToDevice);
      if (copied != cudaSuccess) cudaFree(device);
      RACE_CUDA_CHECK(copied);
    }
    if (device_ != nullptr) cudaFree(device_);
    device_ = device;
    ranges_ = std::move(numbered);
    chunks_ = chunks;
  }
  if (chunks_ == 0) return;
  const auto blocks = static_cast<unsigned>(chunks_ < kMaxBlocks ? chunks_ : kMaxBlocks);
  adamw_kernel<<<blocks, kThreads>>>(params, grads, m, v, device_, static_cast<int64_t>(ranges_.size()), chunks_,
                                     constants);
  RACE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace race::kernels::cuda
