// Which communicator sums the gradients when they live in the memory of a model::Ops: none of its own for
// one process or for the CPU backend (the host communicator sums host memory directly), NCCL when it is
// built and every rank of a node has its own GPU, otherwise the staged host sums of staged_communicator.h.
// Declared without CUDA headers; defined in both builds (with and without NCCL).
#pragma once

#include <memory>
#include <string>

#include "model/ops.h"
#include "train/communicator.h"

namespace race::train {

// How many ranks of `host` (this one included) use the physical GPU `gpu_uuid`: a host sum of every rank's
// GPU identity, so it holds whatever CUDA_VISIBLE_DEVICES each rank was given. Collective: every rank calls
// it at the same point.
int ranks_sharing_gpu(Communicator& host, const std::string& gpu_uuid);

// The communicator for the gradient sums of `ops`' memory, decorating `host` (which, like `ops`, must
// outlive it), or nullptr when `host` sums them itself: world_size() == 1, or CPU ops (`cuda_device` false).
// On CUDA: NcclCommunicator on `cuda_device_index` when on every rank NCCL is built (RACE_HAVE_NCCL) and its
// library loads, and the rank's GPU is its own (`ranks_on_gpu` == 1, from ranks_sharing_gpu); the ranks agree
// through a host sum, so all take the same path. Otherwise StagedCommunicator. Collective on the CUDA path:
// every rank calls it at the same point. Logs the choice and why.
// `timeout_s` is the NCCL start-up's and sums' deadline (train.collective_timeout_s; the staged sums use
// the host's).
std::unique_ptr<Communicator> device_gradient_communicator(Communicator& host, model::Ops& ops,
                                                           bool cuda_device, int cuda_device_index,
                                                           int ranks_on_gpu, double timeout_s);

}  // namespace race::train
