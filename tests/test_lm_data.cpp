// Tests of lib/train/lm_data (and the shared data_order): windows exactly as documented (non-overlapping
// T + 1 tokens, inside documents when cross_documents is false), packed segment and position ids, seeded
// epoch order (deterministic, portable, a permutation per epoch), resume equivalence through the JSON state,
// validation batches in file order, the optional loss mask carried beside its tokens, and every bad input
// naming the file, dataset and value.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/hdf5_io.h"
#include "test_support.h"
#include "train/data_order.h"
#include "train/lm_data.h"
#include "train/tokenizer.h"

namespace race::train {
namespace {

using race::test::error_of;
using race::test::contains;

namespace fs = std::filesystem;

class LmData : public race::test::TempDirTest {
 protected:
  LmData() : TempDirTest("lm_data") {}

  // A file with /train/tokens (stored as T), optional /train/doc_offsets and the byte-level tokenizer.
  template <typename T = std::uint16_t>
  fs::path write(const std::vector<T>& tokens, std::optional<std::vector<std::uint64_t>> doc_offsets = {},
                 const std::string& name = "lm.h5") const {
    const fs::path file = dir_ / name;
    Hdf5Writer writer = Hdf5Writer::create(file);
    writer.write("/train/tokens", {static_cast<std::int64_t>(tokens.size())}, std::span<const T>(tokens));
    if (doc_offsets) {
      writer.write("/train/doc_offsets", {static_cast<std::int64_t>(doc_offsets->size())},
                   std::span<const std::uint64_t>(*doc_offsets));
    }
    write_tokenizer(writer, byte_level_tokenizer());
    writer.commit();
    return file;
  }

  // A file with /train/tokens (uint16), /train/doc_offsets and /train/loss_mask stored as M.
  template <typename M = std::uint8_t>
  fs::path write_masked(const std::vector<std::uint16_t>& tokens, const std::vector<std::uint64_t>& doc_offsets,
                        const std::vector<M>& mask, std::vector<std::int64_t> mask_shape = {},
                        const std::string& name = "masked.h5") const {
    const fs::path file = dir_ / name;
    Hdf5Writer writer = Hdf5Writer::create(file);
    writer.write("/train/tokens", {static_cast<std::int64_t>(tokens.size())}, std::span<const std::uint16_t>(tokens));
    writer.write("/train/doc_offsets", {static_cast<std::int64_t>(doc_offsets.size())},
                 std::span<const std::uint64_t>(doc_offsets));
    if (mask_shape.empty()) mask_shape = {static_cast<std::int64_t>(mask.size())};
    writer.write("/train/loss_mask", mask_shape, std::span<const M>(mask));
    write_tokenizer(writer, byte_level_tokenizer());
    writer.commit();
    return file;
  }
};

// Token i of the stream is i % 250, so a window's first token tells its start (streams here are < 250 long).
std::vector<std::uint16_t> counting(std::int64_t n) {
  std::vector<std::uint16_t> tokens(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) tokens[static_cast<std::size_t>(i)] = static_cast<std::uint16_t>(i % 250);
  return tokens;
}

// The first token of each row of a batch (= the window start for counting streams).
std::vector<std::int32_t> row_starts(const LmBatch& batch) {
  std::vector<std::int32_t> starts;
  for (std::int64_t row = 0; row < batch.rows; ++row) {
    starts.push_back(batch.tokens[static_cast<std::size_t>(row * (batch.context + 1))]);
  }
  return starts;
}

void expect_same(const LmBatch& a, const LmBatch& b) {
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.segment_ids, b.segment_ids);
  EXPECT_EQ(a.position_ids, b.position_ids);
}

TEST_F(LmData, OpensSplitAndReadsWindowsOfConsecutiveTokens) {
  const LmDataset data = LmDataset::open(write(counting(23)), "train");
  EXPECT_EQ(data.num_tokens(), 23);
  EXPECT_FALSE(data.has_documents());
  EXPECT_EQ(data.document_starts(), std::vector<std::int64_t>{0});
  EXPECT_EQ(data.tokenizer().vocab_size, 261);

  // T = 4: windows of 5 tokens at 0, 5, 10, 15; tokens 20..22 unused.
  LmBatcher batcher(data, 4, 4, 7);
  EXPECT_EQ(batcher.windows_per_epoch(), 4);
  const LmBatch batch = batcher.next();
  ASSERT_EQ(batch.tokens.size(), 4u * 5u);
  EXPECT_TRUE(batch.segment_ids.empty());
  EXPECT_TRUE(batch.position_ids.empty());
  std::vector<std::int32_t> starts = row_starts(batch);
  for (std::int64_t row = 0; row < 4; ++row) {
    for (std::int64_t t = 0; t < 5; ++t) {
      EXPECT_EQ(batch.tokens[static_cast<std::size_t>(row * 5 + t)], starts[static_cast<std::size_t>(row)] + t);
    }
  }
  std::sort(starts.begin(), starts.end());
  EXPECT_EQ(starts, (std::vector<std::int32_t>{0, 5, 10, 15}));
  EXPECT_EQ(batcher.state(), (DataState{1, 0}));
}

TEST_F(LmData, AcceptsUint8AndUint32Storage) {
  const std::vector<std::uint8_t> small = {1, 2, 3, 4, 5};
  const std::vector<std::uint32_t> wide = {1, 2, 260, 4, 5};
  const LmDataset small_data = LmDataset::open(write(small, {}, "u8.h5"), "train");
  LmBatcher a(small_data, 4, 1, 0);
  EXPECT_EQ(a.next().tokens, (std::vector<std::int32_t>{1, 2, 3, 4, 5}));
  const LmDataset wide_data = LmDataset::open(write(wide, {}, "u32.h5"), "train");
  LmBatcher b(wide_data, 4, 1, 0);
  EXPECT_EQ(b.next().tokens, (std::vector<std::int32_t>{1, 2, 260, 4, 5}));
}

TEST_F(LmData, EveryEpochIsAPermutationAndEpochsDiffer) {
  const LmDataset data = LmDataset::open(write(counting(200)), "train");
  LmBatcher batcher(data, 3, 10, 123);  // 50 windows of 4 tokens, 5 batches per epoch
  ASSERT_EQ(batcher.windows_per_epoch(), 50);
  std::vector<std::vector<std::int32_t>> epochs(3);
  for (auto& epoch : epochs) {
    for (int b = 0; b < 5; ++b) {
      const std::vector<std::int32_t> starts = row_starts(batcher.next());
      epoch.insert(epoch.end(), starts.begin(), starts.end());
    }
    std::vector<std::int32_t> sorted = epoch;
    std::sort(sorted.begin(), sorted.end());
    for (std::int32_t w = 0; w < 50; ++w) EXPECT_EQ(sorted[static_cast<std::size_t>(w)], w * 4);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
}

TEST_F(LmData, BatchesCrossEpochBoundariesWithoutGaps) {
  const LmDataset data = LmDataset::open(write(counting(25)), "train");
  LmBatcher batcher(data, 4, 2, 5);  // 5 windows, batches of 2: the third batch spans epochs 0 and 1
  std::vector<std::int32_t> seen;
  for (int b = 0; b < 5; ++b) {
    const std::vector<std::int32_t> starts = row_starts(batcher.next());
    seen.insert(seen.end(), starts.begin(), starts.end());
  }
  EXPECT_EQ(batcher.state(), (DataState{2, 0}));
  std::vector<std::int32_t> expected;
  for (const std::int64_t epoch : {0, 1}) {
    for (const std::int64_t w : epoch_permutation(5, 5, RngStream::lm_order, epoch)) {
      expected.push_back(static_cast<std::int32_t>(w * 5));
    }
  }
  EXPECT_EQ(seen, expected);
}

TEST_F(LmData, OrderIsDeterministicAndPortable) {
  const LmDataset data = LmDataset::open(write(counting(200)), "train");
  LmBatcher a(data, 3, 8, 99);
  LmBatcher b(data, 3, 8, 99);
  LmBatcher c(data, 3, 8, 100);
  bool differs = false;
  for (int i = 0; i < 20; ++i) {
    const LmBatch batch = a.next();
    expect_same(batch, b.next());
    differs = differs || batch.tokens != c.next().tokens;
  }
  EXPECT_TRUE(differs);
  // seed_seq and mt19937_64 are specified bit for bit, and the shuffle is our own: these values hold on any
  // conforming standard library. A change here silently changes every resumed run's data order.
  EXPECT_EQ(epoch_permutation(10, 42, RngStream::lm_order, 0),
            (std::vector<std::int64_t>{8, 0, 1, 5, 4, 3, 6, 9, 2, 7}));
}

TEST_F(LmData, ResumingFromSavedStateGivesTheSameBatches) {
  const LmDataset data = LmDataset::open(write(counting(240), std::vector<std::uint64_t>{0, 17, 60, 61, 150}),
                                         "train");
  for (const bool packed : {false, true}) {
    const LmBatchOptions options{.cross_documents = true, .packed = packed};
    LmBatcher uninterrupted(data, 6, 5, 2024, options);  // 34 windows: 7 batches span an epoch
    std::vector<LmBatch> reference;
    for (int i = 0; i < 20; ++i) reference.push_back(uninterrupted.next());
    for (const int k : {0, 3, 7, 11}) {
      LmBatcher first(data, 6, 5, 2024, options);
      for (int i = 0; i < k; ++i) expect_same(first.next(), reference[static_cast<std::size_t>(i)]);
      const std::string saved = nlohmann::json(first.state()).dump();
      const DataState restored = nlohmann::json::parse(saved).get<DataState>();
      EXPECT_EQ(restored, first.state());
      LmBatcher resumed(data, 6, 5, 2024, options, restored);
      for (int i = k; i < 20; ++i) expect_same(resumed.next(), reference[static_cast<std::size_t>(i)]);
    }
  }
}

TEST_F(LmData, StateJsonIsStrict) {
  EXPECT_EQ(nlohmann::json(DataState{3, 14}), nlohmann::json::parse(R"({"epoch": 3, "index": 14})"));
  const auto parse = [](const char* text) { return nlohmann::json::parse(text).get<DataState>(); };
  EXPECT_TRUE(contains(error_of([&] { parse(R"({"epoch": 1})"); }), "\"index\" missing"));
  EXPECT_TRUE(contains(error_of([&] { parse(R"({"epoch": -1, "index": 0})"); }), "\"epoch\" must be non-negative"));
  EXPECT_TRUE(contains(error_of([&] { parse(R"({"epoch": 1, "index": 2.5})"); }), "\"index\" must be an integer"));
  EXPECT_TRUE(contains(error_of([&] { parse(R"({"epoch": 1, "index": 2, "seed": 3})"); }), "unknown key \"seed\""));
  EXPECT_TRUE(contains(error_of([&] { parse("[1, 2]"); }), "expected a JSON object"));

  const LmDataset data = LmDataset::open(write(counting(25)), "train");
  const std::string message = error_of([&] { LmBatcher(data, 4, 1, 0, {}, DataState{0, 5}); });
  EXPECT_TRUE(contains(message, "index 5 is not below the 5 windows")) << message;
}

TEST_F(LmData, WindowsStayInsideDocumentsWhenAsked) {
  // Documents [0, 3), [3, 15), [15, 22), [22, 33); T = 4 -> 5-token windows 3, 8 | 15 | 22, 27.
  const fs::path file = write(counting(33), std::vector<std::uint64_t>{0, 3, 15, 22});
  const LmDataset data = LmDataset::open(file, "train");
  EXPECT_TRUE(data.has_documents());
  const LmBatchOptions inside{.cross_documents = false};
  LmBatcher batcher(data, 4, 5, 1, inside);
  EXPECT_EQ(batcher.windows_per_epoch(), 5);
  std::vector<std::int32_t> starts = row_starts(batcher.next());
  std::sort(starts.begin(), starts.end());
  EXPECT_EQ(starts, (std::vector<std::int32_t>{3, 8, 15, 22, 27}));
  // Crossing documents, the same stream gives windows 0, 5, ..., 25.
  EXPECT_EQ(LmBatcher(data, 4, 1, 1).windows_per_epoch(), 6);

  // T = 11 needs 12 tokens: only document [3, 15) holds them. T = 12 fits nowhere.
  EXPECT_EQ(LmBatcher(data, 11, 1, 1, inside).windows_per_epoch(), 1);
  const std::string message = error_of([&] { LmBatcher(data, 12, 1, 1, inside); });
  EXPECT_TRUE(contains(message, file.string())) << message;
  EXPECT_TRUE(contains(message, "the longest has 12 tokens")) << message;
  EXPECT_TRUE(contains(message, "context + 1 = 13")) << message;
}

TEST_F(LmData, PackedRowsHaveSegmentAndPositionIds) {
  // Documents start at 0, 3, 3 (an empty document), 15, 22; T = 10 -> windows at 0, 11, 22.
  const LmDataset data = LmDataset::open(write(counting(33), std::vector<std::uint64_t>{0, 3, 3, 15, 22}),
                                         "train");
  const std::vector<LmBatch> batches = validation_batches(data, 10, 2, 3, {.packed = true});
  ASSERT_EQ(batches.size(), 2u);
  ASSERT_EQ(batches[0].rows, 2);
  ASSERT_EQ(batches[1].rows, 1);
  EXPECT_EQ(row_starts(batches[0]), (std::vector<std::int32_t>{0, 11}));
  EXPECT_EQ(row_starts(batches[1]), (std::vector<std::int32_t>{22}));
  EXPECT_EQ(batches[0].segment_ids, (std::vector<std::int32_t>{0, 0, 0, 1, 1, 1, 1, 1, 1, 1,  //
                                                               0, 0, 0, 0, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(batches[0].position_ids, (std::vector<std::int32_t>{0, 1, 2, 0, 1, 2, 3, 4, 5, 6,  //
                                                                0, 1, 2, 3, 0, 1, 2, 3, 4, 5}));
  // A window that starts exactly at a document start is one segment counting from 0.
  EXPECT_EQ(batches[1].segment_ids, std::vector<std::int32_t>(10, 0));
  EXPECT_EQ(batches[1].position_ids, (std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(batches[1].tokens.size(), 11u);

  // Several documents in one row, one of them entirely inside it.
  const LmDataset many = LmDataset::open(
      write(counting(12), std::vector<std::uint64_t>{0, 2, 5, 6, 9}, "many.h5"), "train");
  const std::vector<LmBatch> row = validation_batches(many, 10, 1, 1, {.packed = true});
  EXPECT_EQ(row[0].segment_ids, (std::vector<std::int32_t>{0, 0, 1, 1, 1, 2, 3, 3, 3, 4}));
  EXPECT_EQ(row[0].position_ids, (std::vector<std::int32_t>{0, 1, 0, 1, 2, 0, 0, 1, 2, 0}));
}

TEST_F(LmData, PackingNeedsDocumentStarts) {
  const fs::path file = write(counting(30));
  const LmDataset data = LmDataset::open(file, "train");
  const std::string message = error_of([&] { LmBatcher(data, 4, 1, 0, {.packed = true}); });
  EXPECT_TRUE(contains(message, "\"/train/doc_offsets\"")) << message;
}

TEST_F(LmData, ValidationBatchesAreTheFirstWindowsInFileOrder) {
  const LmDataset data = LmDataset::open(write(counting(100)), "train");
  const std::vector<LmBatch> batches = validation_batches(data, 9, 3, 7);  // 10 windows of 10 tokens
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(row_starts(batches[0]), (std::vector<std::int32_t>{0, 10, 20}));
  EXPECT_EQ(row_starts(batches[1]), (std::vector<std::int32_t>{30, 40, 50}));
  EXPECT_EQ(row_starts(batches[2]), (std::vector<std::int32_t>{60}));
  const std::string message = error_of([&] { validation_batches(data, 9, 3, 11); });
  EXPECT_TRUE(contains(message, "11 validation windows asked for, but it has 10 windows")) << message;
}

TEST_F(LmData, TokenAtOrAboveVocabularyIsNamed) {
  std::vector<std::uint16_t> tokens = counting(40);
  tokens[37] = 261;
  const fs::path file = write(tokens);
  const LmDataset data = LmDataset::open(file, "train");
  const std::string message = error_of([&] { validation_batches(data, 9, 4, 4); });
  EXPECT_TRUE(contains(message, file.string())) << message;
  EXPECT_TRUE(contains(message, "\"/train/tokens\"")) << message;
  EXPECT_TRUE(contains(message, "token id 261 at position 37")) << message;
  EXPECT_TRUE(contains(message, "vocabulary size 261")) << message;
  EXPECT_TRUE(contains(error_of([&] { data.check_all_tokens(); }), "position 37"));
  // Windows before the bad token read fine.
  EXPECT_NO_THROW(validation_batches(data, 9, 3, 3));
}

TEST_F(LmData, MissingFileSplitAndDatasetsAreErrors) {
  const fs::path missing = dir_ / "nope.h5";
  EXPECT_TRUE(contains(error_of([&] { LmDataset::open(missing, "train"); }), missing.string() + ": no such file"));
  const fs::path file = write(counting(30));
  EXPECT_TRUE(contains(error_of([&] { LmDataset::open(file, "val"); }), "split \"val\" not found"));

  const fs::path no_tokens = dir_ / "no_tokens.h5";
  {
    Hdf5Writer writer = Hdf5Writer::create(no_tokens);
    const std::vector<std::uint16_t> other = {1, 2};
    writer.write("/train/other", {2}, std::span<const std::uint16_t>(other));
    write_tokenizer(writer, byte_level_tokenizer());
    writer.commit();
  }
  const std::string message = error_of([&] { LmDataset::open(no_tokens, "train"); });
  EXPECT_TRUE(contains(message, no_tokens.string())) << message;
  EXPECT_TRUE(contains(message, "\"/train/tokens\" not found")) << message;

  const fs::path no_tokenizer = dir_ / "no_tokenizer.h5";
  {
    Hdf5Writer writer = Hdf5Writer::create(no_tokenizer);
    const std::vector<std::uint16_t> tokens = {1, 2};
    writer.write("/train/tokens", {2}, std::span<const std::uint16_t>(tokens));
    writer.commit();
  }
  EXPECT_TRUE(contains(error_of([&] { LmDataset::open(no_tokenizer, "train"); }), "\"/tokenizer\" not found"));
}

TEST_F(LmData, WrongTypesAndShapesAreErrors) {
  const fs::path as_float = dir_ / "float.h5";
  const fs::path as_signed = dir_ / "signed.h5";
  const fs::path as_matrix = dir_ / "matrix.h5";
  {
    Hdf5Writer a = Hdf5Writer::create(as_float);
    const std::vector<float> f = {1, 2, 3};
    a.write("/train/tokens", {3}, std::span<const float>(f));
    write_tokenizer(a, byte_level_tokenizer());
    a.commit();
    Hdf5Writer b = Hdf5Writer::create(as_signed);
    const std::vector<std::int32_t> i = {1, 2, 3};
    b.write("/train/tokens", {3}, std::span<const std::int32_t>(i));
    write_tokenizer(b, byte_level_tokenizer());
    b.commit();
    Hdf5Writer c = Hdf5Writer::create(as_matrix);
    const std::vector<std::uint16_t> m = {1, 2, 3, 4};
    c.write("/train/tokens", {2, 2}, std::span<const std::uint16_t>(m));
    write_tokenizer(c, byte_level_tokenizer());
    c.commit();
  }
  std::string message = error_of([&] { LmDataset::open(as_float, "train"); });
  EXPECT_TRUE(contains(message, "expected uint8, uint16 or uint32 token ids, got float32")) << message;
  message = error_of([&] { LmDataset::open(as_signed, "train"); });
  EXPECT_TRUE(contains(message, "got int32")) << message;
  message = error_of([&] { LmDataset::open(as_matrix, "train"); });
  EXPECT_TRUE(contains(message, "expected 1 dimension, got 2")) << message;
}

TEST_F(LmData, LossMaskTravelsWithItsWindowsInEveryOrder) {
  // Three documents of 6 tokens (context 5); token i is i, and the mask marks tokens whose value is 1 mod 3, a
  // rule the test can check on any window without knowing where it came from.
  const std::vector<std::uint16_t> tokens = counting(18);
  std::vector<std::uint8_t> mask(tokens.size());
  for (std::size_t i = 0; i < mask.size(); ++i) mask[i] = tokens[i] % 3 == 1;
  const LmDataset data = LmDataset::open(write_masked(tokens, {0, 6, 12}, mask), "train");
  ASSERT_TRUE(data.has_loss_mask());
  LmBatcher batcher(data, 5, 2, 7, {.cross_documents = false});
  for (int b = 0; b < 4; ++b) {
    const LmBatch batch = batcher.next();
    ASSERT_EQ(batch.loss_mask.size(), batch.tokens.size());
    for (std::size_t i = 0; i < batch.tokens.size(); ++i)
      EXPECT_EQ(batch.loss_mask[i], batch.tokens[i] % 3 == 1) << "batch " << b << " entry " << i;
  }
  for (const LmBatch& batch : validation_batches(data, 5, 2, 3, {.cross_documents = false})) {
    ASSERT_EQ(batch.loss_mask.size(), batch.tokens.size());
    for (std::size_t i = 0; i < batch.tokens.size(); ++i) EXPECT_EQ(batch.loss_mask[i], batch.tokens[i] % 3 == 1);
  }
  const LmDataset unmasked = LmDataset::open(write(counting(18)), "train");
  EXPECT_FALSE(unmasked.has_loss_mask());
  EXPECT_TRUE(LmBatcher(unmasked, 5, 2, 7).next().loss_mask.empty());
}

TEST_F(LmData, BadLossMasksAreNamedErrors) {
  const std::vector<std::uint16_t> tokens = counting(12);
  const std::vector<std::uint64_t> docs = {0, 6};
  std::string message = error_of(
      [&] { LmDataset::open(write_masked(tokens, docs, std::vector<std::uint16_t>(12, 1)), "train"); });
  EXPECT_TRUE(contains(message, "\"/train/loss_mask\": expected uint8 (0 or 1 per token), got uint16")) << message;
  message = error_of([&] { LmDataset::open(write_masked(tokens, docs, std::vector<std::uint8_t>(11, 1)), "train"); });
  EXPECT_TRUE(contains(message, "expected one entry per token (12), got shape 11")) << message;
  message = error_of(
      [&] { LmDataset::open(write_masked(tokens, docs, std::vector<std::uint8_t>(12, 1), {6, 2}), "train"); });
  EXPECT_TRUE(contains(message, "got shape 6 x 2")) << message;

  std::vector<std::uint8_t> two(12, 0);
  two[9] = 2;
  const LmDataset data = LmDataset::open(write_masked(tokens, docs, two), "train");
  message = error_of([&] { data.check_all_tokens(); });
  EXPECT_TRUE(contains(message, "masked.h5: dataset \"/train/loss_mask\": value 2 at position 9")) << message;
  message = error_of([&] { validation_batches(data, 5, 2, 2, {.cross_documents = false}); });
  EXPECT_TRUE(contains(message, "value 2 at position 9")) << message;
}

TEST_F(LmData, BadDocumentOffsetsAndShortStreamsAreErrors) {
  struct Case {
    std::vector<std::uint64_t> offsets;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{2, 5}, "the first document must start at 0, got 2"},
      {{}, "the first document must start at 0, got no documents"},
      {{0, 9, 4}, "document 1 starts at 9 and document 2 at 4"},
      {{0, 31}, "document 1 starts at 31, beyond the 30 tokens"},
  };
  for (const Case& c : cases) {
    const fs::path file = write(counting(30), c.offsets, "offsets.h5");
    const std::string message = error_of([&] { LmDataset::open(file, "train"); });
    EXPECT_TRUE(contains(message, file.string())) << message;
    EXPECT_TRUE(contains(message, "\"/train/doc_offsets\"")) << message;
    EXPECT_TRUE(contains(message, c.expected)) << message;
  }
  const LmDataset data = LmDataset::open(write(counting(30)), "train");
  const std::string message = error_of([&] { LmBatcher(data, 30, 1, 0); });
  EXPECT_TRUE(contains(message, "holds 30 tokens, fewer than context + 1 = 31")) << message;
  EXPECT_TRUE(contains(error_of([&] { LmBatcher(data, 0, 1, 0); }), "context must be at least 1"));
  EXPECT_TRUE(contains(error_of([&] { LmBatcher(data, 4, 0, 0); }), "batch size must be at least 1"));
}

}  // namespace
}  // namespace race::train
