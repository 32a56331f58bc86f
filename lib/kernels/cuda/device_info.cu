// Enumerates CUDA devices through the runtime API; a missing driver or device is reported, not thrown.
#include <cuda_runtime.h>

#include "kernels/cuda/device_info.h"

namespace race::kernels::cuda {

DeviceQuery query_devices() {
  DeviceQuery query;
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    query.unavailable_reason = cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return query;
  }
  if (count == 0) query.unavailable_reason = "no CUDA device found";
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    int memory_clock_khz = 0, bus_width_bits = 0, sm_clock_khz = 0;
    cudaDeviceGetAttribute(&memory_clock_khz, cudaDevAttrMemoryClockRate, i);
    cudaDeviceGetAttribute(&bus_width_bits, cudaDevAttrGlobalMemoryBusWidth, i);
    cudaDeviceGetAttribute(&sm_clock_khz, cudaDevAttrClockRate, i);
    DeviceInfo info;
    info.index = i;
    info.name = prop.name;
    info.compute_major = prop.major;
    info.compute_minor = prop.minor;
    info.multiprocessors = prop.multiProcessorCount;
    info.sm_clock_khz = sm_clock_khz;
    info.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
    static const char kHex[] = "0123456789abcdef";
    for (const char byte : prop.uuid.bytes) {
      info.uuid += kHex[(static_cast<unsigned char>(byte) >> 4) & 15];
      info.uuid += kHex[static_cast<unsigned char>(byte) & 15];
    }
    // double data rate: two transfers per clock
    info.memory_bandwidth_gbs = 2.0 * memory_clock_khz * 1e3 * (bus_width_bits / 8.0) / 1e9;
    query.devices.push_back(info);
  }
  return query;
}

}  // namespace race::kernels::cuda
