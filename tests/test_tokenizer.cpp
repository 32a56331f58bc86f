// Tests of lib/train/tokenizer: the default byte-level table, decode/encode round trips, the HDF5 form of
// /tokenizer, and every malformed table (kind, special ids, piece offsets) giving an error that names the
// file and what was expected.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/hdf5_io.h"
#include "test_support.h"
#include "train/lm_data.h"
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

// A small BPE table: the 256 bytes, then merged pieces 256 "ab", 257 "bc", 258 "abc", 259 " a", 260 "abab",
// 261 "\xe2\x82" (half a UTF-8 euro sign), 262 "a1" (never formed: letters and digits are different chunks),
// 263 "  ", and the special 264 "<pad>".
Tokenizer small_bpe() {
  Tokenizer t;
  t.kind = "bpe";
  t.piece_offsets.push_back(0);
  const auto add = [&t](std::string_view bytes) {
    t.piece_bytes.insert(t.piece_bytes.end(), bytes.begin(), bytes.end());
    t.piece_offsets.push_back(t.piece_bytes.size());
  };
  for (int b = 0; b < 256; ++b) add(std::string(1, static_cast<char>(b)));
  for (const char* merged : {"ab", "bc", "abc", " a", "abab", "\xe2\x82", "a1", "  ", "<pad>"}) add(merged);
  t.vocab_size = static_cast<std::int64_t>(t.piece_offsets.size()) - 1;
  t.pad_id = 264;
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

TEST_F(TokenizerTest, BpeDecodesAndEncodesByLowestIdMergesWithinChunks) {
  const Tokenizer t = small_bpe();
  ASSERT_NO_THROW(t.validate("test"));
  const std::vector<std::int32_t> ids = {258, 259, 261, 264};
  EXPECT_EQ(t.decode(ids), "abc a\xe2\x82<pad>");
  const std::string message = error_of([&] { t.encode_bytes("ab"); });
  EXPECT_TRUE(contains(message, "\"bpe\"")) << message;

  using Ids = std::vector<std::int32_t>;
  EXPECT_EQ(t.encode("abc"), Ids({258}));           // "ab" (256) before "bc" (257), then "abc"
  EXPECT_EQ(t.encode(" abc"), Ids({' ', 258}));     // " ab" is no piece; " a" loses to "ab"
  EXPECT_EQ(t.encode(" ac"), Ids({259, 'c'}));      // a space opens the next word's chunk
  EXPECT_EQ(t.encode("abab"), Ids({260}));          // leftmost "ab" first, then "ab"+"ab"
  EXPECT_EQ(t.encode("a1"), Ids({'a', '1'}));       // letters and digits are separate chunks
  EXPECT_EQ(t.encode("  a"), Ids({' ', 259}));      // two spaces before a word: the last one joins it
  EXPECT_EQ(t.encode("   "), Ids({263, ' '}));      // trailing spaces stay one chunk, merged leftmost
  EXPECT_EQ(t.encode("x\n\ny"), Ids({'x', '\n', '\n', 'y'}));
  EXPECT_EQ(t.encode("\xe2\x82\xac"), Ids({261, 0xac}));  // bytes >= 0x80 are letters
  EXPECT_EQ(t.encode("<pad>"), Ids({'<', 'p', 'a', 'd', '>'}));  // special tokens are never merged into
  EXPECT_TRUE(t.encode("").empty());

  // Any bytes round-trip, NUL and broken UTF-8 included.
  std::mt19937 rng(5);
  const std::string alphabet = std::string("abc 1\n\t.\xe2\x82\xac") + '\0';
  for (int trial = 0; trial < 500; ++trial) {
    std::string text(rng() % 40, ' ');
    for (char& c : text) c = alphabet[rng() % alphabet.size()];
    EXPECT_EQ(t.decode(t.encode(text)), text) << "trial " << trial;
  }
}

// The C++ encoder against the data scripts' Python one (data/scripts/bpe.py), two implementations of one
// written rule: text_to_h5.py trains a BPE table on varied text and encodes every document; encode() must give
// the same ids for each train document.
TEST_F(TokenizerTest, BpeEncodingAgreesWithTheDataScripts) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3 (scripts/install-deps.sh installs it)";
  std::mt19937 rng(3);
  const std::vector<std::string> words = {"the", "then", "there", "theory", "a", "an", "and", "42", "2026",
                                          "caf\xc3\xa9", "na\xc3\xafve", "--", "...", "(x)", "\xe2\x82\xac", "A1b2"};
  const std::vector<std::string> gaps = {" ", " ", " ", "  ", "\t", " \n", "\n", ", ", "   "};
  std::vector<std::string> documents;
  std::string text;
  for (int d = 0; d < 40; ++d) {
    std::string doc;
    for (int w = 0; w < 30; ++w) doc += words[rng() % words.size()] + gaps[rng() % gaps.size()];
    doc += "end.\n\n";
    documents.push_back(doc);
    text += doc;
  }
  const fs::path input = dir_ / "text.txt", output = dir_ / "bpe.h5";
  std::ofstream(input, std::ios::binary) << text;
  const std::string command = "/usr/bin/python3 " + std::string(RACE_SOURCE_DIR) +
                              "/data/scripts/text_to_h5.py --tokenizer bpe --vocab-size 300 --val-fraction 0.25 "
                              "--input " + input.string() + " --output " + output.string() + " > /dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  const LmDataset data = LmDataset::open(output, "train");
  const Tokenizer& tokenizer = data.tokenizer();
  ASSERT_EQ(tokenizer.kind, "bpe");
  ASSERT_EQ(tokenizer.vocab_size, 300);
  // Every 4th document (index 3, 7, ...) went to val; the others are the train documents in order.
  std::vector<std::string> train_documents;
  for (size_t d = 0; d < documents.size(); ++d)
    if (d % 4 != 3) train_documents.push_back(documents[d]);
  ASSERT_EQ(data.document_starts().size(), train_documents.size());
  int64_t merged = 0;
  for (size_t d = 0; d < train_documents.size(); ++d) {
    const int64_t begin = data.document_starts()[d];
    std::vector<std::int32_t> expected(static_cast<size_t>(data.document_end(d) - begin));
    data.read(begin, expected);
    EXPECT_EQ(tokenizer.encode(train_documents[d]), expected) << "document " << d;
    merged += std::count_if(expected.begin(), expected.end(), [](std::int32_t id) { return id >= 256; });
  }
  EXPECT_GT(merged, 500);  // the table's merges are really used
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
  const fs::path file = raw_tokenizer("bpe", bpe.vocab_size, bpe.piece_bytes, bpe.piece_offsets, 264);
  const Tokenizer t = read_tokenizer(Hdf5File::open(file));
  EXPECT_EQ(t.pad_id, 264);
  EXPECT_EQ(t.mask_id, -1);
  EXPECT_EQ(t.eos_id, -1);
  EXPECT_EQ(t.special_ids(), std::vector<std::int32_t>{264});
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
  Tokenizer bpe_without_bytes = small_bpe();
  bpe_without_bytes.piece_bytes[0] = 'z';
  EXPECT_TRUE(contains(error_of([&] { bpe_without_bytes.validate("bpe"); }),
                       "piece 0 of a \"bpe\" tokenizer must be the single byte 0"));
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
