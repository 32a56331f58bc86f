// race-train and race-eval as a user runs them: usage errors exit 2 with a message, bad files exit 1
// naming them, and SIGINT during training finishes the step, writes a checkpoint and exits 130.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "core/hdf5_io.h"
#include "train/tokenizer.h"

namespace {

namespace fs = std::filesystem;

struct Outcome {
  int status = -1;
  std::string err;
};

// The app binaries live in $RACE_APPS (set by tests/CMakeLists.txt).
std::string binary(const char* name) {
  const char* apps = std::getenv("RACE_APPS");
  return apps != nullptr ? (fs::path(apps) / name).string() : "";
}

// Runs `command` with stderr captured (stdout dropped).
Outcome run(const std::string& command) {
  const fs::path err = fs::temp_directory_path() / ("race-cli-err-" + std::to_string(::getpid()));
  const int raw = std::system((command + " >/dev/null 2>" + err.string()).c_str());
  Outcome o;
  o.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  std::ifstream in(err);
  o.err.assign(std::istreambuf_iterator<char>(in), {});
  fs::remove(err);
  return o;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    train_ = binary("race-train");
    eval_ = binary("race-eval");
    ASSERT_FALSE(train_.empty()) << "RACE_APPS is set by tests/CMakeLists.txt";
    dir_ = fs::temp_directory_path() / ("race-cli-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string train_, eval_;
  fs::path dir_;
};

TEST_F(Cli, UsageErrorsExit2WithAMessage) {
  const Outcome none = run(train_);
  EXPECT_EQ(none.status, 2) << none.err;
  EXPECT_NE(none.err.find("exactly one of --config FILE or --resume RUN_DIR"), std::string::npos) << none.err;
  const Outcome missing = run(train_ + " --config " + (dir_ / "nope.json").string());
  EXPECT_EQ(missing.status, 2) << missing.err;
  EXPECT_NE(missing.err.find("nope.json"), std::string::npos) << missing.err;
  const Outcome no_checkpoint = run(eval_);
  EXPECT_EQ(no_checkpoint.status, 2) << no_checkpoint.err;
  EXPECT_NE(no_checkpoint.err.find("--checkpoint is required"), std::string::npos) << no_checkpoint.err;
  const Outcome not_a_checkpoint = run(eval_ + " --checkpoint " + dir_.string());
  EXPECT_EQ(not_a_checkpoint.status, 1) << not_a_checkpoint.err;
  EXPECT_NE(not_a_checkpoint.err.find("no complete checkpoint"), std::string::npos) << not_a_checkpoint.err;
  for (const std::string option : {"--context", "--batch-size"}) {
    const Outcome negative = run(eval_ + " --checkpoint " + dir_.string() + " " + option + " -3");
    EXPECT_EQ(negative.status, 2) << negative.err;
    EXPECT_NE(negative.err.find(option), std::string::npos) << negative.err;
  }
  std::ofstream(dir_ / "any.json") << "{}";
  for (const std::string& app : {train_ + " --config " + (dir_ / "any.json").string(),
                                 eval_ + " --checkpoint " + dir_.string(),
                                 eval_ + " generate --checkpoint " + dir_.string()}) {
    const Outcome gpu = run(app + " --device gpu");
    EXPECT_EQ(gpu.status, 2) << gpu.err;
    EXPECT_NE(gpu.err.find("--device"), std::string::npos) << gpu.err;
    const Outcome fp16 = run(app + " --precision fp16");
    EXPECT_EQ(fp16.status, 2) << fp16.err;
    EXPECT_NE(fp16.err.find("--precision"), std::string::npos) << fp16.err;
  }
}

TEST_F(Cli, ConfigErrorsNameTheFileAndKey) {
  std::ofstream(dir_ / "bad.json") << R"({"model": {"layres": 2}})";
  const Outcome o = run(train_ + " --config " + (dir_ / "bad.json").string());
  EXPECT_EQ(o.status, 1) << o.err;
  EXPECT_NE(o.err.find("bad.json"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("did you mean \"layers\""), std::string::npos) << o.err;
}

TEST_F(Cli, SigintFinishesTheStepAndLeavesACheckpointToResume) {
  const auto tokenizer = race::train::byte_level_tokenizer();
  std::string text;
  for (int i = 0; i < 400; ++i) text += "pack my box with five dozen liquor jugs. ";
  {
    auto writer = race::Hdf5Writer::create(dir_ / "corpus.h5");
    const auto ids = tokenizer.encode_bytes(text);
    const std::vector<uint16_t> tokens(ids.begin(), ids.end());
    for (const char* split : {"/train/tokens", "/val/tokens"})
      writer.write(split, {static_cast<int64_t>(tokens.size())}, std::span<const uint16_t>(tokens));
    race::train::write_tokenizer(writer, tokenizer);
    writer.commit();
  }
  std::ofstream(dir_ / "long.json") << R"({"run": {"name": "long", "root": ")" << (dir_ / "runs").string()
                                    << R"("}, "data": {"path": ")" << (dir_ / "corpus.h5").string()
                                    << R"(", "context": 64, "batch_size": 4, "val_windows": 4},
      "model": {"layers": 2, "d_model": 32, "heads": 2, "mlp_hidden": 64},
      "schedule": {"warmup_steps": 1, "total_steps": 1000000},
      "train": {"eval_every": 1000000, "checkpoint_every": 1000000}})";
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::freopen("/dev/null", "w", stderr);
    execl(train_.c_str(), train_.c_str(), "--config", (dir_ / "long.json").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const fs::path metrics = dir_ / "runs" / "long" / "metrics.jsonl";
  // Wait until it has trained a few steps (a metrics line every 10), then interrupt it.
  for (int i = 0; i < 600 && (!fs::exists(metrics) || fs::file_size(metrics) == 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fs::exists(metrics) && fs::file_size(metrics) > 0) << "training did not start";
  kill(child, SIGINT);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  bool checkpoint = false;
  for (const auto& f : fs::directory_iterator(dir_ / "runs" / "long" / "checkpoints"))
    checkpoint |= f.path().extension() == ".h5";
  EXPECT_TRUE(checkpoint) << "SIGINT must leave a checkpoint";
  const Outcome evaluated = run(eval_ + " --checkpoint " + (dir_ / "runs" / "long").string());
  EXPECT_EQ(evaluated.status, 0) << evaluated.err;
}

}  // namespace
