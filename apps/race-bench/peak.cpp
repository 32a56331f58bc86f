// Measures the FMA and memory-bandwidth limits that race-bench reports beside attention timings.
#include "peak.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cpu/row_products.h"

namespace race::bench {
namespace {

using Clock = std::chrono::steady_clock;

double elapsed(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// a = b + s * c over three 256 MiB arrays: 12 bytes of traffic per element (write-allocate not counted,
// as in STREAM). The best of the passes run within the time budget.
double triad_gbytes_per_s(int threads, double seconds) {
  const int64_t n = int64_t{64} << 20;
  auto a = std::make_unique<float[]>(n), b = std::make_unique<float[]>(n), c = std::make_unique<float[]>(n);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    b[i] = 1.f;
    c[i] = 2.f;
  }
  double best = 0.0;
  const auto start = Clock::now();
  do {
    const auto pass = Clock::now();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) a[i] = b[i] + 0.5f * c[i];
    best = std::max(best, 12.0 * static_cast<double>(n) / elapsed(pass) / 1e9);
  } while (elapsed(start) < seconds);
  if (a[n / 2] != 2.f) best = 0.0;  // the arithmetic above must have run
  return best;
}

}  // namespace

// Each thread repeats a (64, 128) += (64, 64) . (64, 128) product on its own buffers (96 KB, in L2).
double measure_product_gflops(int threads, double seconds) {
  constexpr int64_t kRows = 64, kCols = 128, kDepth = 64;
  constexpr double kFlopsPerCall = 2.0 * kRows * kCols * kDepth;
  int64_t total_calls = 0;
  const auto start = Clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total_calls)
  {
    std::vector<float> out(kRows * kCols, 0.f), coef(kRows * kDepth, 1e-3f), rows(kDepth * kCols, 1e-3f);
    int64_t calls = 0;
    while (elapsed(start) < seconds) {
      for (int i = 0; i < 64; ++i)
        kernels::cpu::accumulate_rows(out.data(), kCols, kRows, kCols, coef.data(), kDepth, rows.data(),
                                      kCols, 0, kDepth);
      calls += 64;
    }
    // Keep the result observable so the loop is not optimised away.
    if (out[0] < 0.f) calls = 0;
    total_calls += calls;
  }
  return static_cast<double>(total_calls) * kFlopsPerCall / elapsed(start) / 1e9;
}

PeakResult measure_peak(int threads, double seconds_per_test) {
  PeakResult result;
  result.threads = threads;
  result.product_gflops = measure_product_gflops(threads, seconds_per_test);
  result.triad_gbytes_per_s = triad_gbytes_per_s(threads, seconds_per_test);
  return result;
}

nlohmann::json to_json(const PeakResult& result) {
  return {{"threads", result.threads},
          {"product_gflops", result.product_gflops},
          {"triad_gbytes_per_s", result.triad_gbytes_per_s}};
}

}  // namespace race::bench
