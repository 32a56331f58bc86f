// DeviceBuffer and the host-side bf16 conversions of device_memory.h.
#include <cuda_runtime.h>

#include <cstring>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"

namespace race::kernels::cuda {

DeviceBuffer::DeviceBuffer(int64_t bytes) : bytes_(bytes) {
  RACE_CUDA_CHECK(cudaMalloc(&data_, static_cast<size_t>(bytes > 0 ? bytes : 1)));
}

DeviceBuffer::~DeviceBuffer() { cudaFree(data_); }

void DeviceBuffer::upload(const void* host, int64_t bytes) {
  if (bytes > bytes_) throw std::invalid_argument("DeviceBuffer::upload: more bytes than the buffer holds");
  RACE_CUDA_CHECK(cudaMemcpy(data_, host, static_cast<size_t>(bytes), cudaMemcpyHostToDevice));
}

void DeviceBuffer::download(void* host, int64_t bytes) const {
  if (bytes > bytes_) throw std::invalid_argument("DeviceBuffer::download: more bytes than the buffer holds");
  RACE_CUDA_CHECK(cudaMemcpy(host, data_, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost));
}

void DeviceBuffer::fill_nan() { RACE_CUDA_CHECK(cudaMemset(data_, 0xFF, static_cast<size_t>(bytes_))); }

void synchronize_device() { RACE_CUDA_CHECK(cudaDeviceSynchronize()); }

std::vector<uint16_t> to_bf16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    uint32_t bits = 0;
    std::memcpy(&bits, &x[i], sizeof bits);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
      out[i] = static_cast<uint16_t>((bits >> 16) | 0x40u);  // NaN stays a (quiet) NaN
      continue;
    }
    bits += 0x7FFFu + ((bits >> 16) & 1u);  // round to nearest, ties to even
    out[i] = static_cast<uint16_t>(bits >> 16);
  }
  return out;
}

std::vector<float> from_bf16(const std::vector<uint16_t>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const uint32_t bits = uint32_t{x[i]} << 16;
    std::memcpy(&out[i], &bits, sizeof bits);
  }
  return out;
}

}  // namespace race::kernels::cuda
