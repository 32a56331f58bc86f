// RACE_CUDA_CHECK(call): throws std::runtime_error naming file:line, the call, the CUDA error and a hint
// when a CUDA runtime call fails. For .cu files only (needs cuda_runtime.h).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace race::kernels::cuda {

inline const char* cuda_error_hint(cudaError_t status) {
  switch (status) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return "no usable GPU or driver: check nvidia-smi";
    case cudaErrorMemoryAllocation:
      return "out of device memory: reduce B, H or T";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
      return "this build has no code for this GPU: add its compute capability to RACE_CUDA_ARCHITECTURES";
    default:
      return "rerun under compute-sanitizer to locate the failing access";
  }
}

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so the caller can carry on after catching
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call + " failed: " +
                           cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
                           "); hint: " + cuda_error_hint(status));
}

}  // namespace race::kernels::cuda

#define RACE_CUDA_CHECK(call) ::race::kernels::cuda::check_cuda((call), #call, __FILE__, __LINE__)
