// Per-call scratch memory for CUDA kernels, from the stream-ordered pool (cudaMallocAsync): taking and
// returning it neither synchronises the device nor goes to the driver once the pool holds enough, which a
// cudaMalloc/cudaFree pair per call (a loss block, a gradient norm, an index check) would, many times a
// step. CudaOps raises the pool's release threshold so the memory stays in the pool between steps.
// For .cu files only (needs cuda_runtime.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace race::kernels::cuda {

// `bytes` of device memory, returned to the pool when the scope ends (also on an exception); none for 0.
class StreamScratch {
 public:
  explicit StreamScratch(int64_t bytes, cudaStream_t stream = nullptr) : stream_(stream) {
    if (bytes > 0) RACE_CUDA_CHECK(cudaMallocAsync(&data_, static_cast<size_t>(bytes), stream));
  }
  ~StreamScratch() {
    if (data_ != nullptr) cudaFreeAsync(data_, stream_);
  }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  char* data() const { return static_cast<char*>(data_); }

 private:
  void* data_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace race::kernels::cuda
