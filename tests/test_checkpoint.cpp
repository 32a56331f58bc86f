// Tests of lib/train/checkpoint: a round trip of every field (with an extra group written and read by
// callbacks, as the tokenizer is), the file layout h5py would see, the refusal of NaN/inf that leaves no file
// and the previous checkpoint intact, keep-last pruning and stale temporary files, latest_checkpoint skipping
// temporary, truncated and foreign files, and the error text for incompatible, foreign and newer files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/hdf5_io.h"
#include "test_support.h"
#include "train/checkpoint.h"

namespace race::train {
namespace {

using race::test::error_of;
using race::test::contains;

namespace fs = std::filesystem;

class CheckpointTest : public race::test::TempDirTest {
 protected:
  CheckpointTest() : TempDirTest("checkpoint") {}

  // A small model's checkpoint: names with dots and a slash, a scalar, optimizer state, a buffer.
  static Checkpoint sample(std::int64_t step) {
    Checkpoint c;
    c.step = step;
    c.tokens_seen = step * 4096 + 7;
    c.config_json = R"({"model":{"d_model":4,"layers":1},"name":"tiny"})";
    c.source_revision = "a21ef55-dirty";
    const float base = static_cast<float>(step);
    c.params = {{"embed.weight", {3, 4}, std::vector<float>(12, base + 0.5f)},
                {"layers.0.attn.qkv.weight", {2, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -12}},
                {"head/scale", {}, {base}}};
    for (const NamedTensor& p : c.params) {
      NamedTensor m = p, v = p;
      for (float& x : m.values) x *= 0.25f;
      for (float& x : v.values) x = x * x;
      c.adam_m.push_back(m);
      c.adam_v.push_back(v);
    }
    c.buffers = {{"layers.0.attn.planes", {2, 4}, {1, -1, 0.5f, 2, 3, 4, 5, 6}}};
    c.trainer_state = {{"loader", {{"epoch", 2}, {"position", 12345678901LL}}},
                       {"rng", {{"seed", 42}, {"state", "0123456789abcdef"}}}};
    return c;
  }

  fs::path path(std::int64_t step) const { return dir_ / checkpoint_file_name(step); }

  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

};

void expect_same(const std::vector<NamedTensor>& a, const std::vector<NamedTensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].shape, b[i].shape) << a[i].name;
    EXPECT_EQ(a[i].values, b[i].values) << a[i].name;
  }
}

TEST_F(CheckpointTest, FileName) {
  EXPECT_EQ(checkpoint_file_name(0), "step-00000000.h5");
  EXPECT_EQ(checkpoint_file_name(1234), "step-00001234.h5");
  EXPECT_EQ(checkpoint_file_name(123456789012), "step-123456789012.h5");
  EXPECT_EQ(error_of([] { checkpoint_file_name(-1); }), "checkpoint step -1: expected a step >= 0");
}

TEST_F(CheckpointTest, RoundTripEveryField) {
  const Checkpoint original = sample(100);
  const std::vector<std::uint8_t> piece_bytes = {'a', 0, 'b'};
  const fs::path written = write_checkpoint(dir_, original, 3, [&](Hdf5Writer& writer) {
    writer.write_string_attribute("/tokenizer", "kind", "bytes");
    writer.write("/tokenizer/piece_bytes", {3}, piece_bytes);
  });
  EXPECT_EQ(written, path(100));
  EXPECT_EQ(listing(), std::vector<std::string>{"step-00000100.h5"});

  std::string tokenizer_kind;
  std::vector<std::uint8_t> read_bytes;
  const Checkpoint back = read_checkpoint(written, [&](const Hdf5File& file) {
    tokenizer_kind = file.read_string_attribute("/tokenizer", "kind");
    read_bytes = file.read_uint8("/tokenizer/piece_bytes").values;
  });
  EXPECT_EQ(back.step, 100);
  EXPECT_EQ(back.tokens_seen, original.tokens_seen);
  EXPECT_EQ(back.config_json, original.config_json);
  EXPECT_EQ(back.source_revision, original.source_revision);
  EXPECT_EQ(back.trainer_state, original.trainer_state);
  expect_same(back.params, original.params);
  expect_same(back.adam_m, original.adam_m);
  expect_same(back.adam_v, original.adam_v);
  expect_same(back.buffers, original.buffers);
  EXPECT_EQ(tokenizer_kind, "bytes");
  EXPECT_EQ(read_bytes, piece_bytes);

  // The layout of checkpoint.h, as h5py would see it.
  const Hdf5File file = Hdf5File::open(written);
  EXPECT_EQ(file.read_string_attribute("/", "format"), "race-checkpoint");
  EXPECT_EQ(file.read_int64_attribute("/", "format_version"), 1);
  EXPECT_EQ(file.read_int64_attribute("/", "step"), 100);
  EXPECT_EQ(nlohmann::json::parse(file.read_string_attribute("/", "config")),
            nlohmann::json::parse(original.config_json));
  EXPECT_TRUE(file.has_dataset("/params/layers.0.attn.qkv.weight"));
  EXPECT_TRUE(file.has_group("/params/head"));
  EXPECT_TRUE(file.has_dataset("/params/head/scale"));
  EXPECT_TRUE(file.has_dataset("/optim/m/embed.weight"));
  EXPECT_TRUE(file.has_dataset("/optim/v/embed.weight"));
  EXPECT_TRUE(file.has_dataset("/buffers/layers.0.attn.planes"));
  EXPECT_EQ(file.dataset_info("/params/embed.weight").type_name, "float32");
  EXPECT_EQ(file.read_string_attribute("/params", "names"),
            R"(["embed.weight","layers.0.attn.qkv.weight","head/scale"])");
}

TEST_F(CheckpointTest, NoOptimizerStateAndViews) {
  Checkpoint c = sample(5);
  c.adam_m.clear();
  c.adam_v.clear();
  c.buffers.clear();
  c.trainer_state = nullptr;
  // Writing from views of memory owned elsewhere, as the trainer does from its arenas.
  write_checkpoint(dir_, view_of(c), 1);
  const Checkpoint back = read_checkpoint(path(5));
  expect_same(back.params, c.params);
  EXPECT_TRUE(back.adam_m.empty());
  EXPECT_TRUE(back.adam_v.empty());
  EXPECT_TRUE(back.buffers.empty());
  EXPECT_TRUE(back.trainer_state.is_null());
}

TEST_F(CheckpointTest, RefusesNonFiniteValuesAndKeepsThePreviousCheckpoint) {
  write_checkpoint(dir_, sample(1), 1);
  Checkpoint bad = sample(2);
  bad.adam_v[1].values[3] = std::numeric_limits<float>::quiet_NaN();
  const std::string error = error_of([&] { write_checkpoint(dir_, bad, 1); });
  EXPECT_EQ(error, "checkpoint " + path(2).string() +
                       " (step 2): adam_v tensor layers.0.attn.qkv.weight holds nan at element 3; refusing to "
                       "write a checkpoint with non-finite values");
  bad = sample(2);
  bad.params[2].values[0] = -std::numeric_limits<float>::infinity();
  EXPECT_TRUE(contains(error_of([&] { write_checkpoint(dir_, bad, 1); }),
                       "(step 2): parameter head/scale holds -inf at element 0"));
  EXPECT_EQ(listing(), std::vector<std::string>{"step-00000001.h5"});
  expect_same(read_checkpoint(path(1)).params, sample(1).params);
  EXPECT_EQ(latest_checkpoint(dir_), path(1));
}

TEST_F(CheckpointTest, RejectsMalformedContents) {
  const auto error = [&](auto change) {
    Checkpoint c = sample(3);
    change(c);
    const std::string message = error_of([&] { write_checkpoint(dir_, c, 2); });
    EXPECT_TRUE(listing().empty()) << message;
    return message;
  };
  const std::string prefix = "checkpoint " + path(3).string() + " (step 3): ";
  EXPECT_EQ(error([](Checkpoint& c) { c.params[0].values.pop_back(); }),
            prefix + "parameter embed.weight: shape [3,4] needs 12 values, got 11");
  EXPECT_EQ(error([](Checkpoint& c) { c.buffers[0].name = "a//b"; }),
            prefix + "buffer: tensor name \"a//b\": expected components between '/' that are non-empty and not "
                     "\".\" or \"..\"");
  EXPECT_EQ(error([](Checkpoint& c) { c.buffers[0].name = ""; }), prefix + "buffer: empty tensor name");
  EXPECT_EQ(error([](Checkpoint& c) { c.buffers.push_back(c.buffers[0]); }),
            prefix + "buffer layers.0.attn.planes appears twice");
  EXPECT_EQ(error([](Checkpoint& c) { c.buffers.push_back({"layers.0.attn.planes/x", {1}, {1.0f}}); }),
            prefix + "buffer layers.0.attn.planes is also the group holding layers.0.attn.planes/x; a name may "
                     "not be another's prefix up to a '/'");
  EXPECT_EQ(error([](Checkpoint& c) { c.adam_m.pop_back(); }),
            prefix + "2 /optim/m tensors for 3 parameters; expected one per parameter (or none)");
  EXPECT_EQ(error([](Checkpoint& c) { c.adam_v.clear(); }),
            prefix + "3 adam_m and 0 adam_v tensors; expected both or neither");
  EXPECT_EQ(error([](Checkpoint& c) { c.adam_m[0].shape = {4, 3}; }),
            prefix + "adam_m tensor embed.weight [4,3] at position 0 does not match parameter embed.weight [3,4]");
  EXPECT_TRUE(contains(error([](Checkpoint& c) { c.config_json = "{\"a\":"; }),
                       prefix + "the config is not valid JSON: "));
  EXPECT_EQ(error([](Checkpoint& c) { c.tokens_seen = -1; }), prefix + "tokens_seen -1: expected a count >= 0");
  EXPECT_EQ(error_of([&] { write_checkpoint(dir_, sample(3), 0); }), prefix + "keep_last 0: expected at least 1");
  EXPECT_TRUE(contains(error_of([&] { write_checkpoint(dir_ / "missing", sample(3), 1); }), "does not exist"));
}

TEST_F(CheckpointTest, KeepLastDeletesOlderAndStaleTemporaries) {
  // A higher step left by an earlier life of the run, and a temporary file from a crashed write.
  write_checkpoint(dir_, sample(10), 1);
  std::ofstream(dir_ / "step-00000007.h5.tmp") << "half a checkpoint";
  std::ofstream(dir_ / "notes.txt") << "not ours";
  for (std::int64_t step = 1; step <= 5; ++step) write_checkpoint(dir_, sample(step), 2);
  EXPECT_EQ(listing(), (std::vector<std::string>{"notes.txt", "step-00000004.h5", "step-00000005.h5",
                                                  "step-00000010.h5"}));
  write_checkpoint(dir_, sample(6), 1);
  EXPECT_EQ(listing(), (std::vector<std::string>{"notes.txt", "step-00000006.h5", "step-00000010.h5"}));
  // Rewriting the same step (a resume that redoes it) keeps it.
  write_checkpoint(dir_, sample(6), 1);
  EXPECT_EQ(read_checkpoint(path(6)).step, 6);
}

TEST_F(CheckpointTest, LatestSkipsTemporaryCorruptAndForeignFiles) {
  EXPECT_EQ(latest_checkpoint(dir_ / "missing"), std::nullopt);
  EXPECT_EQ(latest_checkpoint(dir_), std::nullopt);
  write_checkpoint(dir_, sample(1), 5);
  write_checkpoint(dir_, sample(20), 5);
  EXPECT_EQ(latest_checkpoint(dir_), path(20));

  // A complete file under a temporary name is still never picked.
  fs::copy_file(path(20), dir_ / "step-00000090.h5.tmp");
  // A truncated copy (a checkpoint cut off by a full disk or a copy gone wrong).
  const auto size = fs::file_size(path(20));
  fs::copy_file(path(20), path(80));
  fs::resize_file(path(80), size / 2);
  // Garbage, an HDF5 file that is not a checkpoint, and one whose step attribute disagrees with its name.
  std::ofstream(path(70)) << "not hdf5 at all";
  {
    Hdf5Writer writer = Hdf5Writer::create(path(60));
    writer.write("/x", {1}, std::vector<float>{1.0f});
    writer.commit();
  }
  fs::copy_file(path(1), path(50));
  EXPECT_EQ(latest_checkpoint(dir_), path(20));
  for (const std::int64_t step : {50, 60, 70, 80}) fs::remove(path(step));
  fs::remove(path(20));
  EXPECT_EQ(latest_checkpoint(dir_), path(1));
}

TEST_F(CheckpointTest, ForeignAndNewerFilesAreClearErrors) {
  {
    Hdf5Writer writer = Hdf5Writer::create(dir_ / "data.h5");
    writer.write("/train/tokens", {3}, std::vector<std::uint16_t>{1, 2, 3});
    writer.commit();
  }
  const std::string data = (dir_ / "data.h5").string();
  EXPECT_EQ(error_of([&] { read_checkpoint(dir_ / "data.h5"); }),
            data + ": not a race checkpoint (no \"format\" attribute on the root group)");
  {
    Hdf5Writer writer = Hdf5Writer::create(dir_ / "other.h5");
    writer.write_string_attribute("/", "format", "keras");
    writer.commit();
  }
  EXPECT_EQ(error_of([&] { read_checkpoint(dir_ / "other.h5"); }),
            (dir_ / "other.h5").string() + ": not a race checkpoint (format \"keras\", expected \"race-checkpoint\")");

  write_checkpoint(dir_, sample(4), 1);
  {
    // The same file, relabelled as written by a future version.
    Hdf5Writer writer = Hdf5Writer::create(dir_ / "future.h5");
    writer.write_string_attribute("/", "format", "race-checkpoint");
    writer.write_int64_attribute("/", "format_version", 2);
    writer.write_int64_attribute("/", "step", 4);
    writer.commit();
  }
  EXPECT_EQ(error_of([&] { read_checkpoint(dir_ / "future.h5"); }),
            (dir_ / "future.h5").string() + ": checkpoint format_version 2 is newer than this program reads (1)");
  EXPECT_TRUE(contains(error_of([&] { read_checkpoint(dir_ / "absent.h5"); }), "absent.h5"));
  {
    // A checkpoint missing a group's tensor that its names attribute lists.
    Hdf5Writer writer = Hdf5Writer::create(dir_ / "partial.h5");
    writer.write_string_attribute("/", "format", "race-checkpoint");
    writer.write_int64_attribute("/", "format_version", 1);
    writer.write_int64_attribute("/", "step", 4);
    writer.write_int64_attribute("/", "tokens_seen", 0);
    writer.write_string_attribute("/", "config", "{}");
    writer.write_string_attribute("/", "source_revision", "");
    writer.write_string_attribute("/", "trainer_state", "null");
    writer.write_string_attribute("/params", "names", R"(["w"])");
    writer.commit();
  }
  const std::string partial = error_of([&] { read_checkpoint(dir_ / "partial.h5"); });
  EXPECT_TRUE(contains(partial, "partial.h5")) << partial;
  EXPECT_TRUE(contains(partial, "/params/w")) << partial;
}

TEST_F(CheckpointTest, CompatibilityNamesTheFirstMismatch) {
  const Checkpoint c = sample(1);
  std::vector<TensorSpec> params = {{"layers.0.attn.qkv.weight", {2, 2, 3}}, {"embed.weight", {3, 4}},
                                    {"head/scale", {}}};
  const std::vector<TensorSpec> buffers = {{"layers.0.attn.planes", {2, 4}}};
  check_compatible(c, params, buffers, "run/step-1.h5");  // order may differ

  params[1].shape = {5, 4};
  EXPECT_EQ(error_of([&] { check_compatible(c, params, buffers, "run/step-1.h5"); }),
            "checkpoint run/step-1.h5: parameter embed.weight has shape [3,4], the config expects [5,4]");
  params[1] = {"embed.tokens", {3, 4}};
  EXPECT_EQ(error_of([&] { check_compatible(c, params, buffers, "x.h5"); }),
            "checkpoint x.h5: the config expects parameter embed.tokens with shape [3,4], which the checkpoint "
            "lacks");
  params.erase(params.begin() + 1);
  EXPECT_EQ(error_of([&] { check_compatible(c, params, buffers, "x.h5"); }),
            "checkpoint x.h5: parameter embed.weight with shape [3,4] is not in the config");
  params.insert(params.begin() + 1, TensorSpec{"embed.weight", {3, 4}});
  EXPECT_EQ(error_of([&] { check_compatible(c, params, {}, "x.h5"); }),
            "checkpoint x.h5: buffer layers.0.attn.planes with shape [2,4] is not in the config");
  const std::vector<TensorSpec> other_planes = {{"layers.0.attn.planes", {4, 4}}};
  EXPECT_EQ(error_of([&] { check_compatible(c, params, other_planes, "x.h5"); }),
            "checkpoint x.h5: buffer layers.0.attn.planes has shape [2,4], the config expects [4,4]");
}

}  // namespace
}  // namespace race::train
