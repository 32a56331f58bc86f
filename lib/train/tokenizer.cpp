// Tokenizer table: validation, decode, byte-level and BPE encode, and its HDF5 form.
#include "train/tokenizer.h"

#include <algorithm>
#include <array>
#include <limits>
#include <unordered_map>
#include <utility>

#include "core/error.h"

namespace race::train {

namespace {

// Attribute names of the special ids, with a pointer to the member each fills.
constexpr std::array<std::pair<const char*, std::int32_t Tokenizer::*>, 5> kSpecialIds = {{
    {"pad_id", &Tokenizer::pad_id},
    {"mask_id", &Tokenizer::mask_id},
    {"cls_id", &Tokenizer::cls_id},
    {"bos_id", &Tokenizer::bos_id},
    {"eos_id", &Tokenizer::eos_id},
}};

enum class ByteClass { whitespace, letter, digit, other };

ByteClass byte_class(unsigned char b) {
  if (b == ' ' || (b >= '\t' && b <= '\r')) return ByteClass::whitespace;
  if ((b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || b >= 0x80) return ByteClass::letter;
  if (b >= '0' && b <= '9') return ByteClass::digit;
  return ByteClass::other;
}

// End of the BPE chunk starting at `begin` (bpe.py's chunking rule).
std::size_t chunk_end(std::string_view text, std::size_t begin) {
  const auto at = [&](std::size_t i) { return byte_class(static_cast<unsigned char>(text[i])); };
  const std::size_t n = text.size();
  std::size_t run = begin;
  if (text[begin] == ' ' && begin + 1 < n && at(begin + 1) != ByteClass::whitespace) run = begin + 1;
  const ByteClass cls = at(run);
  std::size_t end = run + 1;
  while (end < n && at(end) == cls) ++end;
  // A whitespace run of two or more bytes before a word leaves its last byte to open that word's chunk.
  if (cls == ByteClass::whitespace && end - begin >= 2 && end < n) --end;
  return end;
}

std::string child(std::string_view group, std::string_view name) {
  std::string path(group);
  if (path.empty() || path.back() != '/') path += '/';
  return path + std::string(name);
}

}  // namespace

std::vector<std::int32_t> Tokenizer::special_ids() const {
  std::vector<std::int32_t> ids;
  for (const auto& [name, member] : kSpecialIds) {
    if (this->*member >= 0) ids.push_back(this->*member);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

std::string_view Tokenizer::piece(std::int32_t id) const {
  RACE_CHECK(id >= 0 && id < vocab_size, "token id {} outside [0, {})", id, vocab_size);
  const auto i = static_cast<std::size_t>(id);
  return {reinterpret_cast<const char*>(piece_bytes.data()) + piece_offsets[i],
          static_cast<std::size_t>(piece_offsets[i + 1] - piece_offsets[i])};
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids) const {
  std::string text;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      fail("decode: token id {} at position {} is outside the vocabulary [0, {})", ids[i], i, vocab_size);
    }
    text += piece(ids[i]);
  }
  return text;
}

std::vector<std::int32_t> Tokenizer::encode_bytes(std::string_view text) const {
  if (kind != "bytes") {
    fail("encode_bytes: the tokenizer is of kind \"{}\"; only \"bytes\" tokenizers encode in C++ (BPE "
         "encoding is done by the data scripts)",
         kind);
  }
  std::vector<std::int32_t> ids(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text) const {
  if (kind == "bytes") return encode_bytes(text);
  // Merged pieces by their bytes; special tokens are never formed by merging.
  std::unordered_map<std::string_view, std::int32_t> merged;
  const std::vector<std::int32_t> specials = special_ids();
  for (auto id = static_cast<std::int32_t>(256); id < vocab_size; ++id)
    if (!std::binary_search(specials.begin(), specials.end(), id)) merged.emplace(piece(id), id);

  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> chunk;  // (chunk pieces) the chunk's ids as merging proceeds
  std::string joined;
  for (std::size_t begin = 0; begin < text.size();) {
    const std::size_t end = chunk_end(text, begin);
    chunk.clear();
    for (std::size_t i = begin; i < end; ++i) chunk.push_back(static_cast<unsigned char>(text[i]));
    for (;;) {
      std::size_t best_at = 0;
      std::int32_t best = -1;
      for (std::size_t i = 0; i + 1 < chunk.size(); ++i) {
        joined.assign(piece(chunk[i]));
        joined += piece(chunk[i + 1]);
        const auto found = merged.find(joined);
        if (found != merged.end() && (best < 0 || found->second < best)) best = found->second, best_at = i;
      }
      if (best < 0) break;
      chunk[best_at] = best;
      chunk.erase(chunk.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
    }
    ids.insert(ids.end(), chunk.begin(), chunk.end());
    begin = end;
  }
  return ids;
}

void Tokenizer::validate(std::string_view where) const {
  if (kind != "bytes" && kind != "bpe") fail("{}: kind \"{}\": expected \"bytes\" or \"bpe\"", where, kind);
  if (vocab_size < 1 || vocab_size > std::numeric_limits<std::int32_t>::max()) {
    fail("{}: vocab_size {}: expected 1 to {}", where, vocab_size, std::numeric_limits<std::int32_t>::max());
  }
  for (const auto& [name, member] : kSpecialIds) {
    const std::int32_t id = this->*member;
    if (id < -1 || id >= vocab_size) {
      fail("{}: {} {}: expected -1 (absent) or an id in [0, {})", where, name, id, vocab_size);
    }
    if (id >= 0 && id < 256) {
      fail("{}: {} {}: ids 0..255 are the bytes, so special ids must be >= 256", where, name, id);
    }
  }
  if (static_cast<std::int64_t>(piece_offsets.size()) != vocab_size + 1) {
    fail("{}: piece_offsets has {} entries, expected vocab_size + 1 = {}", where, piece_offsets.size(),
         vocab_size + 1);
  }
  if (piece_offsets.front() != 0) fail("{}: piece_offsets[0] is {}, expected 0", where, piece_offsets.front());
  for (std::size_t i = 1; i < piece_offsets.size(); ++i) {
    if (piece_offsets[i] < piece_offsets[i - 1]) {
      fail("{}: piece_offsets must not decrease, but piece_offsets[{}] = {} < piece_offsets[{}] = {}", where, i,
           piece_offsets[i], i - 1, piece_offsets[i - 1]);
    }
  }
  if (piece_offsets.back() != piece_bytes.size()) {
    fail("{}: piece_offsets ends at {}, expected the size of piece_bytes, {}", where, piece_offsets.back(),
         piece_bytes.size());
  }
  if (vocab_size < 256) fail("{}: a \"{}\" tokenizer needs vocab_size >= 256, got {}", where, kind, vocab_size);
  for (std::int32_t b = 0; b < 256; ++b) {
    const std::string_view p = piece(b);
    if (p.size() != 1 || static_cast<unsigned char>(p[0]) != b) {
      fail("{}: piece {} of a \"{}\" tokenizer must be the single byte {}", where, b, kind, b);
    }
  }
}

Tokenizer byte_level_tokenizer() {
  Tokenizer t;
  t.kind = "bytes";
  t.piece_offsets.push_back(0);
  const auto add = [&t](std::string_view bytes) {
    t.piece_bytes.insert(t.piece_bytes.end(), bytes.begin(), bytes.end());
    t.piece_offsets.push_back(t.piece_bytes.size());
  };
  for (int b = 0; b < 256; ++b) add(std::string(1, static_cast<char>(b)));
  t.pad_id = 256;
  t.mask_id = 257;
  t.cls_id = 258;
  t.bos_id = 259;
  t.eos_id = 260;
  for (const char* name : {"<|pad|>", "<|mask|>", "<|cls|>", "<|bos|>", "<|eos|>"}) add(name);
  t.vocab_size = static_cast<std::int64_t>(t.piece_offsets.size()) - 1;
  return t;
}

Tokenizer read_tokenizer(const Hdf5File& file, std::string_view group) {
  const std::string where = fmt::format("{}: group \"{}\"", file.name(), group);
  if (!file.has_group(group)) fail("{} not found (every dataset file carries its tokenizer)", where);
  Tokenizer t;
  t.kind = file.read_string_attribute(group, "kind");
  t.vocab_size = file.read_int64_attribute(group, "vocab_size");
  for (const auto& [name, member] : kSpecialIds) {
    if (!file.has_attribute(group, name)) continue;
    const std::int64_t id = file.read_int64_attribute(group, name);
    // Checked here, before narrowing to int32, so that a huge stored value is reported as it is.
    if (id < -1 || id >= t.vocab_size || id > std::numeric_limits<std::int32_t>::max()) {
      fail("{}: {} {}: expected -1 (absent) or an id in [0, {})", where, name, id, t.vocab_size);
    }
    t.*member = static_cast<std::int32_t>(id);
  }
  const std::string bytes_path = child(group, "piece_bytes");
  const std::string offsets_path = child(group, "piece_offsets");
  ArrayData<std::uint8_t> bytes = file.read_uint8(bytes_path);
  ArrayData<std::uint64_t> offsets = file.read_uint64(offsets_path);
  if (bytes.shape.size() != 1) fail("{}: dataset \"{}\" must be 1-D", file.name(), bytes_path);
  if (offsets.shape.size() != 1) fail("{}: dataset \"{}\" must be 1-D", file.name(), offsets_path);
  t.piece_bytes = std::move(bytes.values);
  t.piece_offsets = std::move(offsets.values);
  t.validate(where);
  return t;
}

void write_tokenizer(Hdf5Writer& writer, const Tokenizer& tokenizer, std::string_view group) {
  tokenizer.validate(fmt::format("{}: tokenizer to write", writer.name()));
  writer.write_string_attribute(group, "kind", tokenizer.kind);
  writer.write_int64_attribute(group, "vocab_size", tokenizer.vocab_size);
  for (const auto& [name, member] : kSpecialIds) writer.write_int64_attribute(group, name, tokenizer.*member);
  writer.write(child(group, "piece_bytes"), {static_cast<std::int64_t>(tokenizer.piece_bytes.size())},
               std::span<const std::uint8_t>(tokenizer.piece_bytes));
  writer.write(child(group, "piece_offsets"), {static_cast<std::int64_t>(tokenizer.piece_offsets.size())},
               std::span<const std::uint64_t>(tokenizer.piece_offsets));
}

}  // namespace race::train
