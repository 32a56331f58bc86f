// What the block programs (race_span.h, softmax_flash.h) need from CUDA, for the .cu files that launch
// them: CudaBlock, a thread block as their Block (lanes are threads, sync is __syncthreads), and the bf16
// loads and stores of race_tile.h's Element. The host tests supply their own Block instead.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/race_tile.h"

namespace race::kernels::cuda {

namespace tile {
template <>
struct Element<__nv_bfloat16> {
  RACE_HD static float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
  RACE_HD static void store(__nv_bfloat16* p, float x) { *p = __float2bfloat16(x); }
};
}  // namespace tile

// The programs are __host__ __device__, so nvcc's host pass compiles these members too; there they are
// never called.
template <int kLanes>
struct CudaBlock {
  __host__ __device__ int lane() const {
#ifdef __CUDA_ARCH__
    return static_cast<int>(threadIdx.x);
#else
    return 0;
#endif
  }
  __host__ __device__ int lanes() const { return kLanes; }
  __host__ __device__ void sync() const {
#ifdef __CUDA_ARCH__
    __syncthreads();
#endif
  }
};

}  // namespace race::kernels::cuda
