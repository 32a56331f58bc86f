// Gathering the backward's finished gradient ranges into buckets and summing each over the ranks.
#include "train/gradient_buckets.h"

#include <span>

#include "core/error.h"

namespace race::train {

GradientBuckets::GradientBuckets(Communicator& communicator, float* gradients, std::int64_t count,
                                 std::int64_t bucket_floats)
    : communicator_(communicator),
      gradients_(gradients),
      count_(count),
      bucket_floats_(bucket_floats),
      pending_begin_(count),
      pending_end_(count) {
  RACE_CHECK(bucket_floats >= 1, "bucket of {} floats", bucket_floats);
}

void GradientBuckets::ready(std::int64_t offset, std::int64_t count) {
  RACE_CHECK(offset + count == pending_begin_,
             "gradient range [{}, {}) does not end where the last began ({})", offset, offset + count,
             pending_begin_);
  pending_begin_ = offset;
  while (pending_end_ - pending_begin_ >= bucket_floats_) start(pending_end_ - bucket_floats_);
  communicator_.progress();
}

std::int64_t GradientBuckets::finish() {
  RACE_CHECK(pending_begin_ == 0, "the backward reported gradients down to offset {}, not 0", pending_begin_);
  if (pending_end_ > pending_begin_) start(pending_begin_);
  communicator_.wait_all();
  pending_begin_ = pending_end_ = count_;
  const std::int64_t buckets = buckets_started_;
  buckets_started_ = 0;
  return buckets;
}

void GradientBuckets::start(std::int64_t begin) {
  communicator_.start_sum(
      std::span<float>(gradients_ + begin, static_cast<std::size_t>(pending_end_ - begin)));
  pending_end_ = begin;
  ++buckets_started_;
}

}  // namespace race::train
