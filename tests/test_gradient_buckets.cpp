// GradientBuckets against a recording communicator: the backward's ranges become buckets of at least the
// bucket size (the last may be smaller), started as soon as they fill, together covering the whole gradient
// arena exactly once, with wait_all only at finish(). Also the thread-count rule of rank_threads.h.
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
  void check_same(std::uint64_t, std::string_view) override {}
  void abort(int) override {}

  std::vector<Started> started;
  int64_t progress_calls = 0, waits = 0;
};

TEST(GradientBuckets, RangesBecomeBucketsStartedAsTheyFill) {
  std::vector<float> grads(100);
  RecordingCommunicator comm;
  GradientBuckets buckets(comm, grads.data(), 100, 25);
  // A backward's ranges, last layer first: 100..90, 90..60, 60..50, 50..45, 45..10, 10..0.
  const std::vector<std::pair<int64_t, int64_t>> ranges = {{90, 10}, {60, 30}, {50, 10},
                                                           {45, 5},  {10, 35}, {0, 10}};
  for (const auto& [offset, count] : ranges) buckets.ready(offset, count);
  EXPECT_EQ(comm.waits, 0);
  EXPECT_EQ(buckets.finish(), 3);
  EXPECT_EQ(comm.waits, 1);
  ASSERT_EQ(comm.started.size(), 3u);
  // [60, 100) once 60..90 arrived (the 2nd range), [10, 60) at the 5th, the remainder [0, 10) at finish.
  EXPECT_EQ(comm.started[0].data, grads.data() + 60);
  EXPECT_EQ(comm.started[0].size, 40u);
  EXPECT_EQ(comm.started[0].ready_calls_before, 1);
  EXPECT_EQ(comm.started[1].data, grads.data() + 10);
  EXPECT_EQ(comm.started[1].size, 50u);
  EXPECT_EQ(comm.started[1].ready_calls_before, 4);
  EXPECT_EQ(comm.started[2].data, grads.data());
  EXPECT_EQ(comm.started[2].size, 10u);
  // The next step starts again from the top of the arena.
  buckets.ready(0, 100);
  EXPECT_EQ(buckets.finish(), 1);
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
