// race-bench attention's sweep driver: child processes per size, their one-line JSON protocol, and the
// prediction that stops a sweep before a size overruns its budget (a size that does not fit in memory can
// take the whole machine down with it, so stopping after the fact is not good enough).
#include "sweep.h"

#include <string.h>

#include <chrono>
#include <csignal>
#include <new>

#include "core/error.h"
#include "subprocess.h"
#include "system_info.h"

namespace race::bench {

nlohmann::json measure_one(const LayerConfig& config, std::int64_t seq_len) {
  try {
    const LayerTiming timing = time_layer(config, seq_len);
    // On a GPU the budget that matters is device memory: the tensors and scratch the layer holds there.
    return {{"seq_len", seq_len},
            {"forward_seconds", timing.forward_seconds},
            {"forward_backward_seconds", timing.forward_backward_seconds},
            {"peak_bytes", config.on_cuda() ? timing.device_bytes : peak_resident_bytes()},
            {"memory_bandwidth_gbs", timing.memory_bandwidth_gbs}};
  } catch (const std::bad_alloc& e) {
    return {{"seq_len", seq_len}, {"out_of_memory", e.what()}};
  }
}

namespace {

double gb(double bytes) { return bytes / 1e9; }

SizeResult parse_answer(const nlohmann::json& json, std::int64_t seq_len) {
  try {
    SizeResult r;
    json.at("seq_len").get_to(r.seq_len);
    json.at("forward_seconds").get_to(r.timing.forward_seconds);
    json.at("forward_backward_seconds").get_to(r.timing.forward_backward_seconds);
    json.at("peak_bytes").get_to(r.peak_bytes);
    json.at("memory_bandwidth_gbs").get_to(r.timing.memory_bandwidth_gbs);
    if (r.seq_len != seq_len) fail("answered for T={}", r.seq_len);
    return r;
  } catch (const std::exception& e) {
    fail("T={}: unreadable answer from the measuring process ({}): {}", seq_len, e.what(), json.dump());
  }
}

// Ends the sweep with a note for a child that did not answer with a measurement.
void record_child_failure(const ChildResult& child, const nlohmann::json& answer, std::int64_t seq_len, bool sweep,
                          SweepOutcome& outcome) {
  if (child.signal != 0) {
    const bool killed = child.signal == SIGKILL;
    outcome.stop_reason = killed ? "out_of_memory" : "crashed";
    outcome.failed = !(killed && sweep);
    outcome.notes.push_back(fmt::format("T={}: the measuring process was killed by signal {} ({}){}", seq_len,
                                        child.signal, strsignal(child.signal),
                                        killed ? ", most likely by the kernel's out-of-memory killer" : ""));
    return;
  }
  if (answer.contains("out_of_memory")) {
    outcome.stop_reason = "out_of_memory";
    outcome.failed = !sweep;
    outcome.notes.push_back(
        fmt::format("T={}: out of memory ({})", seq_len, answer["out_of_memory"].get<std::string>()));
    return;
  }
  outcome.stop_reason = "failed";
  outcome.failed = true;
  outcome.notes.push_back(fmt::format("T={}: the measuring process failed with exit status {} (its error is above)",
                                      seq_len, child.exit_status));
}

}  // namespace

SweepOutcome run_sweep(const LayerConfig& config, const SweepPlan& plan,
                       const std::function<void(const SweepOutcome&)>& on_size) {
  const std::string self = self_executable();
  const std::string config_text = to_json(config).dump();
  const auto start = std::chrono::steady_clock::now();
  SweepOutcome outcome;
  std::int64_t seq_len = plan.sweep ? plan.t_min : plan.seq_len;
  if (plan.sweep && static_cast<double>(io_bytes(config, seq_len)) > plan.max_memory_bytes) {
    outcome.stop_reason = "max_memory";
    outcome.notes.push_back(
        fmt::format("T={} not run: its inputs and outputs alone take {:.3f} GB, over "
                    "--max-memory-gb {:.3f}",
                    seq_len, gb(static_cast<double>(io_bytes(config, seq_len))), gb(plan.max_memory_bytes)));
    return outcome;
  }
  for (;;) {
    const ChildResult child =
        run_child(self, {"attention-one", "--config", config_text, "--seq-len", std::to_string(seq_len)});
    // A child that exited normally answers with one JSON object; anything else (including a parse failure,
    // which leaves `answer` discarded, not an object) is a failure.
    nlohmann::json answer;
    if (child.signal == 0 && child.exit_status == 0) answer = nlohmann::json::parse(child.stdout_text, nullptr, false);
    if (!answer.is_object() || !answer.contains("peak_bytes")) {
      record_child_failure(child, answer, seq_len, plan.sweep, outcome);
      if (plan.sweep) outcome.notes.back() += "; the sweep ends here";
      return outcome;
    }
    SizeResult result = parse_answer(answer, seq_len);
    result.child_seconds = child.seconds;
    outcome.sizes.push_back(std::move(result));
    on_size(outcome);
    if (!plan.sweep) {
      outcome.stop_reason = "single";
      return outcome;
    }

    // Memory grows linearly in T for both kernels; doubling the whole peak (fixed overheads included) errs
    // on the safe side. Time is scaled by the kernel's cost model; the child's fixed costs scale with it,
    // which again errs on the safe side.
    const SizeResult& last = outcome.sizes.back();
    const std::int64_t next = 2 * seq_len;
    const double next_bytes = 2.0 * static_cast<double>(last.peak_bytes);
    const double next_seconds = last.child_seconds * relative_cost(config, next) / relative_cost(config, seq_len);
    const double used = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (next_bytes > plan.max_memory_bytes) {
      outcome.stop_reason = "max_memory";
      outcome.notes.push_back(
          fmt::format("stopped before T={}: its predicted peak memory {:.3f} GB exceeds "
                      "--max-memory-gb {:.3f}",
                      next, gb(next_bytes), gb(plan.max_memory_bytes)));
      return outcome;
    }
    if (used + next_seconds > plan.max_seconds) {
      outcome.stop_reason = "max_seconds";
      outcome.notes.push_back(
          fmt::format("stopped before T={}: its predicted {:.1f} s would overrun "
                      "--max-seconds {:g} ({:.1f} s used)",
                      next, next_seconds, plan.max_seconds, used));
      return outcome;
    }
    seq_len = next;
  }
}

}  // namespace race::bench
