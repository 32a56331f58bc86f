// RACE_HD: the specifiers of the functions that race_tile.h, warp_mma.h and the block programs write once for the
// device and the host (__host__ __device__ under nvcc, plain inline for the host compiler).
#pragma once

#if defined(__CUDACC__)
#define RACE_HD __host__ __device__ __forceinline__
#else
#define RACE_HD inline
#endif
