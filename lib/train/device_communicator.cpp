// The choice of gradient communicator for device memory (device_communicator.h).
#include "train/device_communicator.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <string>
#include <vector>

#include "train/staged_communicator.h"
#if RACE_HAVE_NCCL
#include "train/nccl_communicator.h"
#endif

namespace race::train {

std::unique_ptr<Communicator> device_gradient_communicator(Communicator& host, model::Ops& ops,
                                                           bool cuda_device,
                                                           [[maybe_unused]] int cuda_device_index,
                                                           int cuda_device_count) {
  if (host.world_size() == 1 || !cuda_device) return nullptr;
#if RACE_HAVE_NCCL
  constexpr bool nccl_built = true;
#else
  constexpr bool nccl_built = false;
#endif
  const bool own_gpu = host.local_size() <= cuda_device_count;
  // NCCL needs every rank in its communicator, so one rank without its own GPU (or a binary without NCCL)
  // sends all of them to the staged sums. The sum runs in both builds, so the ranks make the same calls.
  std::vector<double> ranks_able = {nccl_built && own_gpu ? 1.0 : 0.0};
  host.sum(ranks_able);
  const int able = static_cast<int>(ranks_able[0]);
#if RACE_HAVE_NCCL
  if (able == host.world_size()) {
    spdlog::info(
        "rank {} of {}: gradient sums with NCCL on CUDA device {} ({} ranks on this node, {} devices)",
        host.rank(), host.world_size(), cuda_device_index, host.local_size(), cuda_device_count);
    return std::make_unique<NcclCommunicator>(host, cuda_device_index);
  }
#endif
  std::string why;
  if (!nccl_built)
    why = "this build has no NCCL";
  else if (!own_gpu)
    why = fmt::format("{} ranks on this node share {} CUDA device(s)", host.local_size(), cuda_device_count);
  else
    why = fmt::format(
        "{} of {} ranks cannot use NCCL (a build without it, or more ranks than CUDA devices on "
        "their node)",
        host.world_size() - able, host.world_size());
  spdlog::info("rank {} of {}: gradient sums staged through host memory over MPI: {}", host.rank(),
               host.world_size(), why);
  return std::make_unique<StagedCommunicator>(host, ops);
}

}  // namespace race::train
