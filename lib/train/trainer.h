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
//
// Data-parallel (under mpirun, docs/distributed.md): every rank runs this same loop on its shard of each
// global micro-batch of data.batch_size rows; losses and target counts are summed over ranks before the loss
// is normalised, gradients are summed in buckets during the backward, and every rank then applies the same
// update. Rank 0 alone writes the run directory; checkpoints do not depend on the number of ranks.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "model/gpt.h"
#include "train/communicator.h"
#include "train/task_data.h"
#include "train/tokenizer.h"

namespace race::train {

Schema train_schema();

struct TrainOptions {
  std::optional<std::filesystem::path> config_file;  // a new run
  std::optional<std::filesystem::path> resume_dir;   // or continue runs/<name>
  std::vector<std::string> overrides;                // --set a.b=v (new runs only)
  std::optional<std::string> device;                 // --device: replaces run.device, on resume too
  std::optional<std::string> precision;              // --precision: replaces run.precision, on resume too
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

// The sums behind an EvalResult: additive over batches, and over ranks that score disjoint batches.
struct EvalTotals {
  double loss_sum = 0.0;              // summed cross-entropy of the scored targets (nats)
  int64_t tokens = 0;                 // targets scored
  int64_t target_bytes = 0;           // LM and MLM: bytes of the scored targets' pieces
  int64_t correct = 0, labelled = 0;  // classification: rows right, rows with a label; answer scoring:
                                      // answer tokens right, answer tokens
  int64_t exact_windows = 0, answered_windows = 0;  // answer scoring: windows all right, windows with answers
};

// With scores_answers (TaskData), the answer tokens are scored from the logits of a full forward pass, which
// also gives their argmax accuracy and the windows' exact match.
EvalTotals evaluation_totals(model::Gpt& gpt, const std::vector<ModelBatch>& batches, const Tokenizer& tokenizer,
                             bool scores_answers = false);
EvalResult summarize(const EvalTotals& totals, bool classify, bool scores_answers = false);

// Loss (and, for a classifier or answer scoring, accuracy) of `gpt` over `batches`.
EvalResult evaluate(model::Gpt& gpt, const std::vector<ModelBatch>& batches, const Tokenizer& tokenizer,
                    bool scores_answers = false);

// The model of a resolved config for its task's data (vocabulary, context, classes, causality).
model::ModelSpec model_spec(const nlohmann::json& config, const TaskData& data);

// Runs (or resumes) training as one rank of `communicator`; `stop_requested` is polled after each step
// (SIGINT/SIGTERM in race-train), and the run stops when any rank asks.
TrainResult run_training(const TrainOptions& options, Communicator& communicator,
                         const std::function<bool()>& stop_requested = {});
// The same as the only process (SingleProcessCommunicator).
TrainResult run_training(const TrainOptions& options, const std::function<bool()>& stop_requested = {});

}  // namespace race::train
