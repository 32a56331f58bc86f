// Masked-LM corruption (BERT): in each row choose round(fraction x n) of its n maskable positions (at least
// one when n > 0), uniformly without replacement; replace 80% of the chosen by the mask id, 10% by a random
// token and keep 10% unchanged. Targets are the original ids at the chosen positions and -1 (the ignore
// index of the cross-entropy kernel) elsewhere.
//
// Maskable positions are those holding a non-special token: pads never, and neither cls/bos/eos/mask, which
// carry no content to predict (as in BERT, which never masks [CLS] or [SEP]). Random replacements are drawn
// uniformly from the non-special ids, so the model never sees a stray pad or cls in the middle of text.
//
// Every draw comes from seeded_rng({seed, mlm stream, step, row}) (data_order.h): the corruption is a
// function of (seed, step, row, tokens), so a resumed run masks exactly as the uninterrupted one without
// saving RNG state. Under gradient accumulation, give each micro-batch of a step its own `step` key (e.g.
// step x micro-batches + micro-batch), or they would share their masks row for row.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "train/tokenizer.h"

namespace race::train {

struct MlmBatch {
  std::vector<std::int32_t> inputs;   // (B, T) corrupted tokens
  std::vector<std::int32_t> targets;  // (B, T) original id at chosen positions, -1 elsewhere
};

inline constexpr double kMaskFraction = 0.15;

// tokens (B, T) = (rows, length), ids in [0, vocab_size). fraction in (0, 1]; step >= 0. race::Error when the
// tokenizer has no mask id or no non-special id, or an id is outside the vocabulary. The rows are rows
// first_row, first_row + 1, ... of the step's batch (a data-parallel rank's shard), so every rank draws the
// masks one process would draw for the same rows.
MlmBatch mask_tokens(std::span<const std::int32_t> tokens, std::int64_t rows, std::int64_t length,
                     const Tokenizer& tokenizer, std::uint64_t seed, std::int64_t step,
                     double fraction = kMaskFraction, std::int64_t first_row = 0);

}  // namespace race::train
