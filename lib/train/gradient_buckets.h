// Gradient all-reduce in buckets, overlapped with the backward pass (data-parallel training). The model's
// backward reports ranges of its gradient arena as they become final (model::GradientsReady: contiguous and
// in decreasing offset order); this class cuts them into buckets of `bucket_floats` from the top of the
// arena down and starts each bucket's sum on the communicator as soon as it is complete, so the reduction
// of the last layers runs while the first layers are still in backward. finish() starts the last, smaller
// bucket and waits for everything. Buckets have a fixed size rather than a layer each because the cost of a
// sum is not linear in its size (on the machine of docs/benchmarks.md, 2 MB sums run about 5x faster per byte
// than 4 MB ones).
//
// With loss_scale = 1 / (targets scored by all ranks in the step), the summed gradient is exactly the
// gradient of the global mean loss, as one process computing the whole global batch would have it.
#pragma once

#include <cstdint>

#include "train/communicator.h"

namespace race::train {

class GradientBuckets {
 public:
  // `gradients` (device memory of `count` floats) must outlive the object; buckets hold bucket_floats.
  GradientBuckets(Communicator& communicator, float* gradients, std::int64_t count,
                  std::int64_t bucket_floats);

  // model::GradientsReady: gradients [offset, offset + count) are final for this step.
  void ready(std::int64_t offset, std::int64_t count);
  // Starts the last, smaller bucket, waits for every sum, checks that the whole arena was reduced, and
  // returns the number of buckets this step used.
  std::int64_t finish();

 private:
  // Starts the sum of [begin, pending_end_), the top of the pending range.
  void start(std::int64_t begin);

  Communicator& communicator_;
  float* gradients_;
  std::int64_t count_, bucket_floats_;
  std::int64_t pending_begin_, pending_end_;  // the range gathered but not yet started, [begin, end)
  std::int64_t buckets_started_ = 0;
};

}  // namespace race::train
