// The range check of index_check_cuda.h: one grid-stride pass, the smallest bad position by integer atomicMin.
#include "kernels/cuda/index_check_cuda.h"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/stream_scratch.h"
#include "kernels/cuda/launch.h"

namespace race::kernels::cuda {
namespace {

__global__ void check_kernel(unsigned long long* first, const int32_t* values, int64_t n, int32_t lo, int32_t hi,
                             int32_t allowed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int32_t v = values[i];
    if ((v < lo || v >= hi) && v != allowed) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

}  // namespace

InvalidIndex first_invalid_index(const int32_t* values, int64_t n, int32_t lo, int32_t hi, int32_t allowed) {
  InvalidIndex result;
  if (n <= 0) return result;
  const StreamScratch scratch(sizeof(unsigned long long));
  auto* first = reinterpret_cast<unsigned long long*>(scratch.data());
  const unsigned long long none = ~0ULL;
  RACE_CUDA_CHECK(cudaMemcpy(first, &none, sizeof(none), cudaMemcpyHostToDevice));
  check_kernel<<<grid_for(n), kThreads>>>(first, values, n, lo, hi, allowed);
  RACE_CUDA_CHECK(cudaGetLastError());
  unsigned long long found = none;
  RACE_CUDA_CHECK(cudaMemcpy(&found, first, sizeof(found), cudaMemcpyDeviceToHost));
  if (found != none) {
    result.position = static_cast<int64_t>(found);
    RACE_CUDA_CHECK(cudaMemcpy(&result.value, values + found, sizeof(int32_t), cudaMemcpyDeviceToHost));
  }
  return result;
}

}  // namespace race::kernels::cuda
