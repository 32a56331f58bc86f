// The staged gradient sums of staged_communicator.h: copy to host, sum on the host communicator, copy back.
#include "train/staged_communicator.h"

namespace race::train {

StagedCommunicator::StagedCommunicator(Communicator& host, model::Ops& ops)
    : GradientSumDecorator(host), ops_(ops) {}

void StagedCommunicator::start_sum(std::span<float> data) {
  const std::size_t index = started_.size();
  if (staging_.size() <= index) staging_.emplace_back();
  std::vector<float>& staged = staging_[index];
  // A smaller size keeps the capacity, so the step's last, smaller bucket does not reallocate either.
  staged.resize(data.size());
  const auto count = static_cast<std::int64_t>(data.size());
  ops_.copy_to_host(staged.data(), data.data(), count);
  started_.push_back({data.data(), count});
  host_.start_sum(staged);
}

void StagedCommunicator::wait_all() {
  host_.wait_all();
  for (std::size_t i = 0; i < started_.size(); ++i)
    ops_.copy_from_host(started_[i].data, staging_[i].data(), started_[i].count);
  started_.clear();
}

}  // namespace race::train
