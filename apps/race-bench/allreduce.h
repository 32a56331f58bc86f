// The gradient all-reduce on its own, as data-parallel training runs it (Communicator::start_sum, then
// wait_all), timed on a buffer of a given size and reported the way nccl-tests reports all_reduce_perf:
// algorithm bandwidth = bytes / time and bus bandwidth = algbw x 2 (n - 1) / n, the rate each rank's link
// must sustain in a ring all-reduce, comparable across rank counts. Run under mpirun -np N, N >= 2.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "train/communicator.h"

namespace race::bench {

struct AllreduceResult {
  int ranks = 0;
  std::int64_t bytes = 0;  // fp32 buffer summed per repeat
  int repeats = 0;
  double median_seconds = 0.0;  // rank 0's median over repeats, each started after all ranks have synced
  double algbw_gbytes_per_s = 0.0;
  double busbw_gbytes_per_s = 0.0;
};

// Sums a buffer of `bytes` (rounded down to whole floats) `repeats` times after one warm-up, checking every
// element of every result (rank r contributes r + 1, so each element must be n (n + 1) / 2).
AllreduceResult measure_allreduce(train::Communicator& comm, std::int64_t bytes, int repeats);
nlohmann::json to_json(const AllreduceResult& result);

}  // namespace race::bench
