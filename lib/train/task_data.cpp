// TaskData for the three tasks: LM and MLM over LmDataset windows, classification over ClassificationDataset.
#include "train/task_data.h"

#include <algorithm>
#include <optional>

#include "core/error.h"
#include "train/classification_data.h"
#include "train/lm_data.h"
#include "train/mlm.h"

namespace race::train {

model::Batch ModelBatch::view() const {
  auto or_null = [](const auto& v) { return v.empty() ? nullptr : v.data(); };
  return {tokens.data(), targets.data(), or_null(positions), or_null(segments), or_null(key_mask), or_null(labels)};
}

namespace {

// Next-token LM (masking null) or masked LM over windows of T + 1 tokens.
class LmTaskData final : public TaskData {
 public:
  LmTaskData(const nlohmann::json& config, DataState state, BatchShard shard)
      : path_(config.at("data").at("path").get<std::string>()),
        train_(LmDataset::open(path_, "train")),
        context_(config.at("data").at("context").get<int64_t>()),
        global_batch_(config.at("data").at("batch_size").get<int64_t>()),
        batch_size_(shard.rows(global_batch_)),
        seed_(config.at("data").at("seed").get<uint64_t>()),
        mlm_(config.at("task") == "mlm"),
        options_{config.at("data").at("cross_documents").get<bool>(), config.at("data").at("packed").get<bool>()},
        shard_(shard),
        batcher_(train_, context_, global_batch_, seed_, options_, state, shard) {
    if (mlm_ && train_.has_loss_mask())
      fail("{}: the dataset has a loss mask (\"/train/loss_mask\"), which marks next-token answers; it applies "
           "to task \"lm\", not \"mlm\"",
           path_);
  }

  ModelBatch next(int64_t micro_index) override {
    return convert(batcher_.next(), seed_, micro_index, shard_.rank * batch_size_);
  }
  const DataState& state() const override { return batcher_.state(); }
  std::vector<ModelBatch> validation(const std::string& split, int64_t count) const override {
    const LmDataset data = LmDataset::open(path_, split);
    if (data.has_loss_mask() != train_.has_loss_mask())
      fail("{}: split \"{}\" {} a loss mask but split \"train\" {}; both score answers only, or both every "
           "token",
           path_, split, data.has_loss_mask() ? "has" : "lacks", train_.has_loss_mask() ? "has one" : "does not");
    std::vector<ModelBatch> out;
    // Validation masks from a stream of its own, keyed by the global batch (of data.batch_size windows) and
    // row: every evaluation scores the same tokens, whatever the number of ranks.
    int64_t first_window = shard_.rank * batch_size_;
    for (const LmBatch& b : validation_batches(data, context_, batch_size_, count, options_, shard_)) {
      out.push_back(convert(b, seed_ ^ 0x76616c6964617465ULL, first_window / global_batch_,
                            first_window % global_batch_));
      first_window += shard_.world * batch_size_;
    }
    return out;
  }
  const Tokenizer& tokenizer() const override { return train_.tokenizer(); }
  int64_t batch_size() const override { return batch_size_; }
  int64_t context() const override { return context_; }
  int64_t num_classes() const override { return 0; }
  bool scores_answers() const override { return train_.has_loss_mask(); }
  std::string describe() const override {
    return fmt::format("{} ({} train tokens, vocab {}{})", path_, train_.num_tokens(), train_.tokenizer().vocab_size,
                       train_.has_loss_mask() ? ", loss on marked answers only" : "");
  }
  void check_all_tokens() const override { train_.check_all_tokens(); }

 private:
  // LM: inputs are a window's first T tokens and targets the next ones; MLM: the first T tokens, corrupted,
  // with targets at the chosen positions. Rows past batch.rows are padding with no targets.
  ModelBatch convert(const LmBatch& batch, uint64_t mask_seed, int64_t mask_step, int64_t first_row) const {
    const int64_t T = context_, B = batch_size_;
    ModelBatch b;
    b.rows = batch.rows;
    b.tokens.assign(static_cast<size_t>(B * T), 0);
    b.targets.assign(static_cast<size_t>(B * T), -1);
    for (int64_t r = 0; r < batch.rows; ++r)
      for (int64_t t = 0; t < T; ++t) {
        b.tokens[static_cast<size_t>(r * T + t)] = batch.tokens[static_cast<size_t>(r * (T + 1) + t)];
        const auto next = static_cast<size_t>(r * (T + 1) + t + 1);
        const bool scored = batch.loss_mask.empty() || batch.loss_mask[next] != 0;
        b.targets[static_cast<size_t>(r * T + t)] = scored ? batch.tokens[next] : -1;
      }
    if (!batch.segment_ids.empty()) {
      b.segments.assign(static_cast<size_t>(B * T), 0);
      b.positions.assign(static_cast<size_t>(B * T), 0);
      std::copy(batch.segment_ids.begin(), batch.segment_ids.end(), b.segments.begin());
      std::copy(batch.position_ids.begin(), batch.position_ids.end(), b.positions.begin());
    }
    if (mlm_) {
      const MlmBatch masked =
          mask_tokens(std::span<const int32_t>(b.tokens.data(), static_cast<size_t>(batch.rows * T)),
                      batch.rows, T, train_.tokenizer(), mask_seed, mask_step, kMaskFraction, first_row);
      std::copy(masked.inputs.begin(), masked.inputs.end(), b.tokens.begin());
      std::copy(masked.targets.begin(), masked.targets.end(), b.targets.begin());
    }
    return b;
  }

  std::string path_;
  LmDataset train_;
  int64_t context_;
  int64_t global_batch_;  // data.batch_size: rows of a micro-batch over all ranks
  int64_t batch_size_;    // this rank's rows
  uint64_t seed_;
  bool mlm_;
  LmBatchOptions options_;
  BatchShard shard_;
  LmBatcher batcher_;
};

// Classification rows: inputs (N, T) padded, key mask from lengths, a label per row.
class ClassificationTaskData final : public TaskData {
 public:
  ClassificationTaskData(const nlohmann::json& config, DataState state, BatchShard shard)
      : path_(config.at("data").at("path").get<std::string>()),
        train_(ClassificationDataset::open(path_, "train")),
        batch_size_(shard.rows(config.at("data").at("batch_size").get<int64_t>())),
        shard_(shard),
        batcher_(train_, config.at("data").at("batch_size").get<int64_t>(),
                 config.at("data").at("seed").get<uint64_t>(), state, shard) {
    if (config.at("data").at("packed").get<bool>() || !config.at("data").at("cross_documents").get<bool>())
      fail("data.packed and data.cross_documents apply to the lm and mlm tasks; classification rows are "
           "one example each");
    const int64_t context = config.at("data").at("context").get<int64_t>();
    if (context != train_.sequence_length())
      fail("data.context: {} does not match the length of {}'s rows ({}); set data.context to {}", context, path_,
           train_.sequence_length(), train_.sequence_length());
  }

  ModelBatch next(int64_t) override { return convert(batcher_.next()); }
  const DataState& state() const override { return batcher_.state(); }
  std::vector<ModelBatch> validation(const std::string& split, int64_t count) const override {
    const ClassificationDataset data = ClassificationDataset::open(path_, split);
    std::vector<ModelBatch> out;
    for (const ClassificationBatch& b : validation_batches(data, batch_size_, count, shard_))
      out.push_back(convert(b));
    return out;
  }
  const Tokenizer& tokenizer() const override { return train_.tokenizer(); }
  int64_t batch_size() const override { return batch_size_; }
  int64_t context() const override { return train_.sequence_length(); }
  int64_t num_classes() const override { return train_.num_classes(); }
  bool scores_answers() const override { return false; }
  std::string describe() const override {
    return fmt::format("{} ({} train rows of {} tokens, {} classes)", path_, train_.num_rows(),
                       train_.sequence_length(), train_.num_classes());
  }
  void check_all_tokens() const override { train_.check_all_tokens(); }

 private:
  ModelBatch convert(const ClassificationBatch& batch) const {
    const int64_t T = train_.sequence_length(), B = batch_size_;
    ModelBatch b;
    b.rows = batch.rows;
    b.tokens.assign(static_cast<size_t>(B * T), 0);
    b.targets.assign(static_cast<size_t>(B * T), -1);
    b.key_mask.assign(static_cast<size_t>(B * T), 0);
    b.labels.assign(static_cast<size_t>(B), -1);
    std::copy(batch.inputs.begin(), batch.inputs.end(), b.tokens.begin());
    std::copy(batch.key_mask.begin(), batch.key_mask.end(), b.key_mask.begin());
    std::copy(batch.labels.begin(), batch.labels.end(), b.labels.begin());
    // Padding rows attend to their first token only, so their pooled state stays finite; they carry no label.
    for (int64_t r = batch.rows; r < B; ++r) b.key_mask[static_cast<size_t>(r * T)] = 1;
    return b;
  }

  std::string path_;
  ClassificationDataset train_;
  int64_t batch_size_;  // this rank's rows of data.batch_size
  BatchShard shard_;
  ClassificationBatcher batcher_;
};

}  // namespace

std::unique_ptr<TaskData> TaskData::open(const nlohmann::json& config, DataState state, BatchShard shard) {
  const std::string path = config.at("data").at("path").get<std::string>();
  if (path.empty()) fail("data.path: no dataset given (an HDF5 file with train and val splits)");
  if (config.at("task") == "classify") return std::make_unique<ClassificationTaskData>(config, state, shard);
  return std::make_unique<LmTaskData>(config, state, shard);
}

}  // namespace race::train
