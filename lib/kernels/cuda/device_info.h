// CUDA devices visible to this process: what the CUDA backend and race-bench report, and what CUDA
// tests use to skip (not fail) on machines without a GPU. Declared without CUDA headers so host-only
// code can include it; defined in device_info.cu, built only when the CUDA toolkit is found.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace race::kernels::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0, compute_minor = 0;
  int multiprocessors = 0;
  int sm_clock_khz = 0;  // peak SM clock (0: not reported): with the SM count, the FP32 CUDA-core peak
  int64_t memory_bytes = 0;
  std::string uuid;  // hex of cudaDeviceProp::uuid: tells processes whether they share one physical GPU
  double memory_bandwidth_gbs = 0.0;  // from memory clock and bus width: the roofline for RACE kernels
};

struct DeviceQuery {
  std::vector<DeviceInfo> devices;
  std::string unavailable_reason;  // why there are none (no driver, no device), empty otherwise
};

DeviceQuery query_devices();

}  // namespace race::kernels::cuda
