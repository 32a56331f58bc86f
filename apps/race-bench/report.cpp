// Table and JSON output of race-bench attention.
#include "report.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "system_info.h"

namespace race::bench {

namespace {

double tokens_per_s(const LayerConfig& c, const SizeResult& s, double seconds) {
  return static_cast<double>(c.batch * s.seq_len) / seconds;
}

}  // namespace

std::string table_header(const RunOptions& run) {
  const LayerConfig& c = run.layer;
  std::string layer =
      fmt::format("{} {} B={} H={} D={}", c.impl, c.causal ? "causal" : "bidirectional", c.batch, c.heads, c.head_dim);
  if (c.is_race())
    layer += fmt::format(" L={} P={} {} beta={:g}", c.tables, c.bits, c.estimator, c.beta);
  else
    layer += c.window == 0 ? std::string(" full") : fmt::format(" window={}", c.window);
  return fmt::format(
      "race-bench attention: {}; {} threads, median of {} repeats, {} on {}\n"
      "{:>10} {:>10} {:>10} {:>11} {:>11} {:>10} {:>10} {:>8}\n",
      layer, c.threads, c.repeats, c.dtype, c.device, "T", "fwd s", "fwd+bwd s", "fwd tok/s", "f+b tok/s", "peak MB", "io MB",
      "peak/io");
}

std::string table_row(const LayerConfig& c, const SizeResult& s) {
  const double fwd = median(s.timing.forward_seconds), both = median(s.timing.forward_backward_seconds);
  const double io = static_cast<double>(io_bytes(c, s.seq_len));
  std::string row = fmt::format("{:>10} {:>10.4f} {:>10.4f} {:>11.4g} {:>11.4g} {:>10.1f} {:>10.1f} {:>8.2f}", s.seq_len,
                                fwd, both, tokens_per_s(c, s, fwd), tokens_per_s(c, s, both),
                                static_cast<double>(s.peak_bytes) / 1e6, io / 1e6, static_cast<double>(s.peak_bytes) / io);
  if (c.on_cuda()) {
    const double gbs = static_cast<double>(min_traffic_bytes(c, s.seq_len, true)) / both / 1e9;
    row += fmt::format("  f+b {:.0f} GB/s = {:.1f}% of {:.0f}", gbs, 100.0 * gbs / s.timing.memory_bandwidth_gbs,
                       s.timing.memory_bandwidth_gbs);
  }
  return row + "\n";
}

nlohmann::ordered_json attention_json(const RunOptions& run, const SweepOutcome& outcome, bool finished) {
  const LayerConfig& c = run.layer;
  using Json = nlohmann::ordered_json;
  Json options = to_json(c);
  options["sweep"] = run.plan.sweep;
  options["seq_len"] = run.plan.sweep ? Json(nullptr) : Json(run.plan.seq_len);
  options["t_min"] = run.plan.t_min;
  options["max_memory_bytes"] = run.plan.max_memory_bytes;
  options["max_seconds"] = std::isfinite(run.plan.max_seconds) ? Json(run.plan.max_seconds) : Json(nullptr);

  Json results = Json::array();
  for (const SizeResult& s : outcome.sizes) {
    const double fwd = median(s.timing.forward_seconds), both = median(s.timing.forward_backward_seconds);
    const std::int64_t io = io_bytes(c, s.seq_len);
    results.push_back({{"seq_len", s.seq_len},
                       {"tokens", c.batch * s.seq_len},
                       {"forward_seconds", fwd},
                       {"forward_backward_seconds", both},
                       {"forward_tokens_per_s", tokens_per_s(c, s, fwd)},
                       {"forward_backward_tokens_per_s", tokens_per_s(c, s, both)},
                       {"peak_bytes", s.peak_bytes},
                       {"io_bytes", io},
                       {"peak_io_ratio", static_cast<double>(s.peak_bytes) / static_cast<double>(io)},
                       {"forward_seconds_all", s.timing.forward_seconds},
                       {"forward_backward_seconds_all", s.timing.forward_backward_seconds},
                       {"child_seconds", s.child_seconds}});
    if (c.on_cuda()) {
      const double f_gbs = static_cast<double>(min_traffic_bytes(c, s.seq_len, false)) / fwd / 1e9;
      const double fb_gbs = static_cast<double>(min_traffic_bytes(c, s.seq_len, true)) / both / 1e9;
      Json& r = results.back();
      r["forward_gbytes_per_s"] = f_gbs;
      r["forward_backward_gbytes_per_s"] = fb_gbs;
      r["memory_bandwidth_gbytes_per_s"] = s.timing.memory_bandwidth_gbs;
      r["forward_backward_bandwidth_fraction"] = fb_gbs / s.timing.memory_bandwidth_gbs;
    }
  }
  return {{"tool", "race-bench attention"},
          {"date", utc_timestamp()},
          {"machine",
           {{"cpu_model", cpu_model()},
            {"cores", cpu_count()},
            {"threads", c.threads},
            {"memory_bytes", physical_memory_bytes()}}},
          {"options", options},
          {"results", results},
          {"stop_reason", finished ? Json(outcome.stop_reason) : Json(nullptr)},
          {"notes", outcome.notes}};
}

void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream file(temp, std::ios::trunc);
    file << text;
    file.flush();
    if (!file) fail("{}: cannot write \"{}\": {}", path, temp, std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) fail("{}: cannot rename \"{}\" onto it: {}", path, temp, ec.message());
}

}  // namespace race::bench
