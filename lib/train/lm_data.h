// Language-model data (DESIGN section 4): a token stream /<split>/tokens (1-D uint8, uint16 or uint32) with
// optional document starts /<split>/doc_offsets (1-D uint64) and the file's /tokenizer, read a window at a
// time through HDF5 hyperslabs (a corpus is never loaded whole), cut into windows and served in batches.
//
// Windows: a window is T + 1 consecutive tokens (inputs its first T, targets its last T), and windows never
// overlap: window i of the stream starts at i * (T + 1); the tokens after the last whole window are unused.
// With cross_documents false windows are cut the same way inside each document separately (document d from
// doc_offsets[d] to doc_offsets[d + 1], or to the end of the stream), so no window spans two documents;
// documents shorter than T + 1 then give no window. A file without doc_offsets is one document.
//
// Order: each epoch visits every window once, in a permutation drawn from (seed, epoch) alone (see
// data_order.h), so the same seed gives the same batches on any machine, and a loader rebuilt from its
// DataState continues exactly where the saved one stood. Epochs follow each other without a gap: a batch may
// end one epoch and start the next.
//
// Packing (packed true): each row also gets segment ids and position ids for its T inputs, so that several
// documents in one row do not attend to each other: the segment id starts at 0 and increases by one at each
// document start inside the row (documents are maximal runs of equal ids, as kernels/*_attention.h expect);
// the position id counts from 0 at each document start. The row's first document, usually cut by the
// window start, also counts from 0 at the row start, so positions stay below T (a learned position table has
// T rows). Targets are left as they are: the last input of a document predicts the first token of the next,
// as in an unpacked stream.
//
// Loss mask: an optional /<split>/loss_mask (1-D uint8, one entry per token, 0 or 1) marks the tokens whose
// prediction counts; the synthetic tasks (MQAR, passkey, selective copy) mark only their answers. A window
// then carries the mask of its T + 1 tokens beside them.
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

class LmDataset {
 public:
  // Opens `path` and checks the split's datasets (shape, type, document starts: 1-D, starting at 0, never
  // decreasing, none beyond the stream) and the tokenizer. Token ids are checked as they are read.
  static LmDataset open(const std::filesystem::path& path, std::string_view split);

  const std::string& file_name() const { return file_.name(); }
  const std::string& split() const { return split_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  std::int64_t num_tokens() const { return num_tokens_; }
  // Whether the split has doc_offsets (packing needs them).
  bool has_documents() const { return has_documents_; }
  // Whether the split has a loss_mask (header comment).
  bool has_loss_mask() const { return has_loss_mask_; }
  // (documents) start of each document; {0} for a file without doc_offsets, {} for an empty stream.
  const std::vector<std::int64_t>& document_starts() const { return document_starts_; }
  // One past the last token of document `d`.
  std::int64_t document_end(std::size_t d) const;

  // Tokens [start, start + out.size()) into `out`. A token id at or above the vocabulary size is a
  // race::Error naming the file, dataset, position and id.
  void read(std::int64_t start, std::span<std::int32_t> out) const;
  // Loss-mask entries [start, start + out.size()) into `out`; a value other than 0 or 1 is a race::Error
  // naming the file, position and value. Needs has_loss_mask().
  void read_loss_mask(std::int64_t start, std::span<std::uint8_t> out) const;
  // Reads the whole stream in chunks, checking every id and mask value (for a dry run; training checks as it
  // reads).
  void check_all_tokens() const;

 private:
  LmDataset(SlicedFile file, std::string split);

  SlicedFile file_;
  std::string split_;
  std::string tokens_path_;     // "/<split>/tokens"
  std::string loss_mask_path_;  // "/<split>/loss_mask"
  Tokenizer tokenizer_;
  std::int64_t num_tokens_ = 0;
  bool has_documents_ = false;
  bool has_loss_mask_ = false;
  std::vector<std::int64_t> document_starts_;
};

struct LmBatchOptions {
  bool cross_documents = true;  // false: windows lie inside single documents
  bool packed = false;          // fill segment_ids and position_ids (needs doc_offsets)
};

struct LmBatch {
  std::int64_t rows = 0;                 // B (the last validation batch may have fewer than asked)
  std::int64_t context = 0;              // T
  std::vector<std::int32_t> tokens;        // (B, T + 1) inputs tokens[:, :T], targets tokens[:, 1:]
  std::vector<std::int32_t> segment_ids;   // (B, T) when packed, else empty
  std::vector<std::int32_t> position_ids;  // (B, T) when packed, else empty
  std::vector<std::uint8_t> loss_mask;     // (B, T + 1) beside tokens when the file has one, else empty
};

// The windows of a dataset for one context (header comment): a count and each one's first token.
class LmWindows {
 public:
  // Errors: context < 1; a stream shorter than T + 1 tokens; with cross_documents false, no document of at
  // least T + 1 tokens (naming the longest document's length); packed without doc_offsets.
  LmWindows(const LmDataset& data, std::int64_t context, LmBatchOptions options);

  std::int64_t size() const { return size_; }
  std::int64_t start(std::int64_t window) const;
  // Reads window `window` into row `row` of `batch` (tokens, the loss mask when the file has one, and segment
  // and position ids when packed).
  void fill_row(std::int64_t window, std::int64_t row, LmBatch& batch) const;
  std::int64_t context() const { return context_; }
  bool packed() const { return options_.packed; }
  bool has_loss_mask() const { return data_->has_loss_mask(); }

 private:
  const LmDataset* data_;
  std::int64_t context_;
  LmBatchOptions options_;
  std::int64_t size_ = 0;
  std::vector<std::int64_t> starts_;  // (windows) with cross_documents false; empty otherwise (i * (T + 1))
};

// Training batches: B windows at a time in the epoch order, cycling epochs forever.
class LmBatcher {
 public:
  // `data` must outlive the batcher. `state` resumes a saved position (index below windows_per_epoch();
  // otherwise a race::Error says the data or context changed). `shard` picks this rank's rows of each batch.
  LmBatcher(const LmDataset& data, std::int64_t context, std::int64_t batch_size, std::uint64_t seed,
            LmBatchOptions options = {}, DataState state = {}, BatchShard shard = {});
  // The batcher keeps a pointer to its dataset, so a temporary one is refused at compile time.
  LmBatcher(LmDataset&& data, std::int64_t context, std::int64_t batch_size, std::uint64_t seed,
            LmBatchOptions options = {}, DataState state = {}, BatchShard shard = {}) = delete;

  // The shard's rows (B / world) of the next global batch of B windows.
  LmBatch next();
  // The position after the batches handed out so far; a batcher built with it continues identically.
  const DataState& state() const { return state_; }
  std::int64_t windows_per_epoch() const { return windows_.size(); }

 private:
  LmWindows windows_;
  std::int64_t batch_size_;
  std::uint64_t seed_;
  DataState state_;
  BatchShard shard_;
  std::int64_t shard_rows_;          // B / world
  std::vector<std::int64_t> order_;  // (windows) this epoch's permutation of window indices
};

// The fixed validation subset: the first `count` windows of `data` in file order, in batches of
// `batch_size` rows (the last batch holds the remainder). More windows than the split has is a race::Error.
// With a shard, only batches shard.rank, shard.rank + world, ... are read and returned (data-parallel
// validation: each rank scores its own batches).
std::vector<LmBatch> validation_batches(const LmDataset& data, std::int64_t context, std::int64_t batch_size,
                                        std::int64_t count, LmBatchOptions options = {},
                                        BatchShard shard = {});

}  // namespace race::train
