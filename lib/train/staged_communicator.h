// StagedCommunicator: gradient sums over memory of any model::Ops (GPU memory included) through a host
// communicator that sums host memory (MPI). Each start_sum copies its span to a host staging buffer and
// starts the host sum there; wait_all waits for the host sums and copies the results back. Everything other
// than the gradient sums is the host communicator's. It is the fallback for device gradients when NCCL is
// not built or the ranks of a node do not each have their own GPU (device_communicator.h).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/ops.h"
#include "train/communicator.h"

namespace race::train {

class StagedCommunicator final : public GradientSumDecorator {
 public:
  // `host` and `ops` (whose memory start_sum receives) must outlive the object.
  StagedCommunicator(Communicator& host, model::Ops& ops);

  // `data` is memory of the Ops; the copy to the host finishes before this returns.
  void start_sum(std::span<float> data) override;
  void progress() override { host_.progress(); }
  // Waits for the host sums, then writes each result back where its sum was started from.
  void wait_all() override;

 private:
  struct Started {
    float* data;  // the Ops' memory the sum was started from, where the result goes back
    std::int64_t count;
  };

  model::Ops& ops_;
  // (sums started in a step) host copies, one per start_sum in start order; kept across steps, so once a
  // step has had its buckets no later step allocates (the buckets are the same every step). Moving a
  // std::vector keeps its elements where they are, so growing the outer vector does not move memory that
  // a started host sum is using.
  std::vector<std::vector<float>> staging_;
  std::vector<Started> started_;  // this step's sums, in start order
};

}  // namespace race::train
