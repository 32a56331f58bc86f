// Seeded RNG, unbiased bounded integers, epoch permutations and the loader state's JSON form.
#include "train/data_order.h"

#include <limits>
#include <utility>

#include "core/error.h"

namespace race::train {

std::mt19937_64 seeded_rng(std::initializer_list<std::uint64_t> keys) {
  // seed_seq takes 32-bit words, so each key goes in as its two halves.
  std::vector<std::uint32_t> words;
  words.reserve(2 * keys.size());
  for (const std::uint64_t key : keys) {
    words.push_back(static_cast<std::uint32_t>(key));
    words.push_back(static_cast<std::uint32_t>(key >> 32));
  }
  std::seed_seq sequence(words.begin(), words.end());
  return std::mt19937_64(sequence);
}

std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t n) {
  RACE_CHECK(n >= 1, "uniform_below needs n >= 1");
  // 2^64 mod n draws at the bottom would make small results more likely; they are redrawn.
  const std::uint64_t threshold = (0 - n) % n;
  for (;;) {
    const std::uint64_t x = rng();
    if (x >= threshold) return x % n;
  }
}

std::vector<std::int64_t> epoch_permutation(std::int64_t n, std::uint64_t seed, RngStream stream,
                                            std::int64_t epoch) {
  RACE_CHECK(n >= 0 && epoch >= 0, "n {} and epoch {} must be non-negative", n, epoch);
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  std::mt19937_64 rng =
      seeded_rng({seed, static_cast<std::uint64_t>(stream), static_cast<std::uint64_t>(epoch)});
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(uniform_below(rng, static_cast<std::uint64_t>(i) + 1));
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
  return order;
}

std::int64_t BatchShard::rows(std::int64_t batch_size) const {
  RACE_CHECK(world >= 1 && rank >= 0 && rank < world, "shard rank {} of world {}", rank, world);
  if (batch_size % world != 0)
    fail(
        "a batch of {} rows cannot be split evenly over {} ranks: the batch size must be a multiple of the "
        "number of ranks",
        batch_size, world);
  return batch_size / world;
}

void to_json(nlohmann::json& json, const DataState& state) {
  json = nlohmann::json{{"epoch", state.epoch}, {"index", state.index}};
}

void from_json(const nlohmann::json& json, DataState& state) {
  if (!json.is_object()) fail("data-loader state: expected a JSON object, got {}", json.dump());
  for (const auto& [key, value] : json.items()) {
    if (key != "epoch" && key != "index") {
      fail("data-loader state: unknown key \"{}\" (expected \"epoch\" and \"index\")", key);
    }
  }
  const auto read = [&json](const char* key) {
    if (!json.contains(key)) fail("data-loader state: key \"{}\" missing", key);
    const nlohmann::json& value = json.at(key);
    if (!value.is_number_integer() || (value.is_number_unsigned() &&
                                       value.get<std::uint64_t>() >
                                           static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))) {
      fail("data-loader state: \"{}\" must be an integer, got {}", key, value.dump());
    }
    const auto number = value.get<std::int64_t>();
    if (number < 0) fail("data-loader state: \"{}\" must be non-negative, got {}", key, number);
    return number;
  };
  state.epoch = read("epoch");
  state.index = read("index");
}

}  // namespace race::train
