// One attention layer (RACE or softmax) timed on synthetic inputs: the configuration of the scaling study,
// its JSON form (which is also how the sweep hands a configuration to its per-size child process), the
// byte and cost models the sweep plans with, and the timed forward / forward+backward runs.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/race_attention.h"

namespace race::bench {

struct LayerConfig {
  std::string impl = "race";  // "race" or "softmax"
  std::string device = "cpu";  // "cpu" or "cuda" (race only)
  std::string dtype = "fp32";  // "fp32", or "bf16" (cuda only)
  bool causal = true;
  std::int64_t batch = 1, heads = 4, head_dim = 128;
  int tables = 3, bits = 3;          // race: L, P
  std::string estimator = "bucket";  // race: "bucket" or "ratio"
  double beta = 1.0;                 // race: fixed temperature of every head
  double eps = 1e-6;                 // race
  std::int64_t window = 0;           // softmax: 0 = full attention
  int threads = 1;
  int repeats = 3;
  std::uint64_t seed = 0;
  // cuda race: the backward writes dq, dk, dv over q, k, v and the forward's out is the backward's dout, so
  // the layer holds 4 tensors instead of 8 (the kernels allow it: race_attention_cuda.h)
  bool in_place = false;

  bool is_race() const { return impl == "race"; }
  bool on_cuda() const { return device == "cuda"; }
  std::int64_t element_bytes() const { return dtype == "bf16" ? 2 : 4; }
};

// Keys in declaration order (ordered_json), since the JSON report is read by people too.
nlohmann::ordered_json to_json(const LayerConfig& config);
// Strict inverse of to_json: every key must be present with the right type (race::Error otherwise).
LayerConfig layer_config_from_json(const nlohmann::json& json);

// Throws race::UsageError for a configuration the kernels would reject, before any child is started.
void validate(const LayerConfig& config);

// The layer's own inputs and outputs, q, k, v, out, dout, dq, dk, dv: 8 * B*H*T*D values of the dtype, or
// 4 with in_place. The yardstick for peak memory: a layer can hardly use less.
std::int64_t io_bytes(const LayerConfig& config, std::int64_t seq_len);

// Work of one pass at seq_len, up to a constant: T for RACE, T times the keys a query sees for softmax.
// Only ratios between sizes are used, to predict the next size's time.
double relative_cost(const LayerConfig& config, std::int64_t seq_len);

struct LayerTiming {
  std::vector<double> forward_seconds;           // one per repeat
  std::vector<double> forward_backward_seconds;  // one forward call then one backward call, per repeat
  std::int64_t device_bytes = 0;                 // cuda: tensors plus the larger call's scratch
  double memory_bandwidth_gbs = 0;               // cuda: the device's memory bandwidth, GB/s
};

// The least memory traffic of one pass, bytes: each tensor read or written once. Forward reads q, k, v and
// writes out (4 tensors); forward+backward adds reading q, k, v, dout and writing dq, dk, dv (11 in all).
// Achieved GB/s = this / time, the figure to hold against the device's memory bandwidth.
std::int64_t min_traffic_bytes(const LayerConfig& config, std::int64_t seq_len, bool with_backward);

// Allocates and fills the inputs for seq_len, then times `config.repeats` forward passes and as many
// forward+backward passes: on config.threads OpenMP threads, or on the GPU with CUDA events
// (cuda_layer_bench.h). std::bad_alloc escapes when memory runs out.
LayerTiming time_layer(const LayerConfig& config, std::int64_t seq_len);

// The RACE kernels' shape and options for a RACE layer of `config` at `seq_len` (either device).
kernels::RaceAttentionShape race_shape(const LayerConfig& config, std::int64_t seq_len);
kernels::RaceAttentionOptions race_options(const LayerConfig& config);

double median(std::vector<double> values);

}  // namespace race::bench
