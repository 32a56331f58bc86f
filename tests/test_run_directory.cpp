// Tests of lib/train/run_directory: the layout create() makes, refusing an existing run and bad names,
// leaving nothing behind when creation fails, open_for_resume's checks, and metrics.jsonl appends that
// survive reopening and are cut back to the resumed step.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_support.h"
#include "train/run_directory.h"

namespace race::train {
namespace {

using race::test::error_of;
using race::test::contains;

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

class RunDirectoryTest : public race::test::TempDirTest {
 protected:
  RunDirectoryTest() : TempDirTest("run_directory") {}

  void SetUp() override {
    TempDirTest::SetUp();
    root_ = dir_ / "runs";
  }

  std::vector<std::string> runs_listing() const {
    std::vector<std::string> names;
    if (!fs::exists(root_)) return names;
    for (const auto& entry : fs::directory_iterator(root_)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  static nlohmann::json config() {
    return {{"model", {{"d_model", 256}, {"layers", 4}}}, {"schedule", {{"kind", "cosine"}, {"lr", 3e-4}}}};
  }

  static nlohmann::json record(std::int64_t step, const std::string& split, double loss) {
    return {{"step", step}, {"split", split}, {"loss", loss}};
  }

  fs::path root_;
};

TEST_F(RunDirectoryTest, CreateMakesTheLayout) {
  const RunDirectory run = RunDirectory::create(root_, "gpt-small", config());
  EXPECT_EQ(run.path(), root_ / "gpt-small");
  EXPECT_EQ(run.config(), config());
  EXPECT_EQ(nlohmann::json::parse(read_text(run.config_path())), config());
  EXPECT_EQ(run.config_path(), root_ / "gpt-small" / "config.json");
  EXPECT_TRUE(fs::is_directory(run.checkpoint_dir()));
  EXPECT_EQ(run.checkpoint_dir(), root_ / "gpt-small" / "checkpoints");
  EXPECT_EQ(read_text(run.metrics_path()), "");
  EXPECT_EQ(run.log_path(), root_ / "gpt-small" / "log");
  EXPECT_EQ(runs_listing(), std::vector<std::string>{"gpt-small"});  // no temporary left beside it
}

TEST_F(RunDirectoryTest, ExistingRunsAndBadNamesAreErrors) {
  RunDirectory::create(root_, "a", config());
  const std::string existing = (root_ / "a").string();
  EXPECT_EQ(error_of([&] { RunDirectory::create(root_, "a", config()); }),
            "run directory " + existing + " already exists; resume it (--resume " + existing +
                ") or choose another name");
  // Even an empty directory is never replaced.
  fs::create_directories(root_ / "empty");
  EXPECT_TRUE(contains(error_of([&] { RunDirectory::create(root_, "empty", config()); }), "already exists"));
  EXPECT_TRUE(fs::is_empty(root_ / "empty"));

  const char* expected = "expected a non-empty name without '/' that does not start with '.'";
  EXPECT_EQ(error_of([&] { RunDirectory::create(root_, "", config()); }), std::string("run name \"\": ") + expected);
  EXPECT_TRUE(contains(error_of([&] { RunDirectory::create(root_, "x/y", config()); }), expected));
  EXPECT_TRUE(contains(error_of([&] { RunDirectory::create(root_, ".hidden", config()); }), expected));
  EXPECT_EQ(error_of([&] { RunDirectory::create(root_, "b", nlohmann::json::array()); }),
            "run b: the resolved config must be a JSON object, got array");
  EXPECT_EQ(runs_listing(), (std::vector<std::string>{"a", "empty"}));
}

TEST_F(RunDirectoryTest, FailedCreationLeavesNothingAResumeCouldMisread) {
  // A config that cannot be serialized (invalid UTF-8) fails before anything exists under either name.
  const nlohmann::json bad = {{"name", std::string("\xff\xfe")}};
  EXPECT_TRUE(contains(error_of([&] { RunDirectory::create(root_, "broken", bad); }),
                       "run broken: the resolved config cannot be written as JSON"));
  EXPECT_TRUE(runs_listing().empty());
  EXPECT_TRUE(contains(error_of([&] { RunDirectory::open_for_resume(root_ / "broken"); }),
                       "does not exist or is not a directory"));

  // A directory made by hand or cut short (no config.json, no checkpoints/) is refused by a resume.
  fs::create_directories(root_ / "half");
  EXPECT_EQ(error_of([&] { RunDirectory::open_for_resume(root_ / "half"); }),
            "run directory " + (root_ / "half").string() +
                ": config.json is missing; expected a directory made by race-train");
  std::ofstream(root_ / "half" / "config.json") << "{}";
  EXPECT_EQ(error_of([&] { RunDirectory::open_for_resume(root_ / "half"); }),
            "run directory " + (root_ / "half").string() +
                ": checkpoints/ is missing; expected a directory made by race-train");
  std::ofstream(root_ / "half" / "config.json") << "{\"a\": }";
  const std::string syntax = error_of([&] { RunDirectory::open_for_resume(root_ / "half"); });
  EXPECT_TRUE(contains(syntax, (root_ / "half" / "config.json").string() + ":1:")) << syntax;
  std::ofstream(root_ / "half" / "config.json") << "[1, 2]";
  fs::create_directory(root_ / "half" / "checkpoints");
  EXPECT_EQ(error_of([&] { RunDirectory::open_for_resume(root_ / "half"); }),
            (root_ / "half" / "config.json").string() + ": expected a JSON object, got array");
}

TEST_F(RunDirectoryTest, ResumeReturnsTheStoredConfigAndAppends) {
  {
    RunDirectory run = RunDirectory::create(root_, "r", config());
    run.append_metrics(record(1, "train", 5.5));
    run.append_metrics(record(2, "train", 4.25));
  }
  RunDirectory resumed = RunDirectory::open_for_resume(root_ / "r");
  EXPECT_EQ(resumed.config(), config());
  resumed.truncate_metrics_after(2);
  resumed.append_metrics(record(3, "train", 3.0));
  EXPECT_EQ(read_text(resumed.metrics_path()),
            "{\"loss\":5.5,\"split\":\"train\",\"step\":1}\n"
            "{\"loss\":4.25,\"split\":\"train\",\"step\":2}\n"
            "{\"loss\":3.0,\"split\":\"train\",\"step\":3}\n");
  // A missing metrics.jsonl is recreated by the next append.
  fs::remove(resumed.metrics_path());
  RunDirectory again = RunDirectory::open_for_resume(root_ / "r");
  again.truncate_metrics_after(3);
  again.append_metrics(record(4, "val", 2.0));
  EXPECT_EQ(read_text(again.metrics_path()), "{\"loss\":2.0,\"split\":\"val\",\"step\":4}\n");
}

TEST_F(RunDirectoryTest, TruncationMatchesAnUninterruptedRun) {
  RunDirectory run = RunDirectory::create(root_, "t", config());
  for (std::int64_t step = 1; step <= 6; ++step) {
    run.append_metrics(record(step, "train", 10.0 - static_cast<double>(step)));
    if (step % 2 == 0) run.append_metrics(record(step, "val", 20.0 - static_cast<double>(step)));
  }
  const std::string full = read_text(run.metrics_path());
  {
    // A crash in the middle of writing a line after step 6.
    std::ofstream out(run.metrics_path(), std::ios::app);
    out << "{\"step\":7,\"spl";
  }
  // Resume from the checkpoint of step 4 and redo steps 5 and 6: the file ends as if never interrupted.
  RunDirectory resumed = RunDirectory::open_for_resume(run.path());
  resumed.truncate_metrics_after(4);
  const std::string kept = read_text(resumed.metrics_path());
  EXPECT_TRUE(full.starts_with(kept));
  EXPECT_EQ(std::count(kept.begin(), kept.end(), '\n'), 6);  // train at steps 1-4, val at 2 and 4
  for (std::int64_t step = 5; step <= 6; ++step) {
    resumed.append_metrics(record(step, "train", 10.0 - static_cast<double>(step)));
    if (step % 2 == 0) resumed.append_metrics(record(step, "val", 20.0 - static_cast<double>(step)));
  }
  EXPECT_EQ(read_text(resumed.metrics_path()), full);

  resumed.truncate_metrics_after(-1);
  EXPECT_EQ(read_text(resumed.metrics_path()), "");
  EXPECT_FALSE(fs::exists(fs::path(resumed.metrics_path()).concat(".tmp")));
}

TEST_F(RunDirectoryTest, MalformedMetricsAreErrors) {
  RunDirectory run = RunDirectory::create(root_, "m", config());
  const std::string path = run.metrics_path().string();
  EXPECT_EQ(error_of([&] { run.append_metrics(nlohmann::json::array()); }),
            path + ": metrics record: expected a JSON object, got []");
  EXPECT_EQ(error_of([&] { run.append_metrics({{"loss", 1.0}}); }),
            path + ": metrics record: expected an integer \"step\", got {\"loss\":1.0}");
  EXPECT_EQ(error_of([&] { run.append_metrics({{"step", -2}}); }),
            path + ": metrics record: expected \"step\" >= 0, got -2");
  EXPECT_EQ(error_of([&] { run.truncate_metrics_after(-2); }),
            "truncate_metrics_after: step -2: expected a step >= -1");
  run.append_metrics(record(1, "train", 1.0));
  {
    std::ofstream out(run.metrics_path(), std::ios::app);
    out << "not json\n" << "{\"step\":\"3\"}\n";
  }
  EXPECT_TRUE(contains(error_of([&] { run.truncate_metrics_after(5); }), path + ":2: invalid JSON: "));
  std::ofstream(run.metrics_path()) << "{\"step\":1}\n{\"step\":\"3\"}\n";
  EXPECT_EQ(error_of([&] { run.truncate_metrics_after(5); }),
            path + ":2: expected an integer \"step\", got {\"step\":\"3\"}");
  // A failed truncation leaves the file as it was.
  EXPECT_EQ(read_text(run.metrics_path()), "{\"step\":1}\n{\"step\":\"3\"}\n");
}

}  // namespace
}  // namespace race::train
