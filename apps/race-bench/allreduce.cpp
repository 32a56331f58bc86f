// Timing and checking the all-reduce of race-bench allreduce.
#include "allreduce.h"

#include <algorithm>
#include <chrono>
#include <span>
#include <vector>

#include "core/error.h"

namespace race::bench {

AllreduceResult measure_allreduce(train::Communicator& comm, std::int64_t bytes, int repeats) {
  const int n = comm.world_size();
  if (n < 2)
    fail("race-bench allreduce: run it under mpirun with at least 2 ranks (this is the only process)");
  const std::int64_t count = bytes / static_cast<std::int64_t>(sizeof(float));
  if (count < 1) fail("race-bench allreduce: --bytes {} holds no float", bytes);
  std::vector<float> buffer(static_cast<std::size_t>(count));  // (count) summed in place
  const float expected = static_cast<float>(n) * static_cast<float>(n + 1) / 2.f;
  std::vector<double> seconds;
  for (int repeat = -1; repeat < repeats; ++repeat) {  // repeat -1 warms up
    std::fill(buffer.begin(), buffer.end(), static_cast<float>(comm.rank() + 1));
    std::vector<double> sync = {0.0};
    comm.sum(sync);  // every rank starts the timed sum together
    const auto start = std::chrono::steady_clock::now();
    comm.start_sum(buffer);
    comm.wait_all();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (repeat >= 0) seconds.push_back(elapsed);
    for (std::size_t i = 0; i < buffer.size(); ++i)
      if (buffer[i] != expected)
        fail("race-bench allreduce: element {} of the sum is {}, expected {} (rank r contributes r + 1)", i,
             buffer[i], expected);
  }
  std::sort(seconds.begin(), seconds.end());
  AllreduceResult r;
  r.ranks = n;
  r.bytes = count * static_cast<std::int64_t>(sizeof(float));
  r.repeats = repeats;
  r.median_seconds = seconds[seconds.size() / 2];
  r.algbw_gbytes_per_s = static_cast<double>(r.bytes) / r.median_seconds / 1e9;
  r.busbw_gbytes_per_s = r.algbw_gbytes_per_s * 2.0 * (n - 1) / n;
  return r;
}

nlohmann::json to_json(const AllreduceResult& r) {
  return {{"ranks", r.ranks},
          {"bytes", r.bytes},
          {"repeats", r.repeats},
          {"median_seconds", r.median_seconds},
          {"algbw_gbytes_per_s", r.algbw_gbytes_per_s},
          {"busbw_gbytes_per_s", r.busbw_gbytes_per_s}};
}

}  // namespace race::bench
