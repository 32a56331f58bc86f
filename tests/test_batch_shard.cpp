// Data-parallel shards of the loaders (BatchShard in data_order.h) against the unsharded loaders: the ranks'
// rows, put side by side, are the single-process batch, across epoch boundaries, with the same loader state
// on every rank; validation batches go round-robin; MLM masks depend on the global row only; and a batch
// that does not split evenly is an error naming both numbers.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/hdf5_io.h"
#include "test_support.h"
#include "train/classification_data.h"
#include "train/data_order.h"
#include "train/lm_data.h"
#include "train/mlm.h"
#include "train/tokenizer.h"

namespace race::train {
namespace {

namespace fs = std::filesystem;

class BatchShards : public race::test::TempDirTest {
 protected:
  BatchShards() : TempDirTest("batch_shard") {}

  // 121 tokens (24 windows of 4 + 1 for context 4) and 10 classification rows of 3 tokens.
  fs::path write() const {
    const fs::path file = dir_ / "data.h5";
    Hdf5Writer writer = Hdf5Writer::create(file);
    std::vector<std::uint16_t> tokens(121);
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::uint16_t>(i);
    writer.write("/train/tokens", {121}, std::span<const std::uint16_t>(tokens));
    std::vector<std::int32_t> inputs(30);
    for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = static_cast<std::int32_t>(i);
    const std::vector<std::int64_t> lengths(10, 3), labels = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0};
    writer.write("/train/inputs", {10, 3}, std::span<const std::int32_t>(inputs));
    writer.write("/train/lengths", {10}, std::span<const std::int64_t>(lengths));
    writer.write("/train/labels", {10}, std::span<const std::int64_t>(labels));
    writer.write_int64_attribute("/", "num_classes", 3);
    write_tokenizer(writer, byte_level_tokenizer());
    writer.commit();
    return file;
  }
};

TEST_F(BatchShards, LmShardsSideBySideAreTheSingleProcessBatch) {
  const LmDataset data = LmDataset::open(write(), "train");
  for (const std::int64_t world : {2, 4}) {
    LmBatcher whole(data, 4, 4, 7);
    std::vector<LmBatcher> ranks;
    for (std::int64_t r = 0; r < world; ++r)
      ranks.emplace_back(data, 4, 4, 7, LmBatchOptions{}, DataState{}, BatchShard{r, world});
    for (int b = 0; b < 15; ++b) {  // 24 windows: batches 6 and 12 start new epochs
      const LmBatch expected = whole.next();
      std::vector<std::int32_t> joined;
      for (LmBatcher& rank : ranks) {
        const LmBatch part = rank.next();
        EXPECT_EQ(part.rows, 4 / world);
        joined.insert(joined.end(), part.tokens.begin(), part.tokens.end());
        EXPECT_EQ(rank.state(), whole.state()) << "world " << world << ", batch " << b;
      }
      EXPECT_EQ(joined, expected.tokens) << "world " << world << ", batch " << b;
    }
  }
}

TEST_F(BatchShards, ValidationBatchesGoRoundRobin) {
  const LmDataset data = LmDataset::open(write(), "train");
  const std::vector<LmBatch> all = validation_batches(data, 4, 2, 11);  // 6 batches, the last of 1 window
  for (const std::int64_t world : {2, 3}) {
    for (std::int64_t r = 0; r < world; ++r) {
      const std::vector<LmBatch> mine = validation_batches(data, 4, 2, 11, {}, BatchShard{r, world});
      ASSERT_EQ(static_cast<std::int64_t>(mine.size()), (6 - r + world - 1) / world);
      for (std::size_t i = 0; i < mine.size(); ++i) {
        const LmBatch& expected = all[static_cast<std::size_t>(r) + i * static_cast<std::size_t>(world)];
        EXPECT_EQ(mine[i].rows, expected.rows);
        EXPECT_EQ(mine[i].tokens, expected.tokens);
      }
    }
  }
}

TEST_F(BatchShards, ClassificationShardsSideBySideAreTheSingleProcessBatch) {
  const ClassificationDataset data = ClassificationDataset::open(write(), "train");
  ClassificationBatcher whole(data, 4, 3);
  ClassificationBatcher first(data, 4, 3, {}, BatchShard{0, 2}), second(data, 4, 3, {}, BatchShard{1, 2});
  for (int b = 0; b < 6; ++b) {  // 10 rows: batches cross epochs
    const ClassificationBatch expected = whole.next();
    const ClassificationBatch x = first.next(), y = second.next();
    std::vector<std::int32_t> inputs = x.inputs, labels = x.labels;
    inputs.insert(inputs.end(), y.inputs.begin(), y.inputs.end());
    labels.insert(labels.end(), y.labels.begin(), y.labels.end());
    EXPECT_EQ(inputs, expected.inputs) << "batch " << b;
    EXPECT_EQ(labels, expected.labels) << "batch " << b;
    EXPECT_EQ(first.state(), whole.state());
    EXPECT_EQ(second.state(), whole.state());
  }
}

TEST(BatchShard, MasksDependOnTheGlobalRowOnly) {
  const Tokenizer tokenizer = byte_level_tokenizer();
  std::vector<std::int32_t> tokens(4 * 40);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::int32_t>(97 + i % 26);
  const MlmBatch whole = mask_tokens(tokens, 4, 40, tokenizer, 5, 3);
  const MlmBatch tail = mask_tokens(std::span<const std::int32_t>(tokens).subspan(80), 2, 40, tokenizer, 5, 3,
                                    kMaskFraction, 2);
  EXPECT_EQ(tail.inputs, std::vector<std::int32_t>(whole.inputs.begin() + 80, whole.inputs.end()));
  EXPECT_EQ(tail.targets, std::vector<std::int32_t>(whole.targets.begin() + 80, whole.targets.end()));
}

TEST(BatchShard, ABatchThatDoesNotSplitEvenlyIsAnError) {
  EXPECT_EQ((BatchShard{1, 4}.rows(8)), 2);
  const std::string message = race::test::error_of([] { BatchShard{0, 2}.rows(3); });
  EXPECT_TRUE(race::test::contains(message, "a batch of 3 rows cannot be split evenly over 2 ranks"))
      << message;
}

}  // namespace
}  // namespace race::train
