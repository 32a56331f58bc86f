// race-bench attention --device cuda: one RACE or softmax layer timed on the GPU with CUDA events. Built only with
// the CUDA toolkit (RACE_HAVE_CUDA).
#pragma once

#include <cstdint>
#include <string>

#include "layer_bench.h"

namespace race::bench {

// Inputs drawn on the device (q, k ~ N(0, 0.5^2), v, dout ~ N(0, 1), planes N(0, 1)), one untimed warm-up
// forward+backward (shared-memory limits, the allocator's pool), then config.repeats timed forward passes
// and forward+backward passes. RACE's dbeta is not asked for (fixed temperature), as in the CPU timing.
// device_bytes: the tensors (q, k, v, out, dout, dq, dk, dv) plus the backward's scratch (softmax: lse).
LayerTiming time_layer_cuda(const LayerConfig& config, std::int64_t seq_len);

// Empty when a CUDA device is usable; otherwise why not (for race-bench's error message).
std::string cuda_unavailable_reason();

// The first device's memory, bytes (0 without a device): the default memory budget of a CUDA sweep.
std::int64_t cuda_device_memory_bytes();

}  // namespace race::bench
