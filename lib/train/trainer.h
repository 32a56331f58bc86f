// The training loop of race-train for language models (GPT): the config schema, the memory plan, and a run
// from a fresh start or resumed from the newest complete checkpoint of a run directory.
//
// One optimizer step = grad_accum micro-batches of (batch_size, context) windows; the loss is the mean
// over the step's target tokens, the gradient's global norm is clipped, AdamW (decoupled weight decay on
// matrices only) follows the learning-rate schedule. Validation on a fixed subset every eval_every steps
// and at the end; checkpoints every checkpoint_every steps and at the end (and on SIGINT/SIGTERM, after
// the step in flight). Results are bit-identical for a fixed thread count whether or not the run was
// interrupted and resumed: parameters, AdamW moments, the step and the data-loader position all travel in
// the checkpoint, and nothing else is random.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "model/gpt.h"
#include "train/task_data.h"
#include "train/tokenizer.h"

namespace race::train {

Schema train_schema();

struct TrainOptions {
  std::optional<std::filesystem::path> config_file;  // a new run
  std::optional<std::filesystem::path> resume_dir;   // or continue runs/<name>
  std::vector<std::string> overrides;                // --set a.b=v (new runs only)
  bool dry_run = false;                              // validate, print the plan, exit
  std::string log_level = "info";                    // also written to <run dir>/log
};

struct StepRecord {
  std::int64_t step = 0;  // 1-based: the number of optimizer updates done
  double loss = 0.0, lr = 0.0, grad_norm = 0.0;
};

struct TrainResult {
  std::filesystem::path run_dir;
  std::int64_t last_step = 0;
  std::vector<StepRecord> steps;  // the steps this invocation ran
  std::optional<double> final_val_loss;
  bool interrupted = false;
};

struct EvalResult {
  double loss = 0.0;           // mean cross-entropy per target token (nats)
  double perplexity = 0.0;     // exp(loss)
  double bits_per_byte = 0.0;  // LM and MLM: summed loss / ln 2 / bytes of the target tokens' pieces
  // Classification: share of rows whose most likely class is the label. Answer scoring: share of answer
  // tokens that are the most likely next token.
  double accuracy = 0.0;
  double exact_match = 0.0;  // answer scoring: share of windows whose every answer token is the most likely
  int64_t tokens = 0;        // target tokens scored
};

// Loss (and, for a classifier, accuracy) of `gpt` over `batches`. With scores_answers (TaskData), also the
// accuracy and exact match of the answer tokens, from the logits of a full forward pass.
EvalResult evaluate(model::Gpt& gpt, const std::vector<ModelBatch>& batches, const Tokenizer& tokenizer,
                    bool scores_answers = false);

// The model of a resolved config for its task's data (vocabulary, context, classes, causality).
model::ModelSpec model_spec(const nlohmann::json& config, const TaskData& data);

// Runs (or resumes) training; `stop_requested` is polled after each step (SIGINT/SIGTERM in race-train).
TrainResult run_training(const TrainOptions& options, const std::function<bool()>& stop_requested = {});

}  // namespace race::train
