// GradientBuckets against a recording communicator: the backward's ranges are cut into buckets of the
// bucket size from the top (the last may be smaller), each started as soon as it is complete, together
// covering the whole gradient arena exactly once, with wait_all only at finish(). Also the thread-count rule
// of rank_threads.h.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/communicator.h"
#include "train/gradient_buckets.h"
#include "train/rank_threads.h"

namespace {

using race::train::GradientBuckets;

// Records what the buckets ask of the communicator; no other process.
class RecordingCommunicator final : public race::train::Communicator {
 public:
  struct Started {
    const float* data;
    size_t size;
    int64_t ready_calls_before;  // ready() calls seen when the sum started
  };
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 2; }
  void set_timeout(double) override {}
  void start_sum(std::span<float> data) override {
    started.push_back({data.data(), data.size(), progress_calls});
  }
  void progress() override { ++progress_calls; }
  void wait_all() override { ++waits; }
  void sum(std::span<double>) override {}
  void broadcast(std::span<std::byte>, int) override {}
  void check_same(std::uint64_t, std::string_view) override {}
  void abort(int) override {}

  std::vector<Started> started;
  int64_t progress_calls = 0, waits = 0;
};

TEST(GradientBuckets, RangesAreCutIntoBucketsStartedAsSoonAsTheyAreComplete) {
  std::vector<float> grads(100);
  RecordingCommunicator comm;
  GradientBuckets buckets(comm, grads.data(), 100, 25);
  // A backward's ranges, last layer first: 90..100, 60..90, 50..60, 45..50, 10..45, 0..10.
  const std::vector<std::pair<int64_t, int64_t>> ranges = {{90, 10}, {60, 30}, {50, 10},
                                                           {45, 5},  {10, 35}, {0, 10}};
  for (const auto& [offset, count] : ranges) buckets.ready(offset, count);
  EXPECT_EQ(comm.waits, 0);
  EXPECT_EQ(buckets.finish(), 4);
  EXPECT_EQ(comm.waits, 1);
  // Buckets of 25 from the top, each started in the ready() call that completed it: [75, 100) in the 2nd,
  // [50, 75) in the 3rd, [25, 50) in the 5th and [0, 25) in the 6th; finish() has nothing left to start.
  const std::vector<std::pair<int64_t, int64_t>> expected = {{75, 1}, {50, 2}, {25, 4}, {0, 5}};
  ASSERT_EQ(comm.started.size(), expected.size());
  for (size_t b = 0; b < expected.size(); ++b) {
    EXPECT_EQ(comm.started[b].data, grads.data() + expected[b].first) << "bucket " << b;
    EXPECT_EQ(comm.started[b].size, 25u) << "bucket " << b;
    EXPECT_EQ(comm.started[b].ready_calls_before, expected[b].second) << "bucket " << b;
  }
  // The next step starts again from the top.
  buckets.ready(0, 100);
  EXPECT_EQ(buckets.finish(), 4);
  // An arena that is not a multiple of the bucket: finish() starts the smaller remainder at the bottom.
  GradientBuckets uneven(comm, grads.data(), 60, 25);
  uneven.ready(0, 60);
  EXPECT_EQ(uneven.finish(), 3);
  EXPECT_EQ(comm.started.back().data, grads.data());
  EXPECT_EQ(comm.started.back().size, 10u);
}

TEST(GradientBuckets, ARangeOutOfOrderOrAMissingRangeIsAnError) {
  std::vector<float> grads(10);
  RecordingCommunicator comm;
  GradientBuckets buckets(comm, grads.data(), 10, 4);
  EXPECT_THROW(buckets.ready(0, 5), race::Error);  // must start at the top (10)
  buckets.ready(5, 5);
  EXPECT_THROW(buckets.finish(), race::Error);  // [0, 5) was never reported
}

TEST(RankThreads, ConfiguredThenEnvironmentThenTheCoresOfTheRank) {
  EXPECT_EQ(race::train::choose_threads(3, 2).threads, 3);
  const char* saved = std::getenv("OMP_NUM_THREADS");
  const std::string saved_value = saved != nullptr ? saved : "";
  ::setenv("OMP_NUM_THREADS", "5", 1);
  EXPECT_EQ(race::train::choose_threads(0, 2).threads, 5);
  ::unsetenv("OMP_NUM_THREADS");
  cpu_set_t mask;
  ASSERT_EQ(sched_getaffinity(0, sizeof(mask), &mask), 0);
  const int cores = CPU_COUNT(&mask);
  EXPECT_EQ(race::train::choose_threads(0, 1).threads, cores);
  // Unbound (the mask is the whole machine): the cores are shared; bound: the mask is the rank's own.
  const bool unbound = cores == ::sysconf(_SC_NPROCESSORS_ONLN);
  EXPECT_EQ(race::train::choose_threads(0, cores + 1).threads, unbound ? 1 : cores);
  if (saved != nullptr) ::setenv("OMP_NUM_THREADS", saved_value.c_str(), 1);
}

}  // namespace
