// NcclCommunicator: gradient sums of GPU memory with NCCL, one GPU per rank, for data-parallel training on
// the CUDA backend. A decorator over the host communicator (MPI): ranks, the host sums, the checksums and
// abort are the host's, and the host carries the ncclUniqueId from rank 0 to the others. start_sum enqueues
// an in-place ncclAllReduce on a stream of its own, ordered after the work the compute stream (the legacy
// default stream, where CudaOps runs everything) has queued so far; wait_all polls that stream against the
// deadline of set_timeout, aborting the NCCL communicator when it passes or NCCL reports an error.
// Declared without CUDA or NCCL headers; built only when the CUDA toolkit has NCCL (RACE_HAVE_NCCL).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "train/communicator.h"

// The CUDA runtime's and NCCL's handle types, as cuda_runtime.h and nccl.h declare them.
struct CUstream_st;
struct CUevent_st;
struct ncclComm;

namespace race::train {

class NcclCommunicator final : public GradientSumDecorator {
 public:
  // Makes CUDA device `device_index` current and joins the NCCL communicator of all ranks of `host`, which
  // must outlive the object. Every rank must construct one at the same point (it is a collective). The sums'
  // memory must be on that device. race::Error when the device does not exist or NCCL fails to start; a
  // start-up that has not finished after `timeout_s` (another rank has gone) ends the process with a message,
  // since ncclCommInitRank cannot be interrupted. `timeout_s` is also the sums' deadline (set_timeout).
  NcclCommunicator(Communicator& host, int device_index, double timeout_s);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  void set_timeout(double seconds) override;

  // `data` is device memory on this communicator's device.
  void start_sum(std::span<float> data) override;
  // NCCL runs on its own once enqueued: nothing to nudge.
  void progress() override {}
  void wait_all() override;

 private:
  // Aborts the NCCL communicator (a stuck collective would otherwise keep the GPU and the destructor
  // waiting) and throws race::Error with `message`.
  [[noreturn]] void abort_and_fail(const std::string& message);
  // race::Error, after abort_and_fail, unless `result` (an ncclResult_t) is ncclSuccess.
  void check_nccl(int result, const char* call);
  // race::Error when an earlier failure has aborted the NCCL communicator.
  void check_usable() const;
  // Destroys what exists of the communicator, stream and event (the destructor, a failed constructor).
  void release() noexcept;

  int device_;
  double timeout_s_;
  ncclComm* comm_ = nullptr;
  CUstream_st* stream_ = nullptr;  // non-blocking: the all-reduces, apart from the compute stream
  CUevent_st* ready_ = nullptr;    // recorded on the compute stream before each all-reduce
  bool aborted_ = false;
  std::int64_t pending_buckets_ = 0, pending_floats_ = 0;  // started since the last wait_all
};

}  // namespace race::train
