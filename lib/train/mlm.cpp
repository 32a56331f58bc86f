// BERT-style masking, drawn per row from (seed, step, row).
#include "train/mlm.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"
#include "train/data_order.h"

namespace race::train {

MlmBatch mask_tokens(std::span<const std::int32_t> tokens, std::int64_t rows, std::int64_t length,
                     const Tokenizer& tokenizer, std::uint64_t seed, std::int64_t step, double fraction,
                     std::int64_t first_row) {
  RACE_CHECK(rows >= 0 && length >= 0 && static_cast<std::int64_t>(tokens.size()) == rows * length,
             "tokens hold {} ids, expected {} x {}", tokens.size(), rows, length);
  if (!(fraction > 0.0 && fraction <= 1.0)) fail("masked LM: mask fraction {} must be in (0, 1]", fraction);
  if (step < 0) fail("masked LM: step {} must be non-negative", step);
  if (tokenizer.mask_id < 0) fail("masked LM: the tokenizer has no mask token (mask_id is -1)");
  const std::vector<std::int32_t> specials = tokenizer.special_ids();  // sorted, unique
  const auto plain_ids = static_cast<std::uint64_t>(tokenizer.vocab_size) - specials.size();
  if (plain_ids == 0) fail("masked LM: every id of the vocabulary is a special token; none to predict");

  MlmBatch out{std::vector<std::int32_t>(tokens.begin(), tokens.end()),
               std::vector<std::int32_t>(tokens.size(), -1)};
  std::vector<std::int64_t> candidates;  // (n) maskable positions of the current row
  for (std::int64_t row = 0; row < rows; ++row) {
    const std::int64_t base = row * length;
    candidates.clear();
    for (std::int64_t t = 0; t < length; ++t) {
      const std::int32_t id = tokens[static_cast<std::size_t>(base + t)];
      if (id < 0 || id >= tokenizer.vocab_size) {
        fail("masked LM: token id {} at row {}, position {} is outside the vocabulary [0, {})", id, row, t,
             tokenizer.vocab_size);
      }
      if (!std::binary_search(specials.begin(), specials.end(), id)) candidates.push_back(base + t);
    }
    const auto n = static_cast<std::int64_t>(candidates.size());
    if (n == 0) continue;
    const std::int64_t chosen =
        std::clamp<std::int64_t>(std::llround(fraction * static_cast<double>(n)), 1, n);
    std::mt19937_64 rng =
        seeded_rng({seed, static_cast<std::uint64_t>(RngStream::mlm_mask), static_cast<std::uint64_t>(step),
                    static_cast<std::uint64_t>(first_row + row)});
    for (std::int64_t i = 0; i < chosen; ++i) {
      // Partial Fisher-Yates: candidates[0, i] become a uniform sample without replacement.
      const auto j = i + static_cast<std::int64_t>(uniform_below(rng, static_cast<std::uint64_t>(n - i)));
      std::swap(candidates[static_cast<std::size_t>(i)], candidates[static_cast<std::size_t>(j)]);
      const auto position = static_cast<std::size_t>(candidates[static_cast<std::size_t>(i)]);
      out.targets[position] = tokens[position];
      const std::uint64_t action = uniform_below(rng, 10);  // 0-7 mask, 8 random, 9 keep
      if (action < 8) {
        out.inputs[position] = tokenizer.mask_id;
      } else if (action == 8) {
        // The k-th non-special id: step over every special id at or below it.
        auto id = static_cast<std::int64_t>(uniform_below(rng, plain_ids));
        for (const std::int32_t special : specials) id += id >= special ? 1 : 0;
        out.inputs[position] = static_cast<std::int32_t>(id);
      }
    }
  }
  return out;
}

}  // namespace race::train
