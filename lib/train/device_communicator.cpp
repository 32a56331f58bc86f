// The choice of gradient communicator for device memory (device_communicator.h).
#include "train/device_communicator.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/staged_communicator.h"
#if RACE_HAVE_NCCL
#include "train/nccl_api.h"
#include "train/nccl_communicator.h"
#endif

namespace race::train {

int ranks_sharing_gpu(Communicator& host, const std::string& gpu_uuid) {
  // 48 bits of the identity's hash per rank: exact in a double, and a collision between two GPUs of one
  // job is a 1 in 2^48 chance.
  const uint64_t mine = checksum(std::as_bytes(std::span<const char>(gpu_uuid))) >> 16;
  std::vector<double> identities(static_cast<size_t>(host.world_size()), 0.0);
  identities[static_cast<size_t>(host.rank())] = static_cast<double>(mine);
  host.sum(identities);
  return static_cast<int>(std::count(identities.begin(), identities.end(), static_cast<double>(mine)));
}

std::unique_ptr<Communicator> device_gradient_communicator(Communicator& host, model::Ops& ops,
                                                           bool cuda_device,
                                                           [[maybe_unused]] int cuda_device_index,
                                                           int ranks_on_gpu, [[maybe_unused]] double timeout_s) {
  if (host.world_size() == 1 || !cuda_device) return nullptr;
  const bool own_gpu = ranks_on_gpu == 1;
  // Whether NCCL can run here: built in, and its library loads (it is opened at run time).
  std::string nccl_missing;
#if RACE_HAVE_NCCL
  try {
    nccl();
  } catch (const Error& e) {
    nccl_missing = e.what();
  }
#else
  nccl_missing = "this build has no NCCL";
#endif
  // NCCL needs every rank in its communicator, so one rank without its own GPU (or without NCCL) sends all of
  // them to the staged sums. The sum runs in both builds, so the ranks make the same calls.
  std::vector<double> ranks_able = {nccl_missing.empty() && own_gpu ? 1.0 : 0.0};
  host.sum(ranks_able);
  const int able = static_cast<int>(ranks_able[0]);
#if RACE_HAVE_NCCL
  if (able == host.world_size()) {
    spdlog::info(
        "rank {} of {}: gradient sums with NCCL on CUDA device {}, a GPU of its own", host.rank(),
        host.world_size(), cuda_device_index);
    return std::make_unique<NcclCommunicator>(host, cuda_device_index, timeout_s);
  }
#endif
  std::string why;
  if (!nccl_missing.empty())
    why = nccl_missing;
  else if (!own_gpu)
    why = fmt::format("{} ranks share this rank's GPU", ranks_on_gpu);
  else
    why = fmt::format("{} of {} ranks cannot use NCCL (no NCCL, or a GPU shared with another rank)",
                      host.world_size() - able, host.world_size());
  spdlog::info("rank {} of {}: gradient sums staged through host memory over MPI: {}", host.rank(),
               host.world_size(), why);
  return std::make_unique<StagedCommunicator>(host, ops);
}

}  // namespace race::train
