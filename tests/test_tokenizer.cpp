// Tests of lib/train/tokenizer: the default byte-level table, decode/encode round trips, the HDF5 form of
// /tokenizer, and every malformed table (kind, special ids, piece offsets) giving an error that names the
// file and what was expected.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/hdf5_io.h"
#include "test_support.h"
#include "train/tokenizer.h"

namespace race::train {
namespace {

using race::test::error_of;
using race::test::contains;

namespace fs = std::filesystem;

class TokenizerTest : public race::test::TempDirTest {
 protected:
  TokenizerTest() : TempDirTest("tokenizer") {}

  // A /tokenizer written field by field, bypassing write_tokenizer's validation, to make malformed tables.
  fs::path raw_tokenizer(const std::string& kind, std::int64_t vocab, const std::vector<std::uint8_t>& bytes,
                         const std::vector<std::uint64_t>& offsets, std::int64_t pad_id = -1) const {
    const fs::path file = dir_ / "raw.h5";
    Hdf5Writer writer = Hdf5Writer::create(file);
    writer.write_string_attribute("/tokenizer", "kind", kind);
    writer.write_int64_attribute("/tokenizer", "vocab_size", vocab);
    writer.write_int64_attribute("/tokenizer", "pad_id", pad_id);
    writer.write("/tokenizer/piece_bytes", {static_cast<std::int64_t>(bytes.size())},
                 std::span<const std::uint8_t>(bytes));
    writer.write("/tokenizer/piece_offsets", {static_cast<std::int64_t>(offsets.size())},
                 std::span<const std::uint64_t>(offsets));
    writer.commit();
    return file;
  }

};

// A small BPE-like table: "a", "b", "ab", "" (an empty piece), "\xe2\x82" (half a UTF-8 euro sign), "<pad>".
Tokenizer small_bpe() {
  Tokenizer t;
  t.kind = "bpe";
  t.vocab_size = 6;
  const std::string pieces = std::string("a") + "b" + "ab" + "" + "\xe2\x82" + "<pad>";
  t.piece_bytes.assign(pieces.begin(), pieces.end());
  t.piece_offsets = {0, 1, 2, 4, 4, 6, 11};
  t.pad_id = 5;
  return t;
}

TEST_F(TokenizerTest, ByteLevelTableHasBytesThenSpecials) {
  const Tokenizer t = byte_level_tokenizer();
  EXPECT_EQ(t.kind, "bytes");
  EXPECT_EQ(t.vocab_size, 261);
  EXPECT_EQ(t.pad_id, 256);
  EXPECT_EQ(t.mask_id, 257);
  EXPECT_EQ(t.cls_id, 258);
  EXPECT_EQ(t.bos_id, 259);
  EXPECT_EQ(t.eos_id, 260);
  EXPECT_EQ(t.special_ids(), (std::vector<std::int32_t>{256, 257, 258, 259, 260}));
  EXPECT_EQ(t.piece(0), std::string(1, '\0'));
  EXPECT_EQ(t.piece(255), std::string(1, '\xff'));
  EXPECT_EQ(t.piece(260), "<|eos|>");
  EXPECT_NO_THROW(t.validate("test"));
}

TEST_F(TokenizerTest, EncodeDecodeRoundTripsEveryByte) {
  const Tokenizer t = byte_level_tokenizer();
  std::string text;
  for (int b = 0; b < 256; ++b) text += static_cast<char>(b);
  text += "hello, \xc3\xa9t\xc3\xa9";
  const std::vector<std::int32_t> ids = t.encode_bytes(text);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[0], 0);
  EXPECT_EQ(ids[255], 255);
  EXPECT_EQ(t.decode(ids), text);
  const std::vector<std::int32_t> with_specials = {259, 'h', 'i', 260};
  EXPECT_EQ(t.decode(with_specials), "<|bos|>hi<|eos|>");
}

TEST_F(TokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  const Tokenizer t = byte_level_tokenizer();
  const std::vector<std::int32_t> too_big = {'a', 'b', 261};
  const std::string message = error_of([&] { t.decode(too_big); });
  EXPECT_TRUE(contains(message, "261")) << message;
  EXPECT_TRUE(contains(message, "position 2")) << message;
  const std::vector<std::int32_t> negative = {-1};
  EXPECT_TRUE(contains(error_of([&] { t.decode(negative); }), "-1"));
}

TEST_F(TokenizerTest, BpeDecodesButDoesNotEncode) {
  const Tokenizer t = small_bpe();
  ASSERT_NO_THROW(t.validate("test"));
  const std::vector<std::int32_t> ids = {2, 3, 0, 4, 5};
  EXPECT_EQ(t.decode(ids), "aba\xe2\x82<pad>");
  const std::string message = error_of([&] { t.encode_bytes("ab"); });
  EXPECT_TRUE(contains(message, "\"bpe\"")) << message;
}

TEST_F(TokenizerTest, HdfRoundTripKeepsEveryField) {
  const fs::path file = dir_ / "tok.h5";
  {
    Hdf5Writer writer = Hdf5Writer::create(file);
    write_tokenizer(writer, byte_level_tokenizer());
    write_tokenizer(writer, small_bpe(), "/other/tok");
    writer.commit();
  }
  const Hdf5File reader = Hdf5File::open(file);
  for (const auto& [group, expected] : {std::pair{"/tokenizer", byte_level_tokenizer()},
                                        std::pair{"/other/tok", small_bpe()}}) {
    const Tokenizer t = read_tokenizer(reader, group);
    EXPECT_EQ(t.kind, expected.kind);
    EXPECT_EQ(t.vocab_size, expected.vocab_size);
    EXPECT_EQ(t.pad_id, expected.pad_id);
    EXPECT_EQ(t.mask_id, expected.mask_id);
    EXPECT_EQ(t.cls_id, expected.cls_id);
    EXPECT_EQ(t.bos_id, expected.bos_id);
    EXPECT_EQ(t.eos_id, expected.eos_id);
    EXPECT_EQ(t.piece_bytes, expected.piece_bytes);
    EXPECT_EQ(t.piece_offsets, expected.piece_offsets);
  }
}

TEST_F(TokenizerTest, MissingSpecialAttributesMeanAbsent) {
  const Tokenizer bpe = small_bpe();
  const fs::path file = raw_tokenizer("bpe", bpe.vocab_size, bpe.piece_bytes, bpe.piece_offsets, 5);
  const Tokenizer t = read_tokenizer(Hdf5File::open(file));
  EXPECT_EQ(t.pad_id, 5);
  EXPECT_EQ(t.mask_id, -1);
  EXPECT_EQ(t.eos_id, -1);
  EXPECT_EQ(t.special_ids(), std::vector<std::int32_t>{5});
}

TEST_F(TokenizerTest, BadOffsetsAreErrorsNamingFileAndDataset) {
  const std::vector<std::uint8_t> bytes = {'a', 'b', 'c'};
  struct Case {
    std::vector<std::uint64_t> offsets;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{0, 2, 1, 3}, "piece_offsets[2] = 1 < piece_offsets[1] = 2"},
      {{0, 1, 2, 2}, "ends at 2, expected the size of piece_bytes, 3"},
      {{0, 1, 3}, "3 entries, expected vocab_size + 1 = 4"},
      {{1, 1, 2, 3}, "piece_offsets[0] is 1, expected 0"},
  };
  for (const Case& c : cases) {
    const fs::path file = raw_tokenizer("bpe", 3, bytes, c.offsets);
    const std::string message = error_of([&] { read_tokenizer(Hdf5File::open(file)); });
    EXPECT_TRUE(contains(message, file.string())) << message;
    EXPECT_TRUE(contains(message, "piece_offsets")) << message;
    EXPECT_TRUE(contains(message, c.expected)) << message;
  }
}

TEST_F(TokenizerTest, BadKindSpecialIdsAndByteTablesAreErrors) {
  const std::vector<std::uint8_t> bytes = {'a', 'b', 'c'};
  const std::vector<std::uint64_t> offsets = {0, 1, 2, 3};
  EXPECT_TRUE(contains(error_of([&] { read_tokenizer(Hdf5File::open(raw_tokenizer("wordpiece", 3, bytes, offsets))); }),
                       "kind \"wordpiece\": expected \"bytes\" or \"bpe\""));
  EXPECT_TRUE(contains(error_of([&] { read_tokenizer(Hdf5File::open(raw_tokenizer("bpe", 3, bytes, offsets, 3))); }),
                       "pad_id 3: expected -1 (absent) or an id in [0, 3)"));
  EXPECT_TRUE(contains(error_of([&] { read_tokenizer(Hdf5File::open(raw_tokenizer("bytes", 3, bytes, offsets))); }),
                       "vocab_size >= 256"));

  Tokenizer swapped = byte_level_tokenizer();
  std::swap(swapped.piece_bytes[65], swapped.piece_bytes[66]);
  EXPECT_TRUE(contains(error_of([&] { swapped.validate("swapped"); }), "piece 65"));
  Tokenizer low_special = byte_level_tokenizer();
  low_special.eos_id = 10;
  EXPECT_TRUE(contains(error_of([&] { low_special.validate("low"); }), "eos_id 10"));
}

TEST_F(TokenizerTest, MissingGroupAndWriterValidation) {
  const fs::path file = dir_ / "empty.h5";
  {
    Hdf5Writer writer = Hdf5Writer::create(file);
    writer.write_int64_attribute("/", "x", 1);
    Tokenizer broken = byte_level_tokenizer();
    broken.piece_offsets.back() += 1;
    EXPECT_TRUE(contains(error_of([&] { write_tokenizer(writer, broken); }), "piece_offsets"));
    writer.commit();
  }
  const std::string message = error_of([&] { read_tokenizer(Hdf5File::open(file)); });
  EXPECT_TRUE(contains(message, file.string())) << message;
  EXPECT_TRUE(contains(message, "\"/tokenizer\" not found")) << message;
}

}  // namespace
}  // namespace race::train
