// The "model" section of a run's JSON config: its schema (types, ranges, defaults, one line of docs per key)
// and the ModelSpec it resolves to. Hybrids are a config: every layer uses model.attention, except the
// layers listed in model.softmax_layers, which use softmax attention (window model.softmax_window).
#pragma once

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "model/gpt.h"

namespace race::model {

Schema model_schema();

// spec from a resolved "model" object; vocab_size comes from the dataset's tokenizer, max_seq_len from
// the run's context when model.max_seq_len is 0. Errors name the JSON path (e.g. model.softmax_layers[2]).
ModelSpec spec_from_config(const nlohmann::json& model, int64_t vocab_size, int64_t context);

}  // namespace race::model
