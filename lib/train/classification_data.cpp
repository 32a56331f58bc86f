// Classification rows: opening and checking the split, per-row reads, epoch order and evaluation batches.
#include "train/classification_data.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "core/error.h"

namespace race::train {

namespace {

// Tokens per chunk of check_all_tokens (8 MiB of int64 scratch), rounded down to whole rows.
constexpr std::int64_t kCheckTokens = std::int64_t{1} << 20;

// A 1-D integer dataset of `rows` values, loaded whole; errors name the file and dataset.
std::vector<std::int64_t> read_column(const Hdf5File& file, const std::string& path, std::int64_t rows,
                                      const std::string& inputs_path) {
  ArrayData<std::int64_t> column = file.read_int64(path);
  if (column.shape.size() != 1 || column.shape[0] != rows) {
    std::string shape;
    for (const std::int64_t d : column.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    fail("{}: dataset \"{}\": expected shape [{}] (one value per row of \"{}\"), got [{}]", file.name(), path,
         rows, inputs_path, shape);
  }
  return std::move(column.values);
}

ClassificationBatch empty_batch(std::int64_t rows, std::int64_t length) {
  ClassificationBatch batch;
  batch.rows = rows;
  batch.length = length;
  batch.inputs.resize(static_cast<std::size_t>(rows * length));
  batch.key_mask.resize(static_cast<std::size_t>(rows * length));
  batch.labels.resize(static_cast<std::size_t>(rows));
  return batch;
}

// Copies row `source` of `data` into row `row` of `batch`.
void fill_row(const ClassificationDataset& data, std::int64_t source, std::int64_t row,
              ClassificationBatch& batch) {
  const std::int64_t length = data.sequence_length();
  const auto offset = static_cast<std::size_t>(row * length);
  data.read_rows(source, 1, std::span<std::int32_t>(batch.inputs).subspan(offset, static_cast<std::size_t>(length)));
  const std::int32_t real = data.lengths()[static_cast<std::size_t>(source)];
  for (std::int64_t t = 0; t < length; ++t) batch.key_mask[offset + static_cast<std::size_t>(t)] = t < real ? 1 : 0;
  batch.labels[static_cast<std::size_t>(row)] = data.labels()[static_cast<std::size_t>(source)];
}

}  // namespace

ClassificationDataset::ClassificationDataset(SlicedFile file, std::string split)
    : file_(std::move(file)), split_(std::move(split)) {}

ClassificationDataset ClassificationDataset::open(const std::filesystem::path& path, std::string_view split) {
  ClassificationDataset data(SlicedFile::open(path), std::string(split));
  const std::string& name = data.file_name();
  const std::string group = "/" + data.split_;
  if (!data.file_.has_group(group)) fail("{}: split \"{}\" not found (no group \"{}\")", name, split, group);
  data.inputs_path_ = group + "/inputs";

  const DatasetInfo inputs = data.file_.dataset_info(data.inputs_path_);
  if (inputs.element_class != ElementClass::integer || (!inputs.is_signed && inputs.element_size >= 8)) {
    fail("{}: dataset \"{}\": expected integer token ids (any integer type but uint64), got {}", name,
         data.inputs_path_, inputs.type_name);
  }
  if (inputs.shape.size() != 2 || inputs.shape[1] < 1) {
    fail("{}: dataset \"{}\": expected 2 dimensions (rows x sequence length >= 1), got {} dimensions", name,
         data.inputs_path_, inputs.shape.size());
  }
  const std::int64_t rows = inputs.shape[0];
  data.sequence_length_ = inputs.shape[1];
  data.tokenizer_ = read_tokenizer(data.file_);

  const bool on_split = data.file_.has_attribute(group, "num_classes");
  const bool on_root = data.file_.has_attribute("/", "num_classes");
  if (!on_split && !on_root) {
    fail("{}: attribute \"num_classes\" not found on \"{}\" or on the root \"/\"", name, group);
  }
  data.num_classes_ = data.file_.read_int64_attribute(on_split ? group : "/", "num_classes");
  if (on_split && on_root && data.file_.read_int64_attribute("/", "num_classes") != data.num_classes_) {
    fail("{}: attribute \"num_classes\" is {} on \"{}\" but {} on the root \"/\"; they must agree", name,
         data.num_classes_, group, data.file_.read_int64_attribute("/", "num_classes"));
  }
  if (data.num_classes_ < 1 || data.num_classes_ > std::numeric_limits<std::int32_t>::max()) {
    fail("{}: attribute \"num_classes\" is {}, expected at least 1", name, data.num_classes_);
  }

  const std::string labels_path = group + "/labels";
  const std::vector<std::int64_t> labels = read_column(data.file_, labels_path, rows, data.inputs_path_);
  const std::string lengths_path = group + "/lengths";
  const std::vector<std::int64_t> lengths = read_column(data.file_, lengths_path, rows, data.inputs_path_);
  data.labels_.resize(static_cast<std::size_t>(rows));
  data.lengths_.resize(static_cast<std::size_t>(rows));
  for (std::size_t row = 0; row < static_cast<std::size_t>(rows); ++row) {
    if (labels[row] < 0 || labels[row] >= data.num_classes_) {
      fail("{}: dataset \"{}\": row {} has label {}, expected 0 to num_classes - 1 = {}", name, labels_path, row,
           labels[row], data.num_classes_ - 1);
    }
    if (lengths[row] < 1 || lengths[row] > data.sequence_length_) {
      fail("{}: dataset \"{}\": row {} has length {}, expected 1 to the sequence length {}", name, lengths_path,
           row, lengths[row], data.sequence_length_);
    }
    data.labels_[row] = static_cast<std::int32_t>(labels[row]);
    data.lengths_[row] = static_cast<std::int32_t>(lengths[row]);
  }
  return data;
}

void ClassificationDataset::read_rows(std::int64_t first, std::int64_t count, std::span<std::int32_t> out) const {
  std::vector<std::int64_t> raw(out.size());  // (count, T) ids as stored, widened
  file_.read_rows(inputs_path_, first, count, raw);
  const std::int64_t vocab = tokenizer_.vocab_size;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] < 0 || raw[i] >= vocab) {
      const auto flat = static_cast<std::int64_t>(i);
      fail("{}: dataset \"{}\": row {}, column {} holds token id {}, expected 0 to vocab_size - 1 = {}",
           file_name(), inputs_path_, first + flat / sequence_length_, flat % sequence_length_, raw[i], vocab - 1);
    }
    out[i] = static_cast<std::int32_t>(raw[i]);
  }
}

void ClassificationDataset::check_all_tokens() const {
  const std::int64_t chunk_rows = std::max<std::int64_t>(1, kCheckTokens / sequence_length_);
  std::vector<std::int32_t> chunk;
  for (std::int64_t first = 0; first < num_rows(); first += chunk_rows) {
    const std::int64_t count = std::min(chunk_rows, num_rows() - first);
    chunk.resize(static_cast<std::size_t>(count * sequence_length_));
    read_rows(first, count, chunk);
  }
}

ClassificationBatcher::ClassificationBatcher(const ClassificationDataset& data, std::int64_t batch_size,
                                             std::uint64_t seed, DataState state, BatchShard shard)
    : data_(&data), batch_size_(batch_size), seed_(seed), state_(state), shard_(shard) {
  if (batch_size < 1) fail("classification data: batch size must be at least 1, got {}", batch_size);
  shard_rows_ = shard.rows(batch_size);
  if (data.num_rows() < 1) fail("{}: split \"{}\" has no rows", data.file_name(), data.split());
  if (state.index >= data.num_rows()) {
    fail("{}: data-loader state index {} is not below the {} rows of split \"{}\" (were the data changed since "
         "the state was saved?)",
         data.file_name(), state.index, data.num_rows(), data.split());
  }
  order_ = epoch_permutation(data.num_rows(), seed_, RngStream::classification_order, state_.epoch);
}

ClassificationBatch ClassificationBatcher::next() {
  ClassificationBatch batch = empty_batch(shard_rows_, data_->sequence_length());
  const std::int64_t first = shard_.rank * shard_rows_;  // this shard's first row of the global batch
  for (std::int64_t row = 0; row < batch_size_; ++row) {
    if (row >= first && row < first + shard_rows_)
      fill_row(*data_, order_[static_cast<std::size_t>(state_.index)], row - first, batch);
    if (++state_.index == data_->num_rows()) {
      state_ = {state_.epoch + 1, 0};
      order_ = epoch_permutation(data_->num_rows(), seed_, RngStream::classification_order, state_.epoch);
    }
  }
  return batch;
}

std::vector<ClassificationBatch> validation_batches(const ClassificationDataset& data,
                                                    std::int64_t batch_size, std::int64_t count,
                                                    BatchShard shard) {
  if (batch_size < 1) fail("classification validation: batch size must be at least 1, got {}", batch_size);
  if (count < 1 || count > data.num_rows()) {
    fail("{}: split \"{}\": {} validation rows asked for, but it has {} rows", data.file_name(), data.split(),
         count, data.num_rows());
  }
  std::vector<ClassificationBatch> batches;
  for (std::int64_t first = shard.rank * batch_size; first < count; first += shard.world * batch_size) {
    const std::int64_t rows = std::min(batch_size, count - first);
    batches.push_back(empty_batch(rows, data.sequence_length()));
    for (std::int64_t row = 0; row < rows; ++row) fill_row(data, first + row, row, batches.back());
  }
  return batches;
}

}  // namespace race::train
