// Which communicator sums the gradients when they live in the memory of a model::Ops: none of its own for
// one process or for the CPU backend (the host communicator sums host memory directly), NCCL when it is
// built and every rank of a node has its own GPU, otherwise the staged host sums of staged_communicator.h.
// Declared without CUDA headers; defined in both builds (with and without NCCL).
#pragma once

#include <memory>

#include "model/ops.h"
#include "train/communicator.h"

namespace race::train {

// The communicator for the gradient sums of `ops`' memory, decorating `host` (which, like `ops`, must
// outlive it), or nullptr when `host` sums them itself: world_size() == 1, or CPU ops (`cuda_device` false).
// On CUDA: NcclCommunicator on `cuda_device_index` when NCCL is built (RACE_HAVE_NCCL) and on every rank
// local_size() <= `cuda_device_count` (the ranks agree through a host sum, so all take the same path),
// otherwise StagedCommunicator. Collective on the CUDA path: every rank calls it at the same point. Logs
// the choice and why.
std::unique_ptr<Communicator> device_gradient_communicator(Communicator& host, model::Ops& ops,
                                                           bool cuda_device, int cuda_device_index,
                                                           int cuda_device_count);

}  // namespace race::train
