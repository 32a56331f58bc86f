// Host tensors to and from the GPU for the CUDA attention tests (test_race_attention_cuda.cpp,
// test_softmax_attention_cuda.cpp), in the tensors' precision, and whether there is a GPU to run them on.
// Only for builds with the CUDA toolkit (RACE_HAVE_CUDA).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/device_info.h"
#include "kernels/cuda/device_memory.h"

namespace race::test {

// Whether a CUDA device is usable; if not, *why says why.
inline bool have_cuda_device(std::string* why) {
  const auto query = kernels::cuda::query_devices();
  if (query.devices.empty()) *why = query.unavailable_reason;
  return !query.devices.empty();
}

// A host tensor on the device as `dtype` (fp32 as is, bf16 rounded).
inline std::unique_ptr<kernels::cuda::DeviceBuffer> upload(const std::vector<float>& x,
                                                           kernels::cuda::DType dtype) {
  using kernels::cuda::DeviceBuffer;
  if (dtype == kernels::cuda::DType::bf16) {
    const auto h = kernels::cuda::to_bf16(x);
    auto buf = std::make_unique<DeviceBuffer>(static_cast<int64_t>(h.size() * 2));
    buf->upload(h.data(), buf->bytes());
    return buf;
  }
  auto buf = std::make_unique<DeviceBuffer>(static_cast<int64_t>(x.size() * 4));
  buf->upload(x.data(), buf->bytes());
  return buf;
}

// Elements of any type, byte for byte (planes, temperatures, masks, segment ids).
template <class E>
std::unique_ptr<kernels::cuda::DeviceBuffer> upload_raw(const std::vector<E>& x) {
  auto buf = std::make_unique<kernels::cuda::DeviceBuffer>(static_cast<int64_t>(x.size() * sizeof(E)));
  if (!x.empty()) buf->upload(x.data(), buf->bytes());
  return buf;
}

// n elements of `dtype` back to the host as floats.
inline std::vector<float> download(const kernels::cuda::DeviceBuffer& buf, int64_t n, kernels::cuda::DType dtype) {
  if (dtype == kernels::cuda::DType::bf16) {
    std::vector<uint16_t> h(static_cast<size_t>(n));
    buf.download(h.data(), n * 2);
    return kernels::cuda::from_bf16(h);
  }
  std::vector<float> h(static_cast<size_t>(n));
  buf.download(h.data(), n * 4);
  return h;
}

}  // namespace race::test
