// What the block programs (race_span.h, softmax_flash.h) need from CUDA, for the .cu files that launch
// them: CudaBlock, a thread block as their Block (lanes are threads, sync is __syncthreads, and each warp runs
// the tensor-core instruction of warp_mma.h's tile products), and the bf16 loads and stores of race_tile.h's
// Element. The host tests supply their own Block instead (tests/host_block.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/race_tile.h"

namespace race::kernels::cuda {

namespace tile {
template <>
struct Element<__nv_bfloat16> {
  RACE_HD static float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
  RACE_HD static void store(__nv_bfloat16* p, float x) { *p = __float2bfloat16(x); }
};
}  // namespace tile

// mma.sync with .tf32 operands (warp_mma.h) needs sm_80 or newer; the build compiles for 80 and 90a.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "the CUDA kernels need sm_80 or newer (tensor-core tf32 mma.sync); set RACE_CUDA_ARCHITECTURES"
#endif

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
  __host__ __device__ int warp() const { return lane() / 32; }
  __host__ __device__ int warps() const {
    static_assert(kLanes % 32 == 0, "the tensor-core products split a block into whole warps");
    return kLanes / 32;
  }
  __host__ __device__ int warp_lane() const { return lane() % 32; }
  // d (this lane's c0..c3) += A B for one 16 x 8 x 8 tile, operands as tf32 bit patterns in this lane's
  // fragment registers (layout: warp_mma.h). All 32 lanes of the warp must call it together.
  __host__ __device__ void mma_tf32(float d[4], const uint32_t a[4], const uint32_t b[2]) const {
#ifdef __CUDA_ARCH__
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    (void)d, (void)a, (void)b;
#endif
  }
};

}  // namespace race::kernels::cuda
