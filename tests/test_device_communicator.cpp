// The communicators for gradients in device memory. StagedCommunicator against a recording host
// communicator, with CpuOps standing in for the device: what it copies, when, and that wait_all restores the
// sums where they were started, reusing its staging buffers. device_gradient_communicator's choice: none for
// one process or the CPU backend, staged when NCCL cannot serve every rank. Then, under mpirun -np 2
// (tests/distributed/device_sums.cpp): broadcast over MPI, staged sums bit for bit equal to MPI's, and NCCL
// sums against MPI's, the last skipped unless there are 2 GPUs. The NCCL communicator itself runs nowhere
// else in the tests.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/cpu_ops.h"
#include "train/communicator.h"
#include "train/device_communicator.h"
#include "train/gradient_buckets.h"
#if RACE_HAVE_NCCL
#include "train/nccl_api.h"
#endif
#include "train/staged_communicator.h"

namespace {

using race::train::Communicator;
using race::train::StagedCommunicator;

// A host communicator for two ranks that hold the same values: a started sum doubles its memory, at
// wait_all, and so does sum() unless the other rank is to contribute zeros. Records the calls in order, and
// what the memory held when each sum started.
class RecordingHost final : public Communicator {
 public:
  struct Started {
    float* data;
    std::vector<float> values_at_start;
  };
  int rank() const override { return 1; }
  int world_size() const override { return 2; }
  int local_rank() const override { return 1; }
  int local_size() const override { return 2; }
  void set_timeout(double seconds) override { timeout_s = seconds; }
  void start_sum(std::span<float> data) override {
    calls.push_back("start " + std::to_string(data.size()));
    started.push_back({data.data(), std::vector<float>(data.begin(), data.end())});
    pending.push_back(data);
  }
  void progress() override { calls.emplace_back("progress"); }
  void wait_all() override {
    calls.push_back("wait " + std::to_string(*watched));
    for (const std::span<float> data : pending)
      for (float& x : data) x *= 2.f;
    pending.clear();
  }
  void sum(std::span<double> values) override {
    calls.emplace_back("sum");
    if (!other_rank_values.empty())
      for (size_t i = 0; i < values.size(); ++i) values[i] += other_rank_values[i];
    else if (other_rank_sums_the_same)
      for (double& v : values) v *= 2.0;
  }
  void broadcast(std::span<std::byte> bytes, int root) override {
    calls.push_back("broadcast " + std::to_string(bytes.size()) + " from " + std::to_string(root));
  }
  void check_same(std::uint64_t, std::string_view what) override {
    calls.push_back("check " + std::string(what));
  }
  void abort(int status) override { calls.push_back("abort " + std::to_string(status)); }

  std::vector<std::string> calls;
  std::vector<Started> started;
  std::vector<std::span<float>> pending;
  const float* watched = nullptr;  // an element of the device memory, recorded at each wait_all
  double timeout_s = 0.0;
  bool other_rank_sums_the_same = true;  // false: the other rank's contribution to sum() is zero
  std::vector<double> other_rank_values;  // when set: the other rank's contribution to sum()
};

TEST(StagedCommunicator, SumsStagedCopiesAndWritesTheResultsBackAfterTheHostWait) {
  race::model::CpuOps ops;
  float* device = ops.allocate(10);  // (10) the "device" gradient arena
  const std::vector<float> values = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  ops.copy_from_host(device, values.data(), 10);
  RecordingHost host;
  host.watched = device + 7;
  StagedCommunicator staged(host, ops);
  staged.start_sum({device + 6, 4});
  staged.progress();
  staged.start_sum({device, 6});
  // The host sums run on host copies holding the values at the start, never on the device memory.
  ASSERT_EQ(host.started.size(), 2u);
  EXPECT_EQ(host.started[0].values_at_start, std::vector<float>({7, 8, 9, 10}));
  EXPECT_EQ(host.started[1].values_at_start, std::vector<float>({1, 2, 3, 4, 5, 6}));
  for (const auto& s : host.started) EXPECT_TRUE(s.data < device || s.data >= device + 10);
  EXPECT_NE(host.started[0].data, host.started[1].data);
  staged.wait_all();
  // The device memory was untouched until the host's wait returned (element 7 was still 8), then took the
  // sums.
  EXPECT_EQ(host.calls, std::vector<std::string>({"start 4", "progress", "start 6", "wait 8.000000"}));
  std::vector<float> after(10);
  ops.copy_to_host(after.data(), device, 10);
  EXPECT_EQ(after, std::vector<float>({2, 4, 6, 8, 10, 12, 14, 16, 18, 20}));
}

TEST(StagedCommunicator, ReusesItsStagingBuffersFromStepToStep) {
  race::model::CpuOps ops;
  float* device = ops.allocate(100);  // (100) gradients: buckets of 30, the last of 10
  ops.fill(device, 1.f, 100);
  RecordingHost host;
  host.watched = device;
  StagedCommunicator staged(host, ops);
  race::train::GradientBuckets buckets(staged, device, 100, 30);
  std::vector<std::vector<const float*>> step_buffers;
  for (int step = 0; step < 3; ++step) {
    host.started.clear();
    buckets.ready(0, 100);
    EXPECT_EQ(buckets.finish(), 4);
    step_buffers.emplace_back();
    for (const auto& s : host.started) step_buffers.back().push_back(s.data);
  }
  EXPECT_EQ(step_buffers[1], step_buffers[0]);
  EXPECT_EQ(step_buffers[2], step_buffers[0]);
  std::vector<float> after(100);
  ops.copy_to_host(after.data(), device, 100);
  for (const float x : after) EXPECT_EQ(x, 8.f);  // doubled in each of the 3 steps
}

TEST(StagedCommunicator, LeavesEverythingButTheGradientSumsToTheHost) {
  race::model::CpuOps ops;
  RecordingHost host;
  StagedCommunicator staged(host, ops);
  EXPECT_EQ(staged.rank(), 1);
  EXPECT_EQ(staged.world_size(), 2);
  EXPECT_EQ(staged.local_rank(), 1);
  EXPECT_EQ(staged.local_size(), 2);
  staged.set_timeout(7.0);
  EXPECT_EQ(host.timeout_s, 7.0);
  std::vector<double> values = {1.5};
  staged.sum(values);
  EXPECT_EQ(values[0], 3.0);
  std::vector<std::byte> bytes(5);
  staged.broadcast(bytes, 1);
  staged.check_same(3, "things");
  staged.abort(4);
  EXPECT_EQ(host.calls, std::vector<std::string>({"sum", "broadcast 5 from 1", "check things", "abort 4"}));
}

TEST(DeviceGradientCommunicator, NoneForOneProcessOrTheCpuBackend) {
  race::model::CpuOps ops;
  race::train::SingleProcessCommunicator single;
  EXPECT_EQ(race::train::device_gradient_communicator(single, ops, true, 0, 1, 5.0), nullptr);
  RecordingHost host;
  EXPECT_EQ(race::train::device_gradient_communicator(host, ops, false, 0, 1, 5.0), nullptr);
  EXPECT_TRUE(host.calls.empty()) << "the CPU backend needs no agreement between the ranks";
}

TEST(DeviceGradientCommunicator, StagedWhenTheRanksOfANodeShareAGpu) {
  race::model::CpuOps ops;
  RecordingHost host;  // 2 ranks on this node, both on this GPU
  const auto comm = race::train::device_gradient_communicator(host, ops, true, 0, 2, 5.0);
  EXPECT_NE(dynamic_cast<StagedCommunicator*>(comm.get()), nullptr);
  // The ranks agreed through one host sum, which every rank makes.
  EXPECT_EQ(host.calls, std::vector<std::string>({"sum"}));
}

// This rank has a GPU of its own, but the other rank reports that it cannot use NCCL: every rank takes the
// staged path, whether this build has NCCL or not.
TEST(DeviceGradientCommunicator, StagedWhenAnotherRankCannotUseNccl) {
  race::model::CpuOps ops;
  RecordingHost host;
  host.other_rank_sums_the_same = false;
  const auto comm = race::train::device_gradient_communicator(host, ops, true, 0, 1, 5.0);
  EXPECT_NE(dynamic_cast<StagedCommunicator*>(comm.get()), nullptr);
}

// Ranks count who shares their GPU by its identity: rank 0 (the other rank here) on the same GPU or on
// another one, whatever numbers CUDA_VISIBLE_DEVICES gave them.
TEST(DeviceGradientCommunicator, RanksSharingAGpuAreCountedByItsIdentity) {
  const std::string uuid = "6a1f0c2e9b7d4e11a0c3b5d7e9f10203";
  const auto identity = [](const std::string& u) {
    return static_cast<double>(race::train::checksum(std::as_bytes(std::span<const char>(u))) >> 16);
  };
  RecordingHost same;
  same.other_rank_values = {identity(uuid), 0.0};
  EXPECT_EQ(race::train::ranks_sharing_gpu(same, uuid), 2);
  RecordingHost other;
  other.other_rank_values = {identity("00000000000000000000000000000001"), 0.0};
  EXPECT_EQ(race::train::ranks_sharing_gpu(other, uuid), 1);
}

TEST(SingleProcessCommunicator, BroadcastLeavesTheBytesAlone) {
  race::train::SingleProcessCommunicator single;
  std::vector<std::byte> bytes = {std::byte{1}, std::byte{2}};
  single.broadcast(bytes, 0);
  EXPECT_EQ(bytes, std::vector<std::byte>({std::byte{1}, std::byte{2}}));
}

namespace fs = std::filesystem;

struct Outcome {
  int status = -1;
  std::string output;  // stdout and stderr of every rank
};

// `device_sums MODE` on 2 ranks (one OpenMP thread each) under a 60 s timeout; as root (CI) Open MPI wants
// --allow-run-as-root, and 2 ranks may exceed the cores.
Outcome run_two_ranks(const std::string& mode) {
  const fs::path out = fs::temp_directory_path() / ("race-device-sums-" + std::to_string(::getpid()));
  const std::string command = std::string("OMP_NUM_THREADS=1 timeout 60 ") + RACE_MPIEXEC +
                              (::geteuid() == 0 ? " --allow-run-as-root" : "") + " --oversubscribe -np 2 " +
                              RACE_DEVICE_SUMS + " " + mode + " >" + out.string() + " 2>&1";
  const int raw = std::system(command.c_str());
  Outcome o;
  o.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  std::ifstream in(out);
  o.output.assign(std::istreambuf_iterator<char>(in), {});
  fs::remove(out);
  return o;
}

TEST(TwoRanks, BroadcastCarriesTheRootsBytes) {
  const Outcome o = run_two_ranks("broadcast");
  EXPECT_EQ(o.status, 0) << o.output;
  EXPECT_NE(o.output.find("ok: rank 0"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("ok: rank 1"), std::string::npos) << o.output;
}

TEST(TwoRanks, StagedSumsInBucketsEqualTheMpiSumsBitForBit) {
  const Outcome o = run_two_ranks("staged");
  EXPECT_EQ(o.status, 0) << o.output;
  EXPECT_NE(o.output.find("ok: rank 0"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("ok: rank 1"), std::string::npos) << o.output;
}

// Both ranks decide together whether to run (device_sums prints "skip: ..." on each when they do not).
TEST(TwoRanks, NcclSumsInBucketsEqualTheMpiSums) {
  const Outcome o = run_two_ranks("nccl");
  ASSERT_EQ(o.status, 0) << o.output;
  if (o.output.find("skip: ") != std::string::npos) {
    EXPECT_EQ(o.output.find("ok: "), std::string::npos) << "the ranks disagreed on skipping:\n" << o.output;
    GTEST_SKIP() << o.output;
  }
  EXPECT_NE(o.output.find("ok: rank 0"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("ok: rank 1"), std::string::npos) << o.output;
}

}  // namespace

#if RACE_HAVE_NCCL
// NCCL is opened at run time (train/nccl_api.h): the library is found and holds every function
// NcclCommunicator calls under the names it asks for. No GPU is needed to check that.
TEST(NcclLibrary, OpensWithEveryFunction) {
  const race::train::NcclApi& api = race::train::nccl();
  for (const void* function :
       {reinterpret_cast<const void*>(api.AllReduce), reinterpret_cast<const void*>(api.CommAbort),
        reinterpret_cast<const void*>(api.CommDestroy), reinterpret_cast<const void*>(api.CommGetAsyncError),
        reinterpret_cast<const void*>(api.CommInitRank), reinterpret_cast<const void*>(api.GetErrorString),
        reinterpret_cast<const void*>(api.GetLastError), reinterpret_cast<const void*>(api.GetUniqueId)})
    EXPECT_NE(function, nullptr);
  EXPECT_NE(std::string(api.GetErrorString(ncclInvalidArgument)).find("invalid argument"), std::string::npos);
}
#endif
