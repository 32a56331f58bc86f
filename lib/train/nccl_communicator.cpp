// The NCCL gradient sums of nccl_communicator.h: start-up over the host communicator, in-place
// ncclAllReduce on a dedicated stream, and a deadline-bounded wait that aborts NCCL on failure.
#include "train/nccl_communicator.h"

#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "train/nccl_api.h"

namespace race::train {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kNcclHint =
    "set NCCL_DEBUG=INFO for NCCL's own account (interfaces, transports), see docs/distributed.md";

void check_cuda(cudaError_t status, const char* call, int rank, int world) {
  if (status == cudaSuccess) return;
  fail("rank {} of {}: {} failed: {} ({})", rank, world, call, cudaGetErrorName(status),
       cudaGetErrorString(status));
}

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& host, int device_index, double timeout_s)
    : GradientSumDecorator(host), device_(device_index), timeout_s_(timeout_s) {
  const int rank = host_.rank(), world = host_.world_size();
  int devices = 0;
  const cudaError_t counted = cudaGetDeviceCount(&devices);
  if (counted != cudaSuccess)
    fail("rank {} of {}: NCCL needs a CUDA device, and CUDA finds none: {} ({})", rank, world,
         cudaGetErrorName(counted), cudaGetErrorString(counted));
  if (device_index < 0 || device_index >= devices)
    fail("rank {} of {} (local rank {} of {}): CUDA device {} does not exist; this process sees {} device(s)",
         rank, world, host_.local_rank(), host_.local_size(), device_index, devices);
  check_cuda(cudaSetDevice(device_index), "cudaSetDevice", rank, world);

  // Rank 0 makes the id that names this communicator; the host communicator carries it to the others.
  ncclUniqueId id{};
  if (rank == 0) check_nccl(nccl().GetUniqueId(&id), "ncclGetUniqueId");
  host_.broadcast(std::as_writable_bytes(std::span<ncclUniqueId>(&id, 1)), 0);
  // Into a local first: comm_ names a communicator only once NCCL has made one. ncclCommInitRank waits for
  // every rank with no deadline of its own, and a rank that died after the broadcast would leave this one
  // there for good; a watchdog ends the process past the deadline, and the launcher then ends the job.
  ncclComm_t comm = nullptr;
  std::mutex mutex;
  std::condition_variable joined;
  bool finished = false;
  std::thread watchdog([&] {
    std::unique_lock lock(mutex);
    if (joined.wait_for(lock, std::chrono::duration<double>(timeout_s_), [&] { return finished; })) return;
    fmt::print(stderr,
               "error: rank {} of {}: ncclCommInitRank did not finish within {} s (train.collective_timeout_s): "
               "another rank has ended or cannot reach this one; hint: {}\n",
               rank, world, timeout_s_, kNcclHint);
    std::fflush(stderr);
    std::_Exit(1);
  });
  const ncclResult_t started = nccl().CommInitRank(&comm, world, id, rank);
  {
    const std::lock_guard lock(mutex);
    finished = true;
  }
  joined.notify_one();
  watchdog.join();
  check_nccl(started, "ncclCommInitRank");
  comm_ = comm;
  try {
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags", rank,
               world);
    check_cuda(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreateWithFlags", rank,
               world);
  } catch (...) {
    release();
    throw;
  }
}

NcclCommunicator::~NcclCommunicator() {
  // Sums still in flight (an error between start_sum and wait_all) would make ncclCommDestroy wait for them,
  // forever if another rank has gone: abort instead.
  if (pending_buckets_ > 0) aborted_ = true;
  release();
}

void NcclCommunicator::release() noexcept {
  // Errors are ignored: this runs in a destructor, or on the way out of a failure already being reported.
  if (comm_ != nullptr) {
    if (aborted_)
      nccl().CommAbort(comm_);
    else
      nccl().CommDestroy(comm_);
    comm_ = nullptr;
  }
  if (ready_ != nullptr) cudaEventDestroy(ready_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  ready_ = nullptr;
  stream_ = nullptr;
}

void NcclCommunicator::set_timeout(double seconds) {
  host_.set_timeout(seconds);  // validates
  timeout_s_ = seconds;
}

void NcclCommunicator::start_sum(std::span<float> data) {
  check_usable();
  const int rank = host_.rank(), world = host_.world_size();
  // NCCL given host memory or another GPU's would fail inside a kernel, far from the cause.
  cudaPointerAttributes where{};
  check_cuda(cudaPointerGetAttributes(&where, data.data()), "cudaPointerGetAttributes", rank, world);
  if ((where.type != cudaMemoryTypeDevice && where.type != cudaMemoryTypeManaged) || where.device != device_)
    fail("rank {} of {}: a gradient sum over NCCL was given memory that is not on CUDA device {}", rank,
         world, device_);
  // The all-reduce starts once the compute stream has produced these gradients, without blocking the
  // compute stream's later work (the backward of earlier layers).
  check_cuda(cudaEventRecord(ready_, cudaStreamLegacy), "cudaEventRecord", rank, world);
  check_cuda(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent", rank, world);
  check_nccl(nccl().AllReduce(data.data(), data.data(), data.size(), ncclFloat, ncclSum, comm_, stream_),
             "ncclAllReduce");
  ++pending_buckets_;
  pending_floats_ += static_cast<std::int64_t>(data.size());
}

void NcclCommunicator::wait_all() {
  check_usable();
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(timeout_s_);
  const std::string what =
      fmt::format("the gradient sum over NCCL ({} buckets, {} floats)", pending_buckets_, pending_floats_);
  for (;;) {
    const cudaError_t state = cudaStreamQuery(stream_);
    if (state == cudaSuccess) break;
    if (state != cudaErrorNotReady)
      abort_and_fail(fmt::format("rank {} of {}: {} failed on the GPU: {} ({})", host_.rank(),
                                 host_.world_size(), what, cudaGetErrorName(state),
                                 cudaGetErrorString(state)));
    ncclResult_t async = ncclSuccess;
    check_nccl(nccl().CommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
    if (async != ncclSuccess)
      abort_and_fail(fmt::format("rank {} of {}: {} failed after {:.1f} s: {} ({}); hint: {}", host_.rank(),
                                 host_.world_size(), what,
                                 std::chrono::duration<double>(Clock::now() - start).count(),
                                 nccl().GetErrorString(async), nccl().GetLastError(comm_), kNcclHint));
    if (Clock::now() > deadline)
      abort_and_fail(fmt::format(
          "rank {} of {}: {} did not complete within {} s (train.collective_timeout_s): another rank has "
          "failed or stalled; hint: {}",
          host_.rank(), host_.world_size(), what, timeout_s_, kNcclHint));
    // Yielding, as MpiCommunicator does, rather than sleeping: a sleep would add its length to every wait.
    std::this_thread::yield();
  }
  pending_buckets_ = pending_floats_ = 0;
}

void NcclCommunicator::abort_and_fail(const std::string& message) {
  if (comm_ != nullptr) {
    aborted_ = true;
    release();
  }
  throw Error(message);
}

void NcclCommunicator::check_nccl(int result, const char* call) {
  const auto status = static_cast<ncclResult_t>(result);
  if (status == ncclSuccess) return;
  abort_and_fail(fmt::format("rank {} of {}: {} failed: {} ({}); hint: {}", host_.rank(), host_.world_size(),
                             call, nccl().GetErrorString(status),
                             comm_ != nullptr ? nccl().GetLastError(comm_) : nccl().GetLastError(nullptr),
                             kNcclHint));
}

void NcclCommunicator::check_usable() const {
  if (aborted_)
    fail("rank {} of {}: the NCCL communicator was aborted after an earlier failure", host_.rank(),
         host_.world_size());
}

}  // namespace race::train
