// DeviceTimer: a pair of CUDA events on the default stream.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_timer.h"

namespace race::kernels::cuda {

DeviceTimer::DeviceTimer() {
  cudaEvent_t a = nullptr, b = nullptr;
  RACE_CUDA_CHECK(cudaEventCreate(&a));
  RACE_CUDA_CHECK(cudaEventCreate(&b));
  start_ = a;
  stop_ = b;
}

DeviceTimer::~DeviceTimer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}

void DeviceTimer::start() { RACE_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(start_), nullptr)); }

double DeviceTimer::stop() {
  RACE_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(stop_), nullptr));
  RACE_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)));
  float ms = 0.f;
  RACE_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)));
  return ms * 1e-3;
}

}  // namespace race::kernels::cuda
