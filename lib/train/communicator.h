// The trainer's view of its fellow processes in data-parallel training: who it is (rank, world size, rank and
// rank count on its own node) and the collectives a step needs. Implementations:
//   - SingleProcessCommunicator: rank 0 of 1, every collective a no-op (race-train started without mpirun);
//   - MpiCommunicator (mpi_communicator.cpp): ranks from MPI, sums with MPI_Iallreduce on host memory;
//   - for gradients in GPU memory, two decorators over a host communicator that change only the gradient
//     sums (start_sum, progress, wait_all): StagedCommunicator (staged_communicator.h: copies through host
//     memory) and NcclCommunicator (nccl_communicator.h: ncclAllReduce on the device). device_communicator.h
//     picks between them.
//
// Gradient sums are started per bucket while the backward pass is still running (start_sum), nudged along
// from the backward's callbacks (progress) and waited for before the optimizer step (wait_all). Every wait
// has a deadline (set_timeout): a rank that has died or stalled makes the others fail with a message naming
// the collective, instead of hanging. Failing ranks then take the whole job down with abort().
//
// Every rank must make the same collective calls in the same order, with the same counts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace race::train {

inline constexpr double kDefaultCollectiveTimeoutS = 300.0;

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;        // 0 .. world_size() - 1
  virtual int world_size() const = 0;  // processes in the job
  virtual int local_rank() const = 0;  // rank among the processes on this node (one GPU per local rank)
  virtual int local_size() const = 0;  // processes on this node

  // Seconds a collective may take before it is declared failed (train.collective_timeout_s; until set,
  // kDefaultCollectiveTimeoutS).
  virtual void set_timeout(double seconds) = 0;

  // Starts summing `data` (the memory of the model's Ops) element-wise over all ranks, in place. The memory
  // must stay untouched until wait_all() returns.
  virtual void start_sum(std::span<float> data) = 0;
  // Lets started sums advance (MPI moves non-blocking collectives only inside MPI calls).
  virtual void progress() = 0;
  // Returns once every started sum is complete; race::Error past the deadline.
  virtual void wait_all() = 0;

  // Sums small host vectors (losses, counts) over all ranks, in place; blocking, with the deadline.
  virtual void sum(std::span<double> values) = 0;

  // Copies `bytes` of rank `root` into `bytes` of every other rank; blocking, with the deadline. Every rank
  // passes the same size (NCCL's ncclUniqueId travels this way).
  virtual void broadcast(std::span<std::byte> bytes, int root) = 0;

  // Checks that every rank holds the same `value` (a checksum). A mismatch is a race::Error, on every rank,
  // listing each rank's value: "the ranks disagree on <what>: rank 0 has 0x..., rank 1 has 0x...".
  virtual void check_same(std::uint64_t value, std::string_view what) = 0;

  // Ends every process of the job with `status` (MPI_Abort), for a rank that failed while the others may be
  // waiting in a collective. Returns only when there is no other process.
  virtual void abort(int status) = 0;
};

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  void set_timeout(double) override {}
  void start_sum(std::span<float>) override {}
  void progress() override {}
  void wait_all() override {}
  void sum(std::span<double>) override {}
  void broadcast(std::span<std::byte>, int) override {}
  void check_same(std::uint64_t, std::string_view) override {}
  void abort(int) override {}
};

// Base of the communicators that change only the gradient sums (start_sum, progress, wait_all) of a host
// communicator, for gradients in device memory, and pass everything else to it: StagedCommunicator and
// NcclCommunicator. `host` must outlive the object.
class GradientSumDecorator : public Communicator {
 public:
  explicit GradientSumDecorator(Communicator& host) : host_(host) {}

  int rank() const override { return host_.rank(); }
  int world_size() const override { return host_.world_size(); }
  int local_rank() const override { return host_.local_rank(); }
  int local_size() const override { return host_.local_size(); }
  void set_timeout(double seconds) override { host_.set_timeout(seconds); }
  void sum(std::span<double> values) override { host_.sum(values); }
  void broadcast(std::span<std::byte> bytes, int root) override { host_.broadcast(bytes, root); }
  void check_same(std::uint64_t value, std::string_view what) override { host_.check_same(value, what); }
  void abort(int status) override { host_.abort(status); }

 protected:
  Communicator& host_;
};

// Whether this process was started by an MPI launcher (mpirun, mpiexec, srun with MPI): the launchers'
// environment variables (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE) are present.
bool launched_by_mpi();

// MpiCommunicator over MPI_COMM_WORLD when launched_by_mpi(), otherwise a SingleProcessCommunicator. MPI is
// initialised here and finalised when the communicator is destroyed; one per process.
std::unique_ptr<Communicator> connect_communicator();

// A 64-bit FNV-1a hash of `bytes`, continuing from `hash` (start with kChecksumSeed): for check_same.
inline constexpr std::uint64_t kChecksumSeed = 0xcbf29ce484222325ULL;
std::uint64_t checksum(std::span<const std::byte> bytes, std::uint64_t hash = kChecksumSeed);

}  // namespace race::train
