// Sequence-classification data (DESIGN section 4): /<split>/inputs (N x T, any integer type but uint64,
// padded after each row's length, usually with the pad id), /<split>/lengths (N, each in [1, T]),
// /<split>/labels (N, each in [0, num_classes)), and the file's /tokenizer.
//
// num_classes is an integer attribute on the split group (/<split>) or, shared by all splits, on the file
// root (/); the split's own attribute wins when present, and the two must agree when both are there.
//
// Lengths and labels (N values each) are loaded and checked when the file is opened; inputs are read a row
// at a time through HDF5 hyperslabs and their ids checked as they are read. Rows are served in a permutation
// drawn per epoch from (seed, epoch), resumable from a DataState exactly like the LM loader (lm_data.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "train/data_order.h"
#include "train/hdf5_slice.h"
#include "train/tokenizer.h"

namespace race::train {

class ClassificationDataset {
 public:
  // Opens `path` and checks shapes, types, lengths, labels, num_classes and the tokenizer; each error names
  // the file and the dataset, row or value at fault.
  static ClassificationDataset open(const std::filesystem::path& path, std::string_view split);

  const std::string& file_name() const { return file_.name(); }
  const std::string& split() const { return split_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  std::int64_t num_rows() const { return static_cast<std::int64_t>(labels_.size()); }  // N
  std::int64_t sequence_length() const { return sequence_length_; }                    // T
  std::int64_t num_classes() const { return num_classes_; }
  const std::vector<std::int32_t>& lengths() const { return lengths_; }  // (N) in [1, T]
  const std::vector<std::int32_t>& labels() const { return labels_; }    // (N) in [0, num_classes)

  // Rows [first, first + count) of inputs into `out` (count x T). A token id outside [0, vocab_size) is a
  // race::Error naming the file, dataset, row, column and id.
  void read_rows(std::int64_t first, std::int64_t count, std::span<std::int32_t> out) const;
  // Reads every row in chunks, checking every id (for a dry run; training checks as it reads).
  void check_all_tokens() const;

 private:
  ClassificationDataset(SlicedFile file, std::string split);

  SlicedFile file_;
  std::string split_;
  std::string inputs_path_;  // "/<split>/inputs"
  Tokenizer tokenizer_;
  std::int64_t sequence_length_ = 0;
  std::int64_t num_classes_ = 0;
  std::vector<std::int32_t> lengths_;
  std::vector<std::int32_t> labels_;
};

struct ClassificationBatch {
  std::int64_t rows = 0;                // B (the last validation batch may have fewer than asked)
  std::int64_t length = 0;              // T
  std::vector<std::int32_t> inputs;     // (B, T) token ids, padding included
  std::vector<std::uint8_t> key_mask;   // (B, T) 1 for t < the row's length (real token), 0 for padding
  std::vector<std::int32_t> labels;     // (B)
};

// Training batches: B rows at a time in the epoch order, cycling epochs forever.
class ClassificationBatcher {
 public:
  // `data` must outlive the batcher. `state` resumes a saved position (index below rows_per_epoch();
  // otherwise a race::Error says the data changed). `shard` picks this rank's rows of each batch.
  ClassificationBatcher(const ClassificationDataset& data, std::int64_t batch_size, std::uint64_t seed,
                        DataState state = {}, BatchShard shard = {});
  // The batcher keeps a pointer to its dataset, so a temporary one is refused at compile time.
  ClassificationBatcher(ClassificationDataset&& data, std::int64_t batch_size, std::uint64_t seed,
                        DataState state = {}, BatchShard shard = {}) = delete;

  // The shard's rows (B / world) of the next global batch of B rows.
  ClassificationBatch next();
  // The position after the batches handed out so far; a batcher built with it continues identically.
  const DataState& state() const { return state_; }
  std::int64_t rows_per_epoch() const { return data_->num_rows(); }

 private:
  const ClassificationDataset* data_;
  std::int64_t batch_size_;
  std::uint64_t seed_;
  DataState state_;
  BatchShard shard_;
  std::int64_t shard_rows_;          // B / world
  std::vector<std::int64_t> order_;  // (N) this epoch's permutation of rows
};

// The fixed evaluation subset: the first `count` rows in file order, in batches of `batch_size` rows (the
// last batch holds the remainder). More rows than the split has is a race::Error. With a shard, only batches
// shard.rank, shard.rank + world, ... are read and returned.
std::vector<ClassificationBatch> validation_batches(const ClassificationDataset& data,
                                                    std::int64_t batch_size, std::int64_t count,
                                                    BatchShard shard = {});

}  // namespace race::train
