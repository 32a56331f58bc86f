// race-bench attention's output: the human-readable table and the JSON document (its schema is at
// attention_json), both built from the sweep's results.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "layer_bench.h"
#include "sweep.h"

namespace race::bench {

// What was asked for besides the layer: for the "options" object of the JSON.
struct RunOptions {
  LayerConfig layer;  // its device and dtype say where and in what precision the layer runs
  SweepPlan plan;
};

// One line describing the run, then the column header.
std::string table_header(const RunOptions& run);
std::string table_row(const LayerConfig& config, const SizeResult& size);

// {"tool": "race-bench attention", "date": ISO 8601 UTC, "machine": {"cpu_model", "cores", "threads",
//  "memory_bytes"}, "options": {the LayerConfig fields, "device", "sweep", "seq_len" (null in a sweep),
//  "t_min", "max_memory_bytes", "max_seconds" (null: no limit)}, "results": [per size: "seq_len", "tokens"
//  (B*T), "forward_seconds", "forward_backward_seconds" (medians), "forward_tokens_per_s",
//  "forward_backward_tokens_per_s", "peak_bytes", "io_bytes", "peak_io_ratio", "forward_seconds_all",
//  "forward_backward_seconds_all" (every repeat), "child_seconds"; on cuda also "forward_gbytes_per_s" and
//  "forward_backward_gbytes_per_s" (min_traffic_bytes / median time), "memory_bandwidth_gbytes_per_s" (the
//  device's) and "forward_backward_bandwidth_fraction"], "stop_reason" (null while running),
//  "notes": [strings]}
nlohmann::ordered_json attention_json(const RunOptions& run, const SweepOutcome& outcome, bool finished);

// Writes `text` to `path` through a temporary file and a rename, so a reader never sees half a document
// (the JSON is rewritten after every size of a long sweep).
void write_text_atomically(const std::string& path, const std::string& text);

}  // namespace race::bench
