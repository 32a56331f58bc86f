// The MPI communicator (communicator.h): ranks from MPI_COMM_WORLD, node-local ranks from an
// MPI_COMM_TYPE_SHARED split, sums and broadcasts as non-blocking MPI collectives polled against a deadline,
// and the launch detection that picks it over the single-process communicator.
#include <fmt/format.h>
#include <mpi.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "train/communicator.h"

namespace race::train {

namespace {

using Clock = std::chrono::steady_clock;

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    // Only the main thread calls MPI; OpenMP threads compute between the calls.
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    if (provided < MPI_THREAD_FUNNELED)
      fail("MPI: the library offers thread level {}, and race needs MPI_THREAD_FUNNELED ({})", provided,
           MPI_THREAD_FUNNELED);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_);
    MPI_Comm_rank(node_, &local_rank_);
    MPI_Comm_size(node_, &local_size_);
  }

  ~MpiCommunicator() override {
    MPI_Comm_free(&node_);
    MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }

  void set_timeout(double seconds) override {
    if (!(seconds > 0.0)) fail("collective timeout: {} s must be positive", seconds);
    timeout_s_ = seconds;
  }

  void start_sum(std::span<float> data) override {
    RACE_CHECK(data.size() <= static_cast<std::size_t>(INT32_MAX),
               "a sum of {} floats exceeds MPI's int count", data.size());
    pending_.push_back(MPI_REQUEST_NULL);
    pending_floats_ += static_cast<std::int64_t>(data.size());
    MPI_Iallreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()), MPI_FLOAT, MPI_SUM,
                   MPI_COMM_WORLD, &pending_.back());
  }

  void progress() override {
    if (pending_.empty()) return;
    int done = 0;
    MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE);
  }

  void wait_all() override {
    wait(pending_, fmt::format("the gradient sum ({} buckets, {} floats)", pending_.size(), pending_floats_));
    pending_.clear();
    pending_floats_ = 0;
  }

  void sum(std::span<double> values) override {
    std::vector<MPI_Request> request(1, MPI_REQUEST_NULL);
    MPI_Iallreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM,
                   MPI_COMM_WORLD, request.data());
    wait(request, fmt::format("a sum of {} values", values.size()));
  }

  void broadcast(std::span<std::byte> bytes, int root) override {
    RACE_CHECK(root >= 0 && root < world_, "broadcast from rank {} of {}", root, world_);
    RACE_CHECK(bytes.size() <= static_cast<std::size_t>(INT32_MAX),
               "a broadcast of {} bytes exceeds MPI's int count", bytes.size());
    std::vector<MPI_Request> request(1, MPI_REQUEST_NULL);
    MPI_Ibcast(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, root, MPI_COMM_WORLD, request.data());
    wait(request, fmt::format("a broadcast of {} bytes from rank {}", bytes.size(), root));
  }

  void check_same(std::uint64_t value, std::string_view what) override {
    std::vector<std::uint64_t> all(static_cast<std::size_t>(world_));  // (world) each rank's value
    std::vector<MPI_Request> request(1, MPI_REQUEST_NULL);
    MPI_Iallgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD, request.data());
    wait(request, fmt::format("the comparison of {}", what));
    bool same = true;
    for (const std::uint64_t v : all) same = same && v == all[0];
    if (same) return;
    std::string listing;
    for (std::size_t r = 0; r < all.size(); ++r)
      listing += fmt::format("{}rank {} has {:#018x}", r == 0 ? "" : ", ", r, all[r]);
    fail("the ranks disagree on {}: {}", what, listing);
  }

  void abort(int status) override {
    if (world_ > 1) MPI_Abort(MPI_COMM_WORLD, status);
  }

 private:
  // Polls `requests` until all are complete or the deadline passes. Open MPI advances a non-blocking
  // collective only inside MPI calls, so the loop keeps calling; yielding between polls lets other ranks on
  // an oversubscribed node run (a 20 us sleep instead doubled the time of a 1 MB sum on 2 ranks).
  void wait(std::vector<MPI_Request>& requests, const std::string& what) const {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s_);
    for (;;) {
      int done = 0;
      MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE);
      if (done) return;
      if (Clock::now() > deadline)
        fail(
            "rank {} of {}: {} did not complete within {} s (train.collective_timeout_s): another rank has "
            "failed or stalled",
            rank_, world_, what, timeout_s_);
      std::this_thread::yield();
    }
  }

  int rank_ = 0, world_ = 1, local_rank_ = 0, local_size_ = 1;
  MPI_Comm node_ = MPI_COMM_NULL;
  double timeout_s_ = kDefaultCollectiveTimeoutS;
  std::vector<MPI_Request> pending_;  // started gradient sums, in start order
  std::int64_t pending_floats_ = 0;
};

}  // namespace

bool launched_by_mpi() {
  for (const char* variable : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
    if (std::getenv(variable) != nullptr) return true;
  return false;
}

std::unique_ptr<Communicator> connect_communicator() {
  if (!launched_by_mpi()) return std::make_unique<SingleProcessCommunicator>();
  return std::make_unique<MpiCommunicator>();
}

}  // namespace race::train
