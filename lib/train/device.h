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
  int64_t total_bytes = 0;   // CPU: physical memory; CUDA: the device's memory
  int cuda_index = -1;       // CUDA: the device this process uses (its CUDA ordinal)
  std::string gpu_uuid;      // CUDA: the physical GPU, however CUDA_VISIBLE_DEVICES numbers it
  // model::ModelSpec::logits_block_bytes suited to the device: a CPU's cache, or matrix products large
  // enough to fill a GPU.
  int64_t logits_block_bytes = int64_t{4} << 20;
  // The precision of the linear layers' matrix products: "fp32", or "bf16" (CUDA: operands stored in bf16 and
  // multiplied on the tensor cores with fp32 sums; the master parameters, their gradients, the optimizer
  // state and every activation a product does not read stay fp32).
  std::string precision = "fp32";

  // The share of memory a memory plan may take: a tenth of a GPU's stays for the kernels' per-call scratch
  // and the libraries, a fifth of the host's for everything else running on it.
  double budget_fraction() const { return kind == DeviceKind::cuda ? 0.9 : 0.8; }
  // The bytes one of `sharing` processes on this memory may plan for. One process on a GPU takes its share
  // of what was free when it opened the device; processes sharing one take their share of its total, since
  // each measured the free memory at a different moment of the others' allocations.
  double budget_bytes(int sharing) const {
    const auto base = kind == DeviceKind::cuda && sharing == 1 ? memory_bytes : total_bytes;
    return budget_fraction() * static_cast<double>(base) / sharing;
  }
  // What budget_bytes(sharing) is, for messages: "90% of the GPU's free memory", "80% of this machine's
  // memory, split over the 2 processes that share it".
  std::string budget_description(int sharing) const;
};

// Whether this build has the CUDA backend (the CUDA toolkit was found when it was configured).
bool cuda_backend_built();

// `name` is "cpu" or "cuda"; `source` says where it came from ("run.device", "--device") for the errors.
// CUDA: the process with node-local rank r takes device r mod (visible devices), so one process per GPU
// when there are enough. `precision` is "auto" (bf16 on CUDA, fp32 on the CPU), "fp32" or "bf16" (CUDA
// only), named `precision_source` in errors. race::Error, naming the source and the value, for an unknown
// name or precision, bf16 on the CPU, a build without CUDA, or a machine without a usable GPU.
ComputeDevice open_device(std::string_view name, std::string_view source, int local_rank = 0,
                          std::string_view precision = "auto", std::string_view precision_source = "--precision");

}  // namespace race::train
