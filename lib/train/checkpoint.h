// Training checkpoints as HDF5 files (DESIGN section 4): writing one atomically with keep-last-k pruning,
// finding the newest complete one in a directory, reading it back, and checking it against a model config.
//
// File layout (readable with h5py):
//   root attributes  format = "race-checkpoint", format_version = 1, step, tokens_seen (int64),
//                    config (the resolved config, JSON text), source_revision, trainer_state (JSON text)
//   /params/<name>   fp32 parameters        /buffers/<name>   fp32 frozen tensors (e.g. RACE hyperplanes)
//   /optim/m/<name>  AdamW first moments    /optim/v/<name>   AdamW second moments
//   each of the four groups carries attribute `names`: a JSON array of its tensor names in order
//   anything an `extra` callback writes, e.g. /tokenizer
// A tensor name maps to a dataset path unchanged below its group: "layers.0.attn.qkv.weight" is the dataset
// /params/layers.0.attn.qkv.weight, and a '/' in a name makes intermediate groups ("embed/tok" is
// /params/embed/tok). Names therefore must be non-empty, with no empty, "." or ".." component between
// slashes, and no name may be the group of another ("a" next to "a/b"). The `names` attribute keeps the
// order of the tensors, which HDF5 does not, and lets a reader find them without walking groups.
//
// Files are named step-<step, zero-padded to 8 digits>.h5 inside the checkpoint directory; the step is
// parsed back as a number, so runs past 10^8 steps still sort correctly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/hdf5_io.h"

namespace race::train {

inline constexpr std::string_view kCheckpointFormat = "race-checkpoint";
inline constexpr std::int64_t kCheckpointFormatVersion = 1;

struct NamedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;  // row-major, product(shape) elements
};

// A tensor that lives elsewhere (a parameter arena), for writing without a copy.
struct TensorView {
  std::string name;
  std::vector<std::int64_t> shape;
  std::span<const float> values;
};

struct TensorSpec {
  std::string name;
  std::vector<std::int64_t> shape;
};

// What a checkpoint holds. adam_m and adam_v are either empty (no optimizer state, e.g. an exported model)
// or list exactly the parameters' names and shapes in the same order.
template <typename Tensor>
struct BasicCheckpoint {
  std::int64_t step = 0;         // optimizer updates completed
  std::int64_t tokens_seen = 0;  // training tokens consumed
  std::string config_json;       // the resolved config; must parse as JSON
  std::string source_revision;
  std::vector<Tensor> params, adam_m, adam_v, buffers;
  nlohmann::json trainer_state;  // data-loader position, RNG state, ...: opaque here
};

using Checkpoint = BasicCheckpoint<NamedTensor>;
using CheckpointView = BasicCheckpoint<TensorView>;

// A view of `checkpoint`'s tensors (valid while `checkpoint` is alive and unchanged).
CheckpointView view_of(const Checkpoint& checkpoint);

// "step-00000042.h5"; a negative step is an error.
std::string checkpoint_file_name(std::int64_t step);

// Writes `<dir>/checkpoint_file_name(step)`: first checks every tensor (names, shapes, element counts, finite
// values; a NaN or inf is an error naming the tensor and the step, and nothing is written), then writes
// through Hdf5Writer (temporary file, flush, fsync, rename) and calls `extra` on the open writer before the
// commit so that other groups (the tokenizer) land in the same atomic file. After the commit it deletes
// every stale step-*.h5.tmp in `dir` (left by a crashed write) and all but the newest keep_last checkpoints
// whose step is <= this one; the one just written is always kept, and files with a higher step (left by a
// run that was resumed from an earlier checkpoint) are left for this run to overwrite when it gets there.
// keep_last must be >= 1. `dir` must exist. Returns the path written.
std::filesystem::path write_checkpoint(const std::filesystem::path& dir, const CheckpointView& checkpoint,
                                       std::int64_t keep_last,
                                       const std::function<void(Hdf5Writer&)>& extra = {});
std::filesystem::path write_checkpoint(const std::filesystem::path& dir, const Checkpoint& checkpoint,
                                       std::int64_t keep_last,
                                       const std::function<void(Hdf5Writer&)>& extra = {});

// The complete checkpoint with the highest step in `dir`: among files named step-<digits>.h5 (*.tmp files are
// never considered), the first from the top that opens as HDF5 and whose format attribute is
// "race-checkpoint", whose format_version is present and whose step attribute matches its name. Files that
// fail are skipped with a spdlog warning naming the file and the reason. nullopt when there is none (or
// `dir` does not exist). A file of a newer format version is returned, so that reading it fails loudly
// rather than silently resuming from an older checkpoint.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& dir);

// Opens `path` and checks that it is a race checkpoint of a version this code reads; errors name the file:
//   x.h5: not a race checkpoint (no "format" attribute on the root group)
//   x.h5: checkpoint format_version 2 is newer than this program reads (1)
Hdf5File open_checkpoint(const std::filesystem::path& path);

// open_checkpoint, then every field; `extra` (optional) reads further groups (the tokenizer) from the open
// file. Any missing or malformed part is an error naming the file and the attribute or dataset.
Checkpoint read_checkpoint(const std::filesystem::path& path,
                           const std::function<void(const Hdf5File&)>& extra = {});

// Checks that `checkpoint` holds exactly the expected parameters and buffers (by name; order may differ).
// The first mismatch, in the order of `params` then `buffers`, is an error prefixed with `source`:
//   checkpoint run/step-00000100.h5: parameter layers.0.mlp.fc.weight has shape [1024,256], the config
//   expects [512,256]
// and similarly for a tensor the config expects but the checkpoint lacks, or one the config does not have.
void check_compatible(const Checkpoint& checkpoint, std::span<const TensorSpec> params,
                      std::span<const TensorSpec> buffers, std::string_view source);

}  // namespace race::train
