// DeviceBuffer and the host-side bf16 conversions of device_memory.h.
#include <cuda_bf16.h>
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

namespace {

// splitmix64: a well-mixed 64-bit hash of the counter.
__device__ uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Box-Muller on two 24-bit uniforms in (0, 1) from one hash.
__device__ float normal_at(uint64_t seed, int64_t i) {
  const uint64_t h = mix(seed ^ mix(static_cast<uint64_t>(i)));
  const float u1 = (static_cast<float>(h >> 40) + 0.5f) * (1.f / 16777216.f);
  const float u2 = (static_cast<float>((h >> 16) & 0xFFFFFFu) + 0.5f) * (1.f / 16777216.f);
  return sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
}

template <class T>
__global__ void fill_normal_kernel(T* out, int64_t count, uint64_t seed, float sigma) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count; i += stride) {
    const float x = sigma * normal_at(seed, i);
    if constexpr (sizeof(T) == 2)
      out[i] = __float2bfloat16(x);
    else
      out[i] = x;
  }
}

}  // namespace

void fill_normal(DeviceBuffer& buffer, int64_t count, bool bf16, uint64_t seed, float sigma) {
  if (count * (bf16 ? 2 : 4) > buffer.bytes())
    throw std::invalid_argument("fill_normal: more elements than the buffer holds");
  constexpr int kThreads = 256;
  const unsigned blocks = static_cast<unsigned>(count / kThreads + 1 < 65536 ? count / kThreads + 1 : 65536);
  if (bf16)
    fill_normal_kernel<<<blocks, kThreads>>>(static_cast<__nv_bfloat16*>(buffer.data()), count, seed, sigma);
  else
    fill_normal_kernel<<<blocks, kThreads>>>(static_cast<float*>(buffer.data()), count, seed, sigma);
  RACE_CUDA_CHECK(cudaGetLastError());
}

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
