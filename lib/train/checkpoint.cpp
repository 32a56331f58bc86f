// Checkpoint files: layout and rules in checkpoint.h.
#include "train/checkpoint.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace race::train {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPrefix = "step-";
constexpr std::string_view kSuffix = ".h5";
constexpr std::string_view kTempSuffix = ".h5.tmp";

// The four tensor groups, in the order they are written and read.
struct Group {
  std::string_view path;   // HDF5 group
  std::string_view label;  // how errors name one of its tensors
};
constexpr Group kParams{"/params", "parameter"};
constexpr Group kAdamM{"/optim/m", "adam_m tensor"};
constexpr Group kAdamV{"/optim/v", "adam_v tensor"};
constexpr Group kBuffers{"/buffers", "buffer"};

template <typename Tensor>
struct GroupTensors {
  Group group;
  const std::vector<Tensor>* tensors;
};

template <typename Tensor>
std::vector<GroupTensors<Tensor>> groups_of(const BasicCheckpoint<Tensor>& checkpoint) {
  return {{kParams, &checkpoint.params},
          {kAdamM, &checkpoint.adam_m},
          {kAdamV, &checkpoint.adam_v},
          {kBuffers, &checkpoint.buffers}};
}

std::string shape_text(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ",")); }

// Parses the step out of "step-<digits><suffix>"; nullopt for any other name (or a step beyond int64).
std::optional<std::int64_t> step_of_name(const std::string& name, std::string_view suffix) {
  if (name.size() <= kPrefix.size() + suffix.size() || !name.starts_with(kPrefix) || !name.ends_with(suffix))
    return std::nullopt;
  const char* first = name.data() + kPrefix.size();
  const char* last = name.data() + name.size() - suffix.size();
  if (!std::all_of(first, last, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  std::int64_t step = 0;
  const auto [end, ec] = std::from_chars(first, last, step);
  if (ec != std::errc() || end != last) return std::nullopt;
  return step;
}

struct StepFile {
  std::int64_t step;
  fs::path path;
};

// Files in `dir` named step-<digits><suffix>, highest step first.
std::vector<StepFile> step_files(const fs::path& dir, std::string_view suffix) {
  std::vector<StepFile> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    if (const auto step = step_of_name(it->path().filename().string(), suffix))
      files.push_back({*step, it->path()});
  }
  if (ec) fail("{}: cannot list the checkpoint directory: {}", dir.string(), ec.message());
  std::sort(files.begin(), files.end(), [](const StepFile& a, const StepFile& b) {
    return a.step != b.step ? a.step > b.step : a.path > b.path;
  });
  return files;
}

std::int64_t element_count(const std::vector<std::int64_t>& shape, std::string_view context) {
  std::int64_t count = 1;
  for (const std::int64_t extent : shape) {
    if (extent < 0) fail("{}: shape {} has a negative extent", context, shape_text(shape));
    if (extent != 0 && count > std::numeric_limits<std::int64_t>::max() / extent)
      fail("{}: shape {} has too many elements", context, shape_text(shape));
    count *= extent;
  }
  return count;
}

void check_name(const std::string& name, std::string_view context) {
  if (name.empty()) fail("{}: empty tensor name", context);
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = name.find('/', start);
    const std::string_view part =
        std::string_view(name).substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == "..")
      fail("{}: tensor name \"{}\": expected components between '/' that are non-empty and not \".\" or "
           "\"..\"",
           context, name);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
}

// Names, uniqueness, group clashes and element counts of one group, plus the optimizer state matching the
// parameters. `context` names the file (and step) for the messages.
template <typename Tensor>
void check_structure(const BasicCheckpoint<Tensor>& checkpoint, std::string_view context) {
  for (const auto& [group, tensors] : groups_of(checkpoint)) {
    for (const Tensor& tensor : *tensors) {
      check_name(tensor.name, fmt::format("{}: {}", context, group.label));
      const std::string what = fmt::format("{}: {} {}", context, group.label, tensor.name);
      const std::int64_t count = element_count(tensor.shape, what);
      if (count != static_cast<std::int64_t>(tensor.values.size()))
        fail("{}: shape {} needs {} values, got {}", what, shape_text(tensor.shape), count,
             tensor.values.size());
    }
    // HDF5 cannot hold a dataset "a" and a dataset "a/b" (which needs a group "a"), nor two "a"s.
    std::set<std::string_view> seen;
    for (const Tensor& tensor : *tensors) {
      if (!seen.insert(tensor.name).second) fail("{}: {} {} appears twice", context, group.label, tensor.name);
    }
    for (const Tensor& tensor : *tensors) {
      const std::string& name = tensor.name;
      for (std::size_t slash = name.find('/'); slash != std::string::npos; slash = name.find('/', slash + 1)) {
        const std::string_view prefix = std::string_view(name).substr(0, slash);
        if (seen.contains(prefix))
          fail("{}: {} {} is also the group holding {}; a name may not be another's prefix up to a '/'",
               context, group.label, prefix, name);
      }
    }
  }
  if (checkpoint.adam_m.empty() != checkpoint.adam_v.empty())
    fail("{}: {} adam_m and {} adam_v tensors; expected both or neither", context, checkpoint.adam_m.size(),
         checkpoint.adam_v.size());
  for (const auto& [group, tensors] :
       {std::pair{kAdamM, &checkpoint.adam_m}, std::pair{kAdamV, &checkpoint.adam_v}}) {
    if (tensors->empty()) continue;
    if (tensors->size() != checkpoint.params.size())
      fail("{}: {} {} tensors for {} parameters; expected one per parameter (or none)", context,
           tensors->size(), group.path, checkpoint.params.size());
    for (std::size_t i = 0; i < tensors->size(); ++i) {
      const Tensor& state = (*tensors)[i];
      const Tensor& param = checkpoint.params[i];
      if (state.name != param.name || state.shape != param.shape)
        fail("{}: {} {} {} at position {} does not match parameter {} {}", context, group.label, state.name,
             shape_text(state.shape), i, param.name, shape_text(param.shape));
    }
  }
}

void check_finite(const CheckpointView& checkpoint, std::string_view context) {
  for (const auto& [group, tensors] : groups_of(checkpoint)) {
    for (const TensorView& tensor : *tensors) {
      const auto bad = std::find_if(tensor.values.begin(), tensor.values.end(),
                                    [](float v) { return !std::isfinite(v); });
      if (bad != tensor.values.end())
        fail("{}: {} {} holds {} at element {}; refusing to write a checkpoint with non-finite values",
             context, group.label, tensor.name, *bad, bad - tensor.values.begin());
    }
  }
}

std::string dump_json(const nlohmann::json& value, std::string_view context, std::string_view what) {
  try {
    return value.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {} cannot be stored as JSON text: {}", context, what, e.what());
  }
}

nlohmann::json parse_json(const std::string& text, std::string_view context, std::string_view what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {} is not valid JSON: {}", context, what, e.what());
  }
}

void remove_quietly(const fs::path& path, std::string_view why) {
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) spdlog::warn("{}: cannot delete {}: {}", path.string(), why, ec.message());
}

// The checks latest_checkpoint makes before trusting a file; throws race::Error with the reason.
void check_complete(const fs::path& path, std::int64_t step_in_name) {
  const Hdf5File file = Hdf5File::open(path);
  if (!file.has_attribute("/", "format") || file.read_string_attribute("/", "format") != kCheckpointFormat)
    fail("{}: not a race checkpoint (no format attribute \"{}\")", file.name(), kCheckpointFormat);
  if (!file.has_attribute("/", "format_version")) fail("{}: no format_version attribute", file.name());
  const std::int64_t step = file.read_int64_attribute("/", "step");
  if (step != step_in_name) fail("{}: step attribute {} does not match the file name", file.name(), step);
}

}  // namespace

CheckpointView view_of(const Checkpoint& checkpoint) {
  CheckpointView view;
  view.step = checkpoint.step;
  view.tokens_seen = checkpoint.tokens_seen;
  view.config_json = checkpoint.config_json;
  view.source_revision = checkpoint.source_revision;
  view.trainer_state = checkpoint.trainer_state;
  const auto views = [](const std::vector<NamedTensor>& tensors) {
    std::vector<TensorView> out;
    out.reserve(tensors.size());
    for (const NamedTensor& t : tensors) out.push_back({t.name, t.shape, t.values});
    return out;
  };
  view.params = views(checkpoint.params);
  view.adam_m = views(checkpoint.adam_m);
  view.adam_v = views(checkpoint.adam_v);
  view.buffers = views(checkpoint.buffers);
  return view;
}

std::string checkpoint_file_name(std::int64_t step) {
  if (step < 0) fail("checkpoint step {}: expected a step >= 0", step);
  return fmt::format("{}{:08d}{}", kPrefix, step, kSuffix);
}

fs::path write_checkpoint(const fs::path& dir, const CheckpointView& checkpoint, std::int64_t keep_last,
                          const std::function<void(Hdf5Writer&)>& extra) {
  const fs::path path = dir / checkpoint_file_name(checkpoint.step);
  const std::string context = fmt::format("checkpoint {} (step {})", path.string(), checkpoint.step);
  if (keep_last < 1) fail("{}: keep_last {}: expected at least 1", context, keep_last);
  if (checkpoint.tokens_seen < 0)
    fail("{}: tokens_seen {}: expected a count >= 0", context, checkpoint.tokens_seen);
  parse_json(checkpoint.config_json, context, "the config");
  const std::string trainer_state = dump_json(checkpoint.trainer_state, context, "the trainer state");
  check_structure(checkpoint, context);
  // Every check runs before the temporary file exists, so a refused checkpoint leaves nothing behind.
  check_finite(checkpoint, context);

  Hdf5Writer writer = Hdf5Writer::create(path);
  writer.write_string_attribute("/", "format", kCheckpointFormat);
  writer.write_int64_attribute("/", "format_version", kCheckpointFormatVersion);
  writer.write_int64_attribute("/", "step", checkpoint.step);
  writer.write_int64_attribute("/", "tokens_seen", checkpoint.tokens_seen);
  writer.write_string_attribute("/", "config", checkpoint.config_json);
  writer.write_string_attribute("/", "source_revision", checkpoint.source_revision);
  writer.write_string_attribute("/", "trainer_state", trainer_state);
  for (const auto& [group, tensors] : groups_of(checkpoint)) {
    nlohmann::json names = nlohmann::json::array();
    for (const TensorView& tensor : *tensors) {
      writer.write(fmt::format("{}/{}", group.path, tensor.name), tensor.shape, tensor.values);
      names.push_back(tensor.name);
    }
    writer.write_string_attribute(group.path, "names", names.dump());
  }
  if (extra) extra(writer);
  writer.commit();

  // Pruning is housekeeping: the new checkpoint is already safe, so failures here only warn.
  for (const StepFile& temp : step_files(dir, kTempSuffix))
    remove_quietly(temp.path, "a stale temporary checkpoint");
  std::int64_t kept = 1;  // the one just written
  for (const StepFile& old : step_files(dir, kSuffix)) {
    if (old.step > checkpoint.step || old.path.filename() == path.filename()) continue;
    if (kept < keep_last) {
      ++kept;
    } else {
      remove_quietly(old.path, fmt::format("an old checkpoint (keep_last {})", keep_last));
    }
  }
  return path;
}

fs::path write_checkpoint(const fs::path& dir, const Checkpoint& checkpoint, std::int64_t keep_last,
                          const std::function<void(Hdf5Writer&)>& extra) {
  return write_checkpoint(dir, view_of(checkpoint), keep_last, extra);
}

std::optional<fs::path> latest_checkpoint(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  for (const StepFile& candidate : step_files(dir, kSuffix)) {
    try {
      check_complete(candidate.path, candidate.step);
      return candidate.path;
    } catch (const Error& e) {
      spdlog::warn("skipping checkpoint: {}", e.what());  // the message names the file
    }
  }
  return std::nullopt;
}

Hdf5File open_checkpoint(const fs::path& path) {
  Hdf5File file = Hdf5File::open(path);
  if (!file.has_attribute("/", "format"))
    fail("{}: not a race checkpoint (no \"format\" attribute on the root group)", file.name());
  const std::string format = file.read_string_attribute("/", "format");
  if (format != kCheckpointFormat)
    fail("{}: not a race checkpoint (format \"{}\", expected \"{}\")", file.name(), format, kCheckpointFormat);
  const std::int64_t version = file.read_int64_attribute("/", "format_version");
  if (version > kCheckpointFormatVersion)
    fail("{}: checkpoint format_version {} is newer than this program reads ({})", file.name(), version,
         kCheckpointFormatVersion);
  if (version < 1) fail("{}: checkpoint format_version {}: expected 1 to {}", file.name(), version,
                        kCheckpointFormatVersion);
  return file;
}

Checkpoint read_checkpoint(const fs::path& path, const std::function<void(const Hdf5File&)>& extra) {
  const Hdf5File file = open_checkpoint(path);
  const std::string& context = file.name();
  Checkpoint checkpoint;
  checkpoint.step = file.read_int64_attribute("/", "step");
  checkpoint.tokens_seen = file.read_int64_attribute("/", "tokens_seen");
  if (checkpoint.step < 0) fail("{}: step {}: expected a step >= 0", context, checkpoint.step);
  if (checkpoint.tokens_seen < 0)
    fail("{}: tokens_seen {}: expected a count >= 0", context, checkpoint.tokens_seen);
  checkpoint.config_json = file.read_string_attribute("/", "config");
  parse_json(checkpoint.config_json, context, "attribute config");
  checkpoint.source_revision = file.read_string_attribute("/", "source_revision");
  checkpoint.trainer_state =
      parse_json(file.read_string_attribute("/", "trainer_state"), context, "attribute trainer_state");
  for (const auto& [group, tensors] : {std::pair{kParams, &checkpoint.params}, std::pair{kAdamM, &checkpoint.adam_m},
                                       std::pair{kAdamV, &checkpoint.adam_v},
                                       std::pair{kBuffers, &checkpoint.buffers}}) {
    const std::string where = fmt::format("{}: attribute names of {}", context, group.path);
    const nlohmann::json names = parse_json(file.read_string_attribute(group.path, "names"), context,
                                            fmt::format("attribute names of {}", group.path));
    if (!names.is_array()) fail("{}: expected a JSON array of tensor names", where);
    for (const nlohmann::json& name : names) {
      if (!name.is_string()) fail("{}: expected a JSON array of strings, found {}", where, name.dump());
      std::string tensor_name = name.get<std::string>();
      check_name(tensor_name, where);
      ArrayData<float> data = file.read_float32(fmt::format("{}/{}", group.path, tensor_name));
      tensors->push_back({std::move(tensor_name), std::move(data.shape), std::move(data.values)});
    }
  }
  check_structure(checkpoint, context);
  if (extra) extra(file);
  return checkpoint;
}

void check_compatible(const Checkpoint& checkpoint, std::span<const TensorSpec> params,
                      std::span<const TensorSpec> buffers, std::string_view source) {
  const auto check = [&](const std::vector<NamedTensor>& stored, std::span<const TensorSpec> expected,
                         std::string_view label) {
    std::map<std::string_view, const NamedTensor*> by_name;
    for (const NamedTensor& tensor : stored) by_name.emplace(tensor.name, &tensor);
    for (const TensorSpec& spec : expected) {
      const auto it = by_name.find(spec.name);
      if (it == by_name.end())
        fail("checkpoint {}: the config expects {} {} with shape {}, which the checkpoint lacks", source, label,
             spec.name, shape_text(spec.shape));
      if (it->second->shape != spec.shape)
        fail("checkpoint {}: {} {} has shape {}, the config expects {}", source, label, spec.name,
             shape_text(it->second->shape), shape_text(spec.shape));
      by_name.erase(it);
    }
    // What is left the config does not have; report the first in the checkpoint's own order.
    for (const NamedTensor& tensor : stored) {
      if (by_name.contains(tensor.name))
        fail("checkpoint {}: {} {} with shape {} is not in the config", source, label, tensor.name,
             shape_text(tensor.shape));
    }
  };
  check(checkpoint.params, params, "parameter");
  check(checkpoint.buffers, buffers, "buffer");
}

}  // namespace race::train
