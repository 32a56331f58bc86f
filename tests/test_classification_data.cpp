// Tests of lib/train/classification_data: rows, key masks and labels as stored, num_classes from the split
// group or the root, a permutation of rows per epoch, resume equivalence, evaluation batches in file order,
// and every bad input (label, length, token id, type, shape, missing pieces) naming file and value.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/hdf5_io.h"
#include "test_support.h"
#include "train/classification_data.h"
#include "train/tokenizer.h"

namespace race::train {
namespace {

using race::test::error_of;
using race::test::contains;

namespace fs = std::filesystem;

constexpr std::int64_t kRows = 13;
constexpr std::int64_t kLength = 6;

// Row r: tokens 10 r + t for t < length r (= 1 + r % 6), the pad id 256 after; label r % 3.
struct Table {
  std::vector<std::int32_t> inputs;   // (kRows, kLength)
  std::vector<std::int64_t> lengths;  // (kRows)
  std::vector<std::int64_t> labels;   // (kRows)
};

Table table() {
  Table t;
  for (std::int64_t r = 0; r < kRows; ++r) {
    t.lengths.push_back(1 + r % kLength);
    t.labels.push_back(r % 3);
    for (std::int64_t c = 0; c < kLength; ++c) {
      t.inputs.push_back(c < t.lengths.back() ? static_cast<std::int32_t>(10 * r + c) : 256);
    }
  }
  return t;
}

class ClassificationData : public race::test::TempDirTest {
 protected:
  ClassificationData() : TempDirTest("classification") {}

  // /train/{inputs, lengths, labels} from `t`, num_classes on the root and/or the split group.
  fs::path write(const Table& t, std::optional<std::int64_t> root_classes = 3,
                 std::optional<std::int64_t> split_classes = {}, const std::string& name = "cls.h5") const {
    const fs::path file = dir_ / name;
    Hdf5Writer writer = Hdf5Writer::create(file);
    const auto rows = static_cast<std::int64_t>(t.lengths.size());
    writer.write("/train/inputs", {rows, static_cast<std::int64_t>(t.inputs.size()) / std::max<std::int64_t>(rows, 1)},
                 std::span<const std::int32_t>(t.inputs));
    writer.write("/train/lengths", {rows}, std::span<const std::int64_t>(t.lengths));
    writer.write("/train/labels", {static_cast<std::int64_t>(t.labels.size())}, std::span<const std::int64_t>(t.labels));
    if (root_classes) writer.write_int64_attribute("/", "num_classes", *root_classes);
    if (split_classes) writer.write_int64_attribute("/train", "num_classes", *split_classes);
    write_tokenizer(writer, byte_level_tokenizer());
    writer.commit();
    return file;
  }

};

// The source row of each batch row (its first token is 10 x row).
std::vector<std::int64_t> source_rows(const ClassificationBatch& batch) {
  std::vector<std::int64_t> rows;
  for (std::int64_t b = 0; b < batch.rows; ++b) rows.push_back(batch.inputs[static_cast<std::size_t>(b * batch.length)] / 10);
  return rows;
}

void expect_rows_as_stored(const ClassificationBatch& batch) {
  const Table t = table();
  const std::vector<std::int64_t> rows = source_rows(batch);
  for (std::int64_t b = 0; b < batch.rows; ++b) {
    const auto r = static_cast<std::size_t>(rows[static_cast<std::size_t>(b)]);
    EXPECT_EQ(batch.labels[static_cast<std::size_t>(b)], t.labels[r]);
    for (std::int64_t c = 0; c < kLength; ++c) {
      const auto i = static_cast<std::size_t>(b * kLength + c);
      EXPECT_EQ(batch.inputs[i], t.inputs[r * kLength + static_cast<std::size_t>(c)]);
      EXPECT_EQ(batch.key_mask[i], c < t.lengths[r] ? 1 : 0);
    }
  }
}

TEST_F(ClassificationData, BatchesHoldRowsMasksAndLabelsAsStored) {
  const ClassificationDataset data = ClassificationDataset::open(write(table()), "train");
  EXPECT_EQ(data.num_rows(), kRows);
  EXPECT_EQ(data.sequence_length(), kLength);
  EXPECT_EQ(data.num_classes(), 3);
  ClassificationBatcher batcher(data, 4, 11);
  std::vector<std::vector<std::int64_t>> epochs(2);
  // 13 rows in batches of 4: the 4th batch ends epoch 0 and starts epoch 1.
  for (int i = 0; i < 6; ++i) {
    const ClassificationBatch batch = batcher.next();
    ASSERT_EQ(batch.inputs.size(), 4u * kLength);
    ASSERT_EQ(batch.key_mask.size(), 4u * kLength);
    ASSERT_EQ(batch.labels.size(), 4u);
    expect_rows_as_stored(batch);
    for (const std::int64_t r : source_rows(batch)) {
      auto& epoch = epochs[0].size() < kRows ? epochs[0] : epochs[1];
      epoch.push_back(r);
    }
  }
  EXPECT_EQ(batcher.state(), (DataState{1, 11}));
  std::vector<std::int64_t> sorted = epochs[0];
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t r = 0; r < kRows; ++r) EXPECT_EQ(sorted[static_cast<std::size_t>(r)], r);
  EXPECT_NE(epochs[0], sorted);  // shuffled, not file order
  EXPECT_NE(std::vector<std::int64_t>(epochs[0].begin(), epochs[0].begin() + 11), epochs[1]);
}

TEST_F(ClassificationData, DeterministicAndResumable) {
  const ClassificationDataset data = ClassificationDataset::open(write(table()), "train");
  ClassificationBatcher uninterrupted(data, 5, 77);
  std::vector<ClassificationBatch> reference;
  for (int i = 0; i < 12; ++i) reference.push_back(uninterrupted.next());
  ClassificationBatcher other_seed(data, 5, 78);
  EXPECT_NE(other_seed.next().inputs, reference[0].inputs);
  for (const int k : {0, 2, 5, 9}) {
    ClassificationBatcher first(data, 5, 77);
    for (int i = 0; i < k; ++i) EXPECT_EQ(first.next().inputs, reference[static_cast<std::size_t>(i)].inputs);
    const DataState restored = nlohmann::json::parse(nlohmann::json(first.state()).dump()).get<DataState>();
    ClassificationBatcher resumed(data, 5, 77, restored);
    for (int i = k; i < 12; ++i) {
      const ClassificationBatch batch = resumed.next();
      EXPECT_EQ(batch.inputs, reference[static_cast<std::size_t>(i)].inputs);
      EXPECT_EQ(batch.key_mask, reference[static_cast<std::size_t>(i)].key_mask);
      EXPECT_EQ(batch.labels, reference[static_cast<std::size_t>(i)].labels);
    }
  }
  const std::string message = error_of([&] { ClassificationBatcher(data, 5, 77, DataState{0, 13}); });
  EXPECT_TRUE(contains(message, "index 13 is not below the 13 rows")) << message;
}

TEST_F(ClassificationData, ValidationBatchesAreTheFirstRowsInFileOrder) {
  const ClassificationDataset data = ClassificationDataset::open(write(table()), "train");
  const std::vector<ClassificationBatch> batches = validation_batches(data, 4, 6);
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(source_rows(batches[0]), (std::vector<std::int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(source_rows(batches[1]), (std::vector<std::int64_t>{4, 5}));
  EXPECT_EQ(batches[1].rows, 2);
  EXPECT_EQ(batches[1].inputs.size(), 2u * kLength);
  expect_rows_as_stored(batches[0]);
  expect_rows_as_stored(batches[1]);
  EXPECT_TRUE(contains(error_of([&] { validation_batches(data, 4, 14); }), "14 validation rows asked for"));
}

TEST_F(ClassificationData, NumClassesFromSplitGroupOrRoot) {
  EXPECT_EQ(ClassificationDataset::open(write(table(), {}, 4, "split.h5"), "train").num_classes(), 4);
  EXPECT_EQ(ClassificationDataset::open(write(table(), 5, 5, "both.h5"), "train").num_classes(), 5);
  const fs::path disagree = write(table(), 5, 4, "disagree.h5");
  EXPECT_TRUE(contains(error_of([&] { ClassificationDataset::open(disagree, "train"); }),
                       "is 4 on \"/train\" but 5 on the root"));
  const fs::path none = write(table(), {}, {}, "none.h5");
  const std::string message = error_of([&] { ClassificationDataset::open(none, "train"); });
  EXPECT_TRUE(contains(message, none.string())) << message;
  EXPECT_TRUE(contains(message, "\"num_classes\" not found")) << message;
  EXPECT_TRUE(contains(error_of([&] { ClassificationDataset::open(write(table(), 0, {}, "zero.h5"), "train"); }),
                       "\"num_classes\" is 0"));
}

TEST_F(ClassificationData, LabelAtOrAboveNumClassesIsNamed) {
  Table t = table();
  t.labels[7] = 3;
  const fs::path file = write(t);
  const std::string message = error_of([&] { ClassificationDataset::open(file, "train"); });
  EXPECT_TRUE(contains(message, file.string())) << message;
  EXPECT_TRUE(contains(message, "\"/train/labels\": row 7 has label 3")) << message;
  EXPECT_TRUE(contains(message, "num_classes - 1 = 2")) << message;
  t.labels[7] = -1;
  EXPECT_TRUE(contains(error_of([&] { ClassificationDataset::open(write(t, 3, {}, "neg.h5"), "train"); }),
                       "row 7 has label -1"));
}

TEST_F(ClassificationData, LengthsOutsideOneToTAreErrors) {
  for (const std::int64_t bad : {std::int64_t{0}, kLength + 1}) {
    Table t = table();
    t.lengths[4] = bad;
    const std::string message = error_of([&] { ClassificationDataset::open(write(t), "train"); });
    EXPECT_TRUE(contains(message, fmt::format("\"/train/lengths\": row 4 has length {}", bad))) << message;
    EXPECT_TRUE(contains(message, "expected 1 to the sequence length 6")) << message;
  }
}

TEST_F(ClassificationData, TokenOutsideVocabularyIsNamedWhenRead) {
  Table t = table();
  t.inputs[static_cast<std::size_t>(9 * kLength + 5)] = 261;
  const fs::path file = write(t);
  const ClassificationDataset data = ClassificationDataset::open(file, "train");
  const std::string message = error_of([&] { validation_batches(data, 13, 13); });
  EXPECT_TRUE(contains(message, file.string())) << message;
  EXPECT_TRUE(contains(message, "\"/train/inputs\": row 9, column 5 holds token id 261")) << message;
  EXPECT_TRUE(contains(error_of([&] { data.check_all_tokens(); }), "row 9, column 5"));
  t.inputs[static_cast<std::size_t>(9 * kLength + 5)] = -4;
  const ClassificationDataset negative = ClassificationDataset::open(write(t, 3, {}, "neg.h5"), "train");
  EXPECT_TRUE(contains(error_of([&] { negative.check_all_tokens(); }), "token id -4"));
}

TEST_F(ClassificationData, MissingFileDatasetsTypesAndShapesAreErrors) {
  const fs::path missing = dir_ / "nope.h5";
  EXPECT_TRUE(contains(error_of([&] { ClassificationDataset::open(missing, "train"); }), "no such file"));
  const fs::path file = write(table());
  EXPECT_TRUE(contains(error_of([&] { ClassificationDataset::open(file, "test"); }), "split \"test\" not found"));

  Table short_labels = table();
  short_labels.labels.pop_back();
  std::string message = error_of([&] { ClassificationDataset::open(write(short_labels, 3, {}, "short.h5"), "train"); });
  EXPECT_TRUE(contains(message, "\"/train/labels\": expected shape [13]")) << message;
  EXPECT_TRUE(contains(message, "got [12]")) << message;

  const fs::path floats = dir_ / "floats.h5";
  const fs::path flat = dir_ / "flat.h5";
  const fs::path no_lengths = dir_ / "no_lengths.h5";
  {
    const std::vector<float> f(kRows * kLength, 1.0f);
    const std::vector<std::int32_t> i(kRows, 1);
    Hdf5Writer a = Hdf5Writer::create(floats);
    a.write("/train/inputs", {kRows, kLength}, std::span<const float>(f));
    write_tokenizer(a, byte_level_tokenizer());
    a.commit();
    Hdf5Writer b = Hdf5Writer::create(flat);
    b.write("/train/inputs", {kRows}, std::span<const std::int32_t>(i));
    write_tokenizer(b, byte_level_tokenizer());
    b.commit();
    const Table t = table();
    Hdf5Writer c = Hdf5Writer::create(no_lengths);
    c.write("/train/inputs", {kRows, kLength}, std::span<const std::int32_t>(t.inputs));
    c.write("/train/labels", {kRows}, std::span<const std::int64_t>(t.labels));
    c.write_int64_attribute("/", "num_classes", 3);
    write_tokenizer(c, byte_level_tokenizer());
    c.commit();
  }
  message = error_of([&] { ClassificationDataset::open(floats, "train"); });
  EXPECT_TRUE(contains(message, "\"/train/inputs\": expected integer token ids")) << message;
  EXPECT_TRUE(contains(message, "got float32")) << message;
  EXPECT_TRUE(contains(error_of([&] { ClassificationDataset::open(flat, "train"); }), "expected 2 dimensions"));
  message = error_of([&] { ClassificationDataset::open(no_lengths, "train"); });
  EXPECT_TRUE(contains(message, "\"/train/lengths\" not found")) << message;
}

}  // namespace
}  // namespace race::train
