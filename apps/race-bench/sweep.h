// The scaling study behind race-bench attention: one size, or sizes doubling from t_min until the next one
// is predicted to overrun the memory or time budget. Each size is measured in a fresh child process
// (race-bench attention-one) so that its peak memory is its own; the child answers with one JSON line.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "layer_bench.h"

namespace race::bench {

struct SweepPlan {
  bool sweep = false;
  std::int64_t seq_len = 0;  // without sweep: the one size
  std::int64_t t_min = 4096;
  double max_memory_bytes = 0;
  double max_seconds = std::numeric_limits<double>::infinity();
};

struct SizeResult {
  std::int64_t seq_len = 0;
  LayerTiming timing;
  std::int64_t peak_bytes = 0;  // the child's VmHWM (cpu), or the layer's device memory (cuda)
  double child_seconds = 0;     // wall time of the whole child (start-up, input fill, all repeats)
};

struct SweepOutcome {
  std::vector<SizeResult> sizes;
  // Why the sweep ended: "single" (one size done), "max_memory", "max_seconds", "out_of_memory"
  // (bad_alloc, or SIGKILL, the usual out-of-memory killer), "crashed" (another signal) or "failed".
  std::string stop_reason;
  std::vector<std::string> notes;
  bool failed = false;  // the run did not do what was asked: an error exit status is due
};

// Runs the plan; on_size is called after each measured size (for progress output).
SweepOutcome run_sweep(const LayerConfig& config, const SweepPlan& plan,
                       const std::function<void(const SweepOutcome&)>& on_size);

// The child's side: measures one size in this process and returns the line to print. std::bad_alloc
// becomes {"seq_len": T, "out_of_memory": "<what>"} rather than an error, so the parent can tell running
// out of memory (the end of a sweep) from a real failure.
nlohmann::json measure_one(const LayerConfig& config, std::int64_t seq_len);

}  // namespace race::bench
