// Device memory for host code that does not include CUDA headers (tests, race-bench): an owning buffer with
// copies to and from the host, a device-side random fill, and bf16 <-> fp32 conversion on the host (round to nearest even, as the
// device's __float2bfloat16 does). Defined in device_memory.cu.
#pragma once

#include <cstdint>
#include <vector>

namespace race::kernels::cuda {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(int64_t bytes);  // throws std::runtime_error (file:line, hint) when it cannot allocate
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }
  void upload(const void* host, int64_t bytes);  // the first `bytes` bytes; synchronous
  void download(void* host, int64_t bytes) const;
  void fill_nan();  // every fp32 or bf16 element becomes a NaN (0xFF bytes), so unwritten outputs show

 private:
  void* data_ = nullptr;
  int64_t bytes_ = 0;
};

// Fills the first `count` elements (fp32, or bf16 when bf16) with N(0, sigma^2) draws made on the device
// from a counter-based hash of (seed, index): the same numbers for the same seed on every GPU, and no
// host-side copy, so race-bench can fill tensors of billions of elements in milliseconds.
void fill_normal(DeviceBuffer& buffer, int64_t count, bool bf16, uint64_t seed, float sigma);

// Waits for all work on the device, turning an asynchronous kernel fault into an exception.
void synchronize_device();

std::vector<uint16_t> to_bf16(const std::vector<float>& x);
std::vector<float> from_bf16(const std::vector<uint16_t>& x);

}  // namespace race::kernels::cuda
