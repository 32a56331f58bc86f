// Opening the run's device: CpuOps always, CudaOps when this build has the CUDA backend and the machine a
// GPU.
#include "train/device.h"

#include <unistd.h>

#include "core/error.h"
#include "model/cpu_ops.h"
#if RACE_HAVE_CUDA
#include "kernels/cuda/device_info.h"
#include "model/cuda_ops.h"
#endif

namespace race::train {

bool cuda_backend_built() {
#if RACE_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

namespace {

ComputeDevice open_cpu() {
  ComputeDevice device;
  device.kind = DeviceKind::cpu;
  device.ops = std::make_unique<model::CpuOps>();
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) fail("cannot read the amount of physical memory (sysconf)");
  device.memory_bytes = static_cast<int64_t>(pages) * static_cast<int64_t>(page_size);
  device.total_bytes = device.memory_bytes;
  device.description =
      fmt::format("CPU ({:.1f} GB of memory)", static_cast<double>(device.memory_bytes) / 1e9);
  return device;
}

ComputeDevice open_cuda([[maybe_unused]] std::string_view source, [[maybe_unused]] int local_rank,
                        [[maybe_unused]] bool bf16) {
#if RACE_HAVE_CUDA
  const kernels::cuda::DeviceQuery query = kernels::cuda::query_devices();
  if (query.devices.empty())
    fail(
        "{} = \"cuda\": no usable CUDA device ({}); check nvidia-smi and CUDA_VISIBLE_DEVICES, or use "
        "\"cpu\"",
        source, query.unavailable_reason);
  ComputeDevice device;
  device.kind = DeviceKind::cuda;
  device.logits_block_bytes = int64_t{256} << 20;
  const int count = static_cast<int>(query.devices.size());
  // The ordinal CUDA gives the device, not its position in the list (a device that failed to answer the
  // query is left out of it).
  const kernels::cuda::DeviceInfo& info = query.devices[static_cast<size_t>(local_rank % count)];
  device.cuda_index = info.index;
  auto ops = std::make_unique<model::CudaOps>(
      device.cuda_index, bf16 ? kernels::cuda::GemmPrecision::bf16 : kernels::cuda::GemmPrecision::fp32);
  device.precision = bf16 ? "bf16" : "fp32";
  device.memory_bytes = ops->free_device_bytes();
  device.total_bytes = info.memory_bytes;
  device.gpu_uuid = info.uuid;
  device.description = fmt::format(
      "CUDA device {} of {} ({}, compute capability {}.{}, {:.1f} GB free of {:.1f} GB), {} matrix products",
      device.cuda_index, count, info.name, info.compute_major, info.compute_minor,
      static_cast<double>(device.memory_bytes) / 1e9, static_cast<double>(info.memory_bytes) / 1e9,
      device.precision);
  device.ops = std::move(ops);
  return device;
#else
  fail(
      "{} = \"cuda\": this build of race has no CUDA backend (CMake found no CUDA toolkit when it was "
      "configured); install the CUDA toolkit and rebuild, or use \"cpu\"",
      source);
#endif
}

}  // namespace

std::string ComputeDevice::budget_description(int sharing) const {
  const char* memory = kind == DeviceKind::cpu ? "this machine's memory"
                       : sharing == 1         ? "the GPU's free memory"
                                              : "the GPU's memory";
  return fmt::format("{:.0f}% of {}{}", budget_fraction() * 100.0, memory,
                     sharing > 1 ? fmt::format(", split over the {} processes that share it", sharing) : "");
}

ComputeDevice open_device(std::string_view name, std::string_view source, int local_rank,
                          std::string_view precision, std::string_view precision_source) {
  if (precision != "auto" && precision != "fp32" && precision != "bf16")
    fail("{} = \"{}\": expected \"auto\", \"fp32\" or \"bf16\"", precision_source, precision);
  if (name == "cpu") {
    if (precision == "bf16")
      fail("{} = \"bf16\" needs the CUDA device: the CPU backend computes in fp32; use \"fp32\" or \"auto\", "
           "or {} = \"cuda\"",
           precision_source, source);
    return open_cpu();
  }
  if (name == "cuda") return open_cuda(source, local_rank, precision != "fp32");
  fail("{} = \"{}\": expected \"cpu\" or \"cuda\"", source, name);
}

}  // namespace race::train
