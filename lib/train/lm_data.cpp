// LM token streams: opening and checking the split, windowing, packing ids, epoch order and validation.
#include "train/lm_data.h"

#include <algorithm>
#include <utility>

#include <fmt/ranges.h>

#include "core/error.h"

namespace race::train {

namespace {

// Chunk of check_all_tokens: 8 MiB of int64 scratch at a time.
constexpr std::int64_t kCheckChunk = std::int64_t{1} << 20;

}  // namespace

LmDataset::LmDataset(SlicedFile file, std::string split) : file_(std::move(file)), split_(std::move(split)) {}

LmDataset LmDataset::open(const std::filesystem::path& path, std::string_view split) {
  LmDataset data(SlicedFile::open(path), std::string(split));
  const std::string& name = data.file_name();
  data.tokens_path_ = "/" + data.split_ + "/tokens";
  if (!data.file_.has_group("/" + data.split_)) fail("{}: split \"{}\" not found (no group \"/{}\")", name, split, split);

  const DatasetInfo tokens = data.file_.dataset_info(data.tokens_path_);
  if (tokens.element_class != ElementClass::integer || tokens.is_signed || tokens.element_size > 4) {
    fail("{}: dataset \"{}\": expected uint8, uint16 or uint32 token ids, got {}", name, data.tokens_path_,
         tokens.type_name);
  }
  if (tokens.shape.size() != 1) {
    fail("{}: dataset \"{}\": expected 1 dimension, got {}", name, data.tokens_path_, tokens.shape.size());
  }
  data.num_tokens_ = tokens.shape[0];
  data.tokenizer_ = read_tokenizer(data.file_);

  data.loss_mask_path_ = "/" + data.split_ + "/loss_mask";
  data.has_loss_mask_ = data.file_.has_dataset(data.loss_mask_path_);
  if (data.has_loss_mask_) {
    const DatasetInfo mask = data.file_.dataset_info(data.loss_mask_path_);
    if (mask.element_class != ElementClass::integer || mask.is_signed || mask.element_size != 1) {
      fail("{}: dataset \"{}\": expected uint8 (0 or 1 per token), got {}", name, data.loss_mask_path_,
           mask.type_name);
    }
    if (mask.shape.size() != 1 || mask.shape[0] != data.num_tokens_) {
      fail("{}: dataset \"{}\": expected one entry per token ({}), got shape {}", name, data.loss_mask_path_,
           data.num_tokens_, fmt::join(mask.shape, " x "));
    }
  }

  const std::string offsets_path = "/" + data.split_ + "/doc_offsets";
  data.has_documents_ = data.file_.has_dataset(offsets_path);
  if (!data.has_documents_) {
    if (data.num_tokens_ > 0) data.document_starts_ = {0};
    return data;
  }
  const ArrayData<std::uint64_t> offsets = data.file_.read_uint64(offsets_path);
  if (offsets.shape.size() != 1) {
    fail("{}: dataset \"{}\": expected 1 dimension, got {}", name, offsets_path, offsets.shape.size());
  }
  const auto& starts = offsets.values;
  if (data.num_tokens_ > 0 && (starts.empty() || starts[0] != 0)) {
    fail("{}: dataset \"{}\": the first document must start at 0, got {}", name, offsets_path,
         starts.empty() ? std::string("no documents") : std::to_string(starts[0]));
  }
  for (std::size_t d = 0; d < starts.size(); ++d) {
    if (starts[d] > static_cast<std::uint64_t>(data.num_tokens_)) {
      fail("{}: dataset \"{}\": document {} starts at {}, beyond the {} tokens of \"{}\"", name, offsets_path, d,
           starts[d], data.num_tokens_, data.tokens_path_);
    }
    if (d > 0 && starts[d] < starts[d - 1]) {
      fail("{}: dataset \"{}\": document starts must not decrease, but document {} starts at {} and document "
           "{} at {}",
           name, offsets_path, d - 1, starts[d - 1], d, starts[d]);
    }
  }
  data.document_starts_.assign(starts.begin(), starts.end());
  return data;
}

std::int64_t LmDataset::document_end(std::size_t d) const {
  RACE_CHECK(d < document_starts_.size(), "document {} of {}", d, document_starts_.size());
  return d + 1 < document_starts_.size() ? document_starts_[d + 1] : num_tokens_;
}

void LmDataset::read(std::int64_t start, std::span<std::int32_t> out) const {
  const auto count = static_cast<std::int64_t>(out.size());
  std::vector<std::int64_t> raw(out.size());  // (count) ids as stored, widened
  file_.read_rows(tokens_path_, start, count, raw);
  const std::int64_t vocab = tokenizer_.vocab_size;
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t id = raw[static_cast<std::size_t>(i)];
    if (id >= vocab) {
      fail("{}: dataset \"{}\": token id {} at position {} is not below the vocabulary size {}", file_name(),
           tokens_path_, id, start + i, vocab);
    }
    out[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(id);
  }
}

void LmDataset::read_loss_mask(std::int64_t start, std::span<std::uint8_t> out) const {
  RACE_CHECK(has_loss_mask_, "{} has no loss mask", file_name());
  const auto count = static_cast<std::int64_t>(out.size());
  std::vector<std::int64_t> raw(out.size());  // (count) values as stored, widened
  file_.read_rows(loss_mask_path_, start, count, raw);
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t value = raw[static_cast<std::size_t>(i)];
    if (value > 1) {
      fail("{}: dataset \"{}\": value {} at position {}; a loss mask holds 0 (context) or 1 (scored)",
           file_name(), loss_mask_path_, value, start + i);
    }
    out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(value);
  }
}

void LmDataset::check_all_tokens() const {
  std::vector<std::int32_t> chunk;
  std::vector<std::uint8_t> mask_chunk;
  for (std::int64_t start = 0; start < num_tokens_; start += kCheckChunk) {
    chunk.resize(static_cast<std::size_t>(std::min(kCheckChunk, num_tokens_ - start)));
    read(start, chunk);
    if (!has_loss_mask_) continue;
    mask_chunk.resize(chunk.size());
    read_loss_mask(start, mask_chunk);
  }
}

LmWindows::LmWindows(const LmDataset& data, std::int64_t context, LmBatchOptions options)
    : data_(&data), context_(context), options_(options) {
  if (context < 1) fail("LM data: context must be at least 1, got {}", context);
  const std::int64_t span = context + 1;
  if (options.packed && !data.has_documents()) {
    fail("{}: packed rows need the document starts \"/{}/doc_offsets\", which the file lacks", data.file_name(),
         data.split());
  }
  if (options.cross_documents) {
    if (data.num_tokens() < span) {
      fail("{}: dataset \"/{}/tokens\" holds {} tokens, fewer than context + 1 = {}", data.file_name(),
           data.split(), data.num_tokens(), span);
    }
    size_ = data.num_tokens() / span;
    return;
  }
  std::int64_t longest = 0;
  for (std::size_t d = 0; d < data.document_starts().size(); ++d) {
    const std::int64_t begin = data.document_starts()[d];
    const std::int64_t length = data.document_end(d) - begin;
    longest = std::max(longest, length);
    for (std::int64_t j = 0; j < length / span; ++j) starts_.push_back(begin + j * span);
  }
  if (starts_.empty()) {
    fail("{}: split \"{}\": context + 1 = {} tokens do not fit in any document (the longest has {} tokens), and "
         "windows may not cross documents (cross_documents is false)",
         data.file_name(), data.split(), span, longest);
  }
  size_ = static_cast<std::int64_t>(starts_.size());
}

std::int64_t LmWindows::start(std::int64_t window) const {
  RACE_CHECK(window >= 0 && window < size_, "window {} of {}", window, size_);
  return options_.cross_documents ? window * (context_ + 1) : starts_[static_cast<std::size_t>(window)];
}

void LmWindows::fill_row(std::int64_t window, std::int64_t row, LmBatch& batch) const {
  const std::int64_t first = start(window);
  const std::int64_t span = context_ + 1;
  data_->read(first, std::span<std::int32_t>(batch.tokens).subspan(static_cast<std::size_t>(row * span),
                                                                   static_cast<std::size_t>(span)));
  if (data_->has_loss_mask()) {
    data_->read_loss_mask(first, std::span<std::uint8_t>(batch.loss_mask)
                                     .subspan(static_cast<std::size_t>(row * span), static_cast<std::size_t>(span)));
  }
  if (!options_.packed) return;
  std::int32_t* segments = batch.segment_ids.data() + row * context_;
  std::int32_t* positions = batch.position_ids.data() + row * context_;
  // Document starts after the window's first token, in order; equal starts (empty documents) count once.
  const std::vector<std::int64_t>& starts = data_->document_starts();
  auto next_start = std::upper_bound(starts.begin(), starts.end(), first);
  std::int32_t segment = 0;
  std::int64_t segment_begin = 0;
  for (std::int64_t t = 0; t < context_; ++t) {
    if (next_start != starts.end() && *next_start == first + t) {
      ++segment;
      segment_begin = t;
      while (next_start != starts.end() && *next_start == first + t) ++next_start;
    }
    segments[t] = segment;
    positions[t] = static_cast<std::int32_t>(t - segment_begin);
  }
}

namespace {

LmBatch empty_batch(std::int64_t rows, const LmWindows& windows) {
  LmBatch batch;
  batch.rows = rows;
  batch.context = windows.context();
  batch.tokens.resize(static_cast<std::size_t>(rows * (windows.context() + 1)));
  if (windows.has_loss_mask()) batch.loss_mask.resize(batch.tokens.size());
  if (windows.packed()) {
    batch.segment_ids.resize(static_cast<std::size_t>(rows * windows.context()));
    batch.position_ids.resize(static_cast<std::size_t>(rows * windows.context()));
  }
  return batch;
}

}  // namespace

LmBatcher::LmBatcher(const LmDataset& data, std::int64_t context, std::int64_t batch_size, std::uint64_t seed,
                     LmBatchOptions options, DataState state, BatchShard shard)
    : windows_(data, context, options), batch_size_(batch_size), seed_(seed), state_(state), shard_(shard) {
  if (batch_size < 1) fail("LM data: batch size must be at least 1, got {}", batch_size);
  shard_rows_ = shard.rows(batch_size);
  if (state.index >= windows_.size()) {
    fail("{}: data-loader state index {} is not below the {} windows of an epoch (were the data or the context "
         "changed since the state was saved?)",
         data.file_name(), state.index, windows_.size());
  }
  order_ = epoch_permutation(windows_.size(), seed_, RngStream::lm_order, state_.epoch);
}

LmBatch LmBatcher::next() {
  LmBatch batch = empty_batch(shard_rows_, windows_);
  const std::int64_t first = shard_.rank * shard_rows_;  // this shard's first row of the global batch
  for (std::int64_t row = 0; row < batch_size_; ++row) {
    if (row >= first && row < first + shard_rows_)
      windows_.fill_row(order_[static_cast<std::size_t>(state_.index)], row - first, batch);
    if (++state_.index == windows_.size()) {
      state_ = {state_.epoch + 1, 0};
      order_ = epoch_permutation(windows_.size(), seed_, RngStream::lm_order, state_.epoch);
    }
  }
  return batch;
}

std::vector<LmBatch> validation_batches(const LmDataset& data, std::int64_t context, std::int64_t batch_size,
                                        std::int64_t count, LmBatchOptions options, BatchShard shard) {
  const LmWindows windows(data, context, options);
  if (batch_size < 1) fail("LM validation: batch size must be at least 1, got {}", batch_size);
  if (count < 1 || count > windows.size()) {
    fail("{}: split \"{}\": {} validation windows asked for, but it has {} windows of context + 1 = {} tokens",
         data.file_name(), data.split(), count, windows.size(), context + 1);
  }
  std::vector<LmBatch> batches;
  for (std::int64_t first = shard.rank * batch_size; first < count; first += shard.world * batch_size) {
    const std::int64_t rows = std::min(batch_size, count - first);
    batches.push_back(empty_batch(rows, windows));
    for (std::int64_t row = 0; row < rows; ++row) windows.fill_row(first + row, row, batches.back());
  }
  return batches;
}

}  // namespace race::train
