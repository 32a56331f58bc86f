// Shared machinery of the data loaders: portable seeded random numbers, the per-epoch shuffled order of
// examples (LM windows, classification rows), and the loader position kept in checkpoints.
//
// Portability: std::shuffle and std::uniform_int_distribution are implementation-defined, so two standard
// libraries give different orders from the same seed. Only std::seed_seq and std::mt19937_64 are specified
// bit for bit; everything here is built on those two alone, so the same seed gives the same order on any
// machine and compiler.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

namespace race::train {

// A generator seeded from a list of 64-bit keys (e.g. seed, stream tag, epoch): every key counts, so
// (seed, epoch 1) and (seed, epoch 2) give unrelated streams.
std::mt19937_64 seeded_rng(std::initializer_list<std::uint64_t> keys);

// Uniform integer in [0, n), n >= 1, without the modulo bias (rejection of the short last interval).
std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t n);

// Streams of seeded_rng, so that the loaders and MLM masking draw unrelated numbers from one user seed.
enum class RngStream : std::uint64_t { lm_order = 1, classification_order = 2, mlm_mask = 3 };

// A permutation of [0, n) (Fisher-Yates) drawn from seeded_rng({seed, stream, epoch}): a function of its
// arguments only, so a resumed loader rebuilds the order of its epoch without replaying earlier ones.
std::vector<std::int64_t> epoch_permutation(std::int64_t n, std::uint64_t seed, RngStream stream,
                                            std::int64_t epoch);

// Where a loader stands: `index` examples of epoch `epoch` have been handed out (0 <= index < examples per
// epoch; a loader that finishes an epoch moves to (epoch + 1, 0) at once). Stored in checkpoints as JSON
// {"epoch": E, "index": I}.
struct DataState {
  std::int64_t epoch = 0;
  std::int64_t index = 0;
  bool operator==(const DataState&) const = default;
};

// The part of every global batch that one rank reads in data-parallel training: of a batch of B rows, rank r
// of N takes rows [r * B / N, (r + 1) * B / N), and reads only those. The loader's DataState still counts
// whole global batches, so it is the same on every rank and for any N.
struct BatchShard {
  std::int64_t rank = 0;
  std::int64_t world = 1;
  // Rows of this shard in a global batch of `batch_size`; a race::Error unless world divides batch_size.
  std::int64_t rows(std::int64_t batch_size) const;
};

void to_json(nlohmann::json& json, const DataState& state);
// Requires an object with non-negative integers "epoch" and "index" and no other keys; a race::Error names
// the offending key otherwise.
void from_json(const nlohmann::json& json, DataState& state);

}  // namespace race::train
