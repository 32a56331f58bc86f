// The machine's own limits, measured in the same run as a benchmark so that achieved rates can be set
// against them on a shared, noisy machine: the FMA rate of the kernels' register-blocked row product
// with operands in cache, and the memory bandwidth of a streaming triad.
#pragma once

#include <nlohmann/json.hpp>

namespace race::bench {

struct PeakResult {
  int threads = 0;
  double product_gflops = 0.0;    // multiply_rows, 8 x 32 blocks, in-cache operands, all threads
  double triad_gbytes_per_s = 0.0;  // a[i] = b[i] + s * c[i] over arrays far larger than the caches
};

PeakResult measure_peak(int threads, double seconds_per_test);
// The row product's rate alone, GFLOP/s: the CPU peak that race-bench model sets its achieved rate against
// (the triad's 768 MB of arrays would only crowd the model's memory).
double measure_product_gflops(int threads, double seconds);
nlohmann::json to_json(const PeakResult& result);

}  // namespace race::bench
