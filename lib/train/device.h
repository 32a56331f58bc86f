// The device a run computes on: `run.device` in a race-train config, `--device` on race-train and race-eval.
// Opens the model::Ops for it and tells the memory plan how much memory it has. This is the one place in
// lib/train that knows a CUDA backend exists; the model and the loop see only model::Ops.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "model/ops.h"

namespace race::train {

enum class DeviceKind { cpu, cuda };

struct ComputeDevice {
  DeviceKind kind = DeviceKind::cpu;
  std::unique_ptr<model::Ops> ops;
  std::string description;   // for the log: "CPU" or "CUDA device 0 of 1 (NVIDIA H200, 140.4 GB)"
  int64_t memory_bytes = 0;  // CPU: physical memory; CUDA: the device's free memory when it was opened
  int cuda_index = -1;       // CUDA: the device this process uses
  int cuda_count = 0;        // CUDA: devices visible to this process
  // model::ModelSpec::logits_block_bytes suited to the device: a CPU's cache, or matrix products large
  // enough to fill a GPU.
  int64_t logits_block_bytes = int64_t{4} << 20;

  // The share of memory_bytes a memory plan may take: a tenth of a GPU's free memory stays for the kernels'
  // per-call scratch and the libraries, a fifth of the host's for everything else running on it.
  double budget_fraction() const { return kind == DeviceKind::cuda ? 0.9 : 0.8; }
};

// Whether this build has the CUDA backend (the CUDA toolkit was found when it was configured).
bool cuda_backend_built();

// `name` is "cpu" or "cuda"; `source` says where it came from ("run.device", "--device") for the errors.
// CUDA: the process with node-local rank r takes device r mod (visible devices), so one process per GPU
// when there are enough. race::Error, naming `source` and the value, for an unknown name, a build without
// CUDA, or a machine without a usable GPU.
ComputeDevice open_device(std::string_view name, std::string_view source, int local_rank = 0);

}  // namespace race::train
