// Gradient sums through the device communicators on two MPI ranks, for test_device_communicator (run under
// mpirun -np 2). Each mode prints "ok" (or "skip: <why>") on every rank and exits 0, or reports the
// mismatch as an error and exits non-zero:
//   broadcast  Communicator::broadcast over MPI, from rank 0 and from rank 1;
//   staged     GradientBuckets over a StagedCommunicator (CpuOps memory) over MPI gives bit for bit the sums
//              of GradientBuckets over MPI directly, and both are the sum of the ranks' values;
//   nccl       the same with NcclCommunicator over CudaOps memory against MPI; skipped on every rank unless
//              NCCL is built and every rank sees at least 2 CUDA devices.
#include <fmt/format.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/main_guard.h"
#include "model/cpu_ops.h"
#include "train/communicator.h"
#include "train/gradient_buckets.h"
#include "train/staged_communicator.h"
#if RACE_HAVE_NCCL
#include "kernels/cuda/device_info.h"
#include "model/cuda_ops.h"
#include "train/nccl_communicator.h"
#endif

namespace {

using race::train::Communicator;

// 1037 floats in buckets of 128: the arena does not divide into buckets, so the last one is smaller.
constexpr std::int64_t kArena = 1037, kBucket = 128;

// Rank r's gradient element i: values whose sums round, so a sum of the wrong elements or a lost bucket
// shows.
float value(int rank, std::int64_t i) {
  return static_cast<float>(rank + 1) * 0.1f * std::sin(static_cast<float>(i) * 0.37f) +
         static_cast<float>(i);
}

std::vector<float> rank_values(int rank) {
  std::vector<float> values(kArena);  // (kArena) this rank's gradients
  for (std::int64_t i = 0; i < kArena; ++i) values[static_cast<std::size_t>(i)] = value(rank, i);
  return values;
}

// One step's sum over `comm` of the arena at `gradients` (memory of the communicator's Ops), reported the
// way a backward does: uneven ranges from the top down.
void sum_in_buckets(Communicator& comm, float* gradients) {
  race::train::GradientBuckets buckets(comm, gradients, kArena, kBucket);
  const std::int64_t ranges[] = {300, 17, 200, 1, 400, 119};  // sizes, last layer first; they add to kArena
  std::int64_t end = kArena;
  for (const std::int64_t size : ranges) {
    buckets.ready(end - size, size);
    end -= size;
  }
  RACE_CHECK(end == 0, "the ranges cover {} of {} floats", kArena - end, kArena);
  buckets.finish();
}

// The elements where `got` is not bit for bit `want`; race::Error naming the first.
void expect_same(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  for (std::size_t i = 0; i < want.size(); ++i)
    if (!(got[i] == want[i])) race::fail("{}: element {} is {}, expected {}", what, i, got[i], want[i]);
}

// What a sum over all ranks must give: every rank's value added in rank order. With two ranks that is one
// IEEE addition, which MPI and NCCL compute exactly so, in either order.
std::vector<float> expected_sum(int world) {
  std::vector<float> sum(kArena, 0.f);  // (kArena)
  for (int r = 0; r < world; ++r) {
    const std::vector<float> values = rank_values(r);
    for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += values[i];
  }
  return sum;
}

void check_broadcast(Communicator& comm) {
  for (const int root : {0, 1}) {
    std::vector<std::byte> bytes(40, std::byte{0});  // (40) rank `root`'s pattern, zeros elsewhere
    if (comm.rank() == root)
      for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(7 * i + 3 + root);
    comm.broadcast(bytes, root);
    for (std::size_t i = 0; i < bytes.size(); ++i)
      if (bytes[i] != static_cast<std::byte>(7 * i + 3 + root))
        race::fail("rank {}: byte {} of the broadcast from rank {} is {}", comm.rank(), i, root,
                   static_cast<int>(bytes[i]));
  }
}

void check_staged(Communicator& comm) {
  race::model::CpuOps ops;
  race::train::StagedCommunicator staged(comm, ops);
  const std::vector<float> want = expected_sum(comm.world_size());
  // Two steps: the second runs on staging buffers kept from the first.
  for (int step = 0; step < 2; ++step) {
    std::vector<float> direct = rank_values(comm.rank());
    std::vector<float> through_host = direct;
    sum_in_buckets(comm, direct.data());
    sum_in_buckets(staged, through_host.data());
    expect_same(direct, want, "the MPI sum");
    expect_same(through_host, direct, "the staged sum against the MPI sum");
  }
}

// Returns false (after printing why) when the NCCL check cannot run on every rank.
bool check_nccl(Communicator& comm) {
  std::string why;
#if RACE_HAVE_NCCL
  const race::kernels::cuda::DeviceQuery query = race::kernels::cuda::query_devices();
  const auto devices = static_cast<int>(query.devices.size());
  if (devices < 2)
    why = fmt::format("{} CUDA device(s) here, and the check needs 2{}", devices,
                      query.unavailable_reason.empty() ? "" : " (" + query.unavailable_reason + ")");
  else if (comm.local_size() > devices)
    why = fmt::format("{} ranks on this node share {} CUDA devices", comm.local_size(), devices);
#else
  why = "this build has no NCCL";
#endif
  // Every rank must take the same branch: the NCCL communicator's start-up is a collective.
  std::vector<double> able = {why.empty() ? 1.0 : 0.0};
  comm.sum(able);
  if (static_cast<int>(able[0]) != comm.world_size()) {
    std::printf("skip: rank %d: %s\n", comm.rank(),
                why.empty() ? "another rank cannot run the NCCL check" : why.c_str());
    return false;
  }
#if RACE_HAVE_NCCL
  race::train::NcclCommunicator nccl(comm, comm.local_rank(), 60.0);
  race::model::CudaOps ops(comm.local_rank());  // the device NCCL sums on
  float* device = ops.allocate(kArena);  // (kArena) this rank's gradients on its GPU
  const std::vector<float> want = expected_sum(comm.world_size());
  for (int step = 0; step < 2; ++step) {
    std::vector<float> direct = rank_values(comm.rank());
    ops.copy_from_host(device, direct.data(), kArena);
    sum_in_buckets(comm, direct.data());
    sum_in_buckets(nccl, device);
    std::vector<float> on_device(kArena);  // (kArena) the NCCL sum, copied back
    ops.copy_to_host(on_device.data(), device, kArena);
    expect_same(direct, want, "the MPI sum");
    expect_same(on_device, direct, "the NCCL sum against the MPI sum");
  }
#endif
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<Communicator> comm;
  const int status = race::run_guarded([&] {
    const std::string mode = argc == 2 ? argv[1] : "";
    if (mode != "broadcast" && mode != "staged" && mode != "nccl")
      throw race::UsageError("usage: device_sums broadcast|staged|nccl (under mpirun -np 2)");
    comm = race::train::connect_communicator();
    if (comm->world_size() != 2) race::fail("device_sums runs on 2 ranks, not {}", comm->world_size());
    comm->set_timeout(30.0);
    bool ran = true;
    if (mode == "broadcast")
      check_broadcast(*comm);
    else if (mode == "staged")
      check_staged(*comm);
    else
      ran = check_nccl(*comm);
    if (ran) std::printf("ok: rank %d\n", comm->rank());
    return 0;
  });
  if (status != 0 && comm) comm->abort(status);
  return status;
}
