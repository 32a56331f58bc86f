// Tests of lib/train/mlm: the 15% selection per row and the 80/10/10 split (statistically, over ~80K chosen
// positions with tolerances of 8 or more standard deviations), special tokens never chosen nor drawn as
// replacements, targets, determinism in (seed, step), and errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_support.h"
#include "train/mlm.h"
#include "train/tokenizer.h"

namespace race::train {
namespace {

using race::test::error_of;
using race::test::contains;

constexpr std::int64_t kRows = 32;
constexpr std::int64_t kLength = 512;

// Row r: a bos token, then byte ids, then 8 r pads at the end (rows 0..31: 0 to 248 pads).
std::vector<std::int32_t> batch_tokens(const Tokenizer& t) {
  std::vector<std::int32_t> tokens(kRows * kLength);
  for (std::int64_t r = 0; r < kRows; ++r) {
    for (std::int64_t c = 0; c < kLength; ++c) {
      std::int32_t id = static_cast<std::int32_t>((r * 131 + c * 7) % 256);
      if (c == 0) id = t.bos_id;
      if (c >= kLength - 8 * r) id = t.pad_id;
      tokens[static_cast<std::size_t>(r * kLength + c)] = id;
    }
  }
  return tokens;
}

TEST(Mlm, ChoosesFifteenPercentAndSplitsEightyTenTen) {
  const Tokenizer t = byte_level_tokenizer();
  const std::vector<std::int32_t> tokens = batch_tokens(t);
  const std::vector<std::int32_t> specials = t.special_ids();
  std::int64_t chosen = 0, masked = 0, replaced = 0, kept = 0;
  for (std::int64_t step = 0; step < 40; ++step) {
    const MlmBatch out = mask_tokens(tokens, kRows, kLength, t, 5, step);
    ASSERT_EQ(out.inputs.size(), tokens.size());
    ASSERT_EQ(out.targets.size(), tokens.size());
    for (std::int64_t r = 0; r < kRows; ++r) {
      const std::int64_t maskable = kLength - 1 - 8 * r;  // all but bos and pads
      std::int64_t row_chosen = 0;
      for (std::int64_t c = 0; c < kLength; ++c) {
        const auto i = static_cast<std::size_t>(r * kLength + c);
        const bool special = std::binary_search(specials.begin(), specials.end(), tokens[i]);
        if (out.targets[i] == -1) {
          EXPECT_EQ(out.inputs[i], tokens[i]) << "unchosen positions are untouched";
          continue;
        }
        ASSERT_FALSE(special) << "special token chosen at row " << r << ", column " << c;
        EXPECT_EQ(out.targets[i], tokens[i]);
        ++row_chosen;
        if (out.inputs[i] == t.mask_id) {
          ++masked;
        } else if (out.inputs[i] == tokens[i]) {
          ++kept;  // includes random draws equal to the original (about 1 in 256 of them)
        } else {
          ++replaced;
          EXPECT_FALSE(std::binary_search(specials.begin(), specials.end(), out.inputs[i]))
              << "random replacement " << out.inputs[i] << " is a special id";
          EXPECT_LT(out.inputs[i], t.vocab_size);
        }
      }
      EXPECT_EQ(row_chosen, std::llround(0.15 * static_cast<double>(maskable)));
    }
    chosen = masked + replaced + kept;
  }
  ASSERT_GT(chosen, 70000);
  // Standard deviations: sqrt(0.16 / 80K) = 0.0014 for the 80%, sqrt(0.09 / 80K) = 0.0011 for the 10%s.
  const auto share = [chosen](std::int64_t n) { return static_cast<double>(n) / static_cast<double>(chosen); };
  EXPECT_NEAR(share(masked), 0.80, 0.015);
  EXPECT_NEAR(share(replaced), 0.10, 0.01);
  EXPECT_NEAR(share(kept), 0.10, 0.01);
}

TEST(Mlm, EveryMaskablePositionIsChosenSometimesAndPadsNever) {
  const Tokenizer t = byte_level_tokenizer();
  const std::vector<std::int32_t> tokens = batch_tokens(t);
  std::vector<int> times(tokens.size(), 0);
  for (std::int64_t step = 0; step < 100; ++step) {
    const MlmBatch out = mask_tokens(tokens, kRows, kLength, t, 9, step);
    for (std::size_t i = 0; i < tokens.size(); ++i) times[i] += out.targets[i] != -1;
  }
  // Each maskable position is chosen 15 times in 100 steps on average; P(never) = 0.85^100 < 1e-7.
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] == t.pad_id || tokens[i] == t.bos_id) {
      EXPECT_EQ(times[i], 0) << "position " << i;
    } else {
      EXPECT_GT(times[i], 0) << "position " << i;
    }
  }
}

TEST(Mlm, DeterministicInSeedAndStep) {
  const Tokenizer t = byte_level_tokenizer();
  const std::vector<std::int32_t> tokens = batch_tokens(t);
  const MlmBatch a = mask_tokens(tokens, kRows, kLength, t, 1, 17);
  const MlmBatch b = mask_tokens(tokens, kRows, kLength, t, 1, 17);
  EXPECT_EQ(a.inputs, b.inputs);
  EXPECT_EQ(a.targets, b.targets);
  EXPECT_NE(a.targets, mask_tokens(tokens, kRows, kLength, t, 1, 18).targets);
  EXPECT_NE(a.targets, mask_tokens(tokens, kRows, kLength, t, 2, 17).targets);
}

TEST(Mlm, RowsOfOnlySpecialTokensGetNoTargetsAndShortRowsGetOne) {
  const Tokenizer t = byte_level_tokenizer();
  const std::vector<std::int32_t> tokens = {t.pad_id, t.pad_id, t.pad_id, t.bos_id,  //
                                            'a', t.pad_id, t.pad_id, t.pad_id};
  const MlmBatch out = mask_tokens(tokens, 2, 4, t, 0, 0);
  EXPECT_EQ(std::count(out.targets.begin(), out.targets.begin() + 4, -1), 4);
  EXPECT_EQ(out.targets[4], 'a');
  EXPECT_EQ(std::count(out.targets.begin() + 5, out.targets.end(), -1), 3);
}

TEST(Mlm, ErrorsNameTheProblem) {
  const Tokenizer t = byte_level_tokenizer();
  const std::vector<std::int32_t> tokens = {1, 2, 261, 3};
  EXPECT_TRUE(contains(error_of([&] { mask_tokens(tokens, 1, 4, t, 0, 0); }),
                       "token id 261 at row 0, position 2 is outside the vocabulary [0, 261)"));
  const std::vector<std::int32_t> fine = {1, 2, 3, 4};
  Tokenizer no_mask = t;
  no_mask.mask_id = -1;
  EXPECT_TRUE(contains(error_of([&] { mask_tokens(fine, 1, 4, no_mask, 0, 0); }), "no mask token"));
  EXPECT_TRUE(contains(error_of([&] { mask_tokens(fine, 1, 4, t, 0, 0, 1.5); }), "mask fraction 1.5"));
  EXPECT_TRUE(contains(error_of([&] { mask_tokens(fine, 1, 4, t, 0, -1); }), "step -1"));
}

}  // namespace
}  // namespace race::train
