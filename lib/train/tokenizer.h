// The tokenizer table every dataset and checkpoint carries under /tokenizer (DESIGN section 4): the id ->
// bytes table that lets the C++ side decode without Python, the special ids, and the byte-level encoder.
//
// HDF5 layout (group `group`, "/tokenizer" by default):
//   attributes  kind        string, "bytes" or "bpe"
//               vocab_size  integer >= 1
//               pad_id, mask_id, cls_id, bos_id, eos_id
//                           integer in [0, vocab_size), or -1 (or the attribute left out) when absent
//   datasets    piece_bytes    uint8 (total bytes): all pieces concatenated
//               piece_offsets  uint64 (vocab_size + 1): piece i is piece_bytes[offsets[i], offsets[i + 1])
// Pieces are raw bytes (a BPE piece may be part of a UTF-8 character), so a variable-length HDF5 string
// table, which cannot hold NUL, is not used.
//
// kind "bytes": ids 0..255 are the bytes themselves (piece i is the single byte i) and special ids are >= 256.
// byte_level_tokenizer() is the default one:
//   0..255 bytes, 256 pad "<|pad|>", 257 mask "<|mask|>", 258 cls "<|cls|>", 259 bos "<|bos|>",
//   260 eos "<|eos|>"; vocab_size 261.
// kind "bpe": trained by data/scripts/bpe.py. Ids 0..255 are the bytes too; 256 + k is the k-th merged
// piece; the special ids follow. encode() applies the rule stated in bpe.py's header: the text is cut into
// chunks (a GPT-2-like split on bytes: letter, digit, other and whitespace runs, a single space joining the
// run after it), and within each chunk the adjacent pair whose joined bytes form the piece with the lowest id
// is merged (the leftmost on a tie) until no pair forms a piece.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/hdf5_io.h"

namespace race::train {

struct Tokenizer {
  std::string kind;  // "bytes" or "bpe"
  std::int64_t vocab_size = 0;
  std::int32_t pad_id = -1;  // -1: the tokenizer has no such token
  std::int32_t mask_id = -1;
  std::int32_t cls_id = -1;
  std::int32_t bos_id = -1;
  std::int32_t eos_id = -1;
  std::vector<std::uint8_t> piece_bytes;     // (total bytes) all pieces concatenated
  std::vector<std::uint64_t> piece_offsets;  // (vocab_size + 1) start of piece i; last = piece_bytes.size()

  // The special ids that are present, sorted, without repeats.
  std::vector<std::int32_t> special_ids() const;
  // Bytes of piece `id` (must be in [0, vocab_size)).
  std::string_view piece(std::int32_t id) const;

  // The concatenated pieces of `ids`; an id outside [0, vocab_size) is a race::Error naming its position.
  std::string decode(std::span<const std::int32_t> ids) const;
  // One id per byte (kind "bytes" only; a "bpe" tokenizer is a race::Error).
  std::vector<std::int32_t> encode_bytes(std::string_view text) const;
  // The ids of `text` for either kind (header comment); decode(encode(text)) == text for any bytes.
  std::vector<std::int32_t> encode(std::string_view text) const;

  // Throws race::Error, prefixed with `where` (e.g. `data.h5: group "/tokenizer"`), unless the table is
  // well formed: known kind, vocab_size in [1, 2^31), special ids in [-1, vocab_size), offsets of length
  // vocab_size + 1 starting at 0, never decreasing and ending at piece_bytes.size(), and pieces 0..255 equal
  // to their byte with special ids >= 256.
  void validate(std::string_view where) const;
};

// The default byte-level tokenizer (ids in the header comment).
Tokenizer byte_level_tokenizer();

// Reads and validates the table under `group`; errors name the file and the attribute or dataset.
Tokenizer read_tokenizer(const Hdf5File& file, std::string_view group = "/tokenizer");
// Validates, then writes the table under `group` (which must not hold the datasets yet).
void write_tokenizer(Hdf5Writer& writer, const Tokenizer& tokenizer, std::string_view group = "/tokenizer");

}  // namespace race::train
