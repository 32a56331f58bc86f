// race-eval's language-model evaluation of a checkpoint: the model config comes from the checkpoint, the
// data from the config (or another file), and the windows are those validation uses, so a checkpoint's
// loss here equals the validation loss the trainer logged at its step.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "train/trainer.h"

namespace race::train {

struct EvalOptions {
  std::filesystem::path checkpoint;          // a checkpoint file, or a run directory (its newest checkpoint)
  std::optional<std::filesystem::path> data;  // default: the config's data.path
  std::string split = "val";
  int64_t windows = 0;  // windows of the split, in file order; 0: the config's data.val_windows
  // Context and batch size of the evaluation (0: the config's). A longer context than the model trained on
  // works with RoPE or no positions (length generalisation, e.g. passkey), not with a learned table.
  int64_t context = 0;
  int64_t batch_size = 0;
  std::string device = "cpu";      // "cpu" or "cuda" (--device); any checkpoint runs on either
  std::string precision = "auto";  // matrix products (--precision): "auto", "fp32" or "bf16" (cuda)
};

struct CheckpointEvaluation {
  EvalResult result;
  std::string task;  // "lm", "mlm" or "classify"
  bool scores_answers = false;  // the data marks answers (loss_mask): accuracy and exact match are set
  int64_t context = 0;
  std::filesystem::path checkpoint, data;
  std::string split;
  int64_t step = 0, windows = 0;
};

CheckpointEvaluation evaluate_checkpoint(const EvalOptions& options);

struct GenerateOptions {
  std::filesystem::path checkpoint;  // a checkpoint file, or a run directory
  std::string prompt;                // encoded with the checkpoint's tokenizer (bytes or BPE)
  int64_t max_new_tokens = 100;
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: the whole vocabulary
  uint64_t seed = 0;
  std::string device = "cpu";      // "cpu" or "cuda" (--device)
  std::string precision = "auto";  // matrix products (--precision): "auto", "fp32" or "bf16" (cuda)
};

struct Generation {
  std::string text;                   // the new tokens decoded (the prompt is not repeated)
  std::vector<int32_t> tokens;        // the new token ids
  std::filesystem::path checkpoint;
  int64_t step = 0;
};

// Feeds the prompt token by token, then samples max_new_tokens (RACE layers on their recurrent state,
// softmax layers on a key/value cache); the same seed gives the same text.
Generation generate(const GenerateOptions& options);

}  // namespace race::train
