// The data of one training task as the model consumes it: next-token LM and masked LM over the windows of
// a token stream, or classification over padded rows. The trainer and race-eval see only ModelBatch and
// this interface, so the loop is the same for every task.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/gpt.h"
#include "train/data_order.h"
#include "train/tokenizer.h"

namespace race::train {

// One micro-batch, (B, T) unless noted, owning its arrays; empty optional arrays are absent.
struct ModelBatch {
  int64_t rows = 0;  // rows holding data (a short last validation batch is padded to B)
  std::vector<int32_t> tokens, targets, positions, segments;
  std::vector<uint8_t> key_mask;
  std::vector<int32_t> labels;  // (B) classification
  model::Batch view() const;
};

class TaskData {
 public:
  virtual ~TaskData() = default;
  // The task's data from a resolved config ("task" and "data"), resuming the training order at `state`.
  // `shard`: this rank's part of every batch in data-parallel training (data_order.h).
  static std::unique_ptr<TaskData> open(const nlohmann::json& config, DataState state = {},
                                        BatchShard shard = {});

  // The shard's rows of the next global training micro-batch; `micro_index` counts micro-batches from the
  // start of the run (MLM draws its masks from it and the global row, so a resumed run, on any number of
  // ranks, masks exactly as an uninterrupted one on one).
  virtual ModelBatch next(int64_t micro_index) = 0;
  virtual const DataState& state() const = 0;
  // The fixed validation batches (the first data.val_windows windows or rows of the split, in file order) in
  // batches of batch_size() rows; with a shard, this rank's batches only.
  virtual std::vector<ModelBatch> validation(const std::string& split, int64_t count) const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  // Rows per micro-batch on this rank: data.batch_size / shard.world.
  virtual int64_t batch_size() const = 0;
  virtual int64_t context() const = 0;      // T
  virtual int64_t num_classes() const = 0;  // 0 unless classification
  // Whether only marked answer tokens are targets (an LM dataset with a loss_mask: MQAR, passkey, selective
  // copy), so that evaluation also reports answer accuracy.
  virtual bool scores_answers() const = 0;
  virtual std::string describe() const = 0;
  // Reads every training token and checks it against the vocabulary (race-train --dry-run).
  virtual void check_all_tokens() const = 0;
};

}  // namespace race::train
