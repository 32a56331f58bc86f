// race-eval's language-model evaluation of a checkpoint: the model config comes from the checkpoint, the
// data from the config (or another file), and the windows are those validation uses, so a checkpoint's
// loss here equals the validation loss the trainer logged at its step.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "train/trainer.h"

namespace race::train {

struct EvalOptions {
  std::filesystem::path checkpoint;          // a checkpoint file, or a run directory (its newest checkpoint)
  std::optional<std::filesystem::path> data;  // default: the config's data.path
  std::string split = "val";
  int64_t windows = 0;  // windows of the split, in file order; 0: the config's data.val_windows
};

struct CheckpointEvaluation {
  EvalResult result;
  std::filesystem::path checkpoint, data;
  std::string split;
  int64_t step = 0, windows = 0;
};

CheckpointEvaluation evaluate_checkpoint(const EvalOptions& options);

}  // namespace race::train
