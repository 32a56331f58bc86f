// Times work on the default CUDA stream with CUDA events (the GPU's own clock, not the host's), for
// race-bench. Declared without CUDA headers; defined in device_timer.cu.
#pragma once

namespace race::kernels::cuda {

class DeviceTimer {
 public:
  DeviceTimer();
  ~DeviceTimer();
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;

  void start();     // records the start event on the default stream
  double stop();    // records the stop event, waits for it, returns the seconds between the two

 private:
  void* start_ = nullptr;  // cudaEvent_t
  void* stop_ = nullptr;
};

}  // namespace race::kernels::cuda
