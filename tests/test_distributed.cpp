// Data-parallel race-train under `mpirun -np 2`, against the same config on one process: the same losses
// (within fp32 reduction-order tolerance) and the same parameters after k steps. A 2-rank checkpoint resumed
// on 1 rank (and a 1-rank one on 2) continues the run, and on 2 ranks continues it bit for bit. Ranks that
// start from different parameters, a batch that does not split over the ranks, a stalled rank and a dead
// rank all end the job with a clear error instead of a hang. Every command runs under `timeout`, so a hang
// fails the test instead of blocking CI.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/hdf5_io.h"
#include "train/checkpoint.h"
#include "train/tokenizer.h"

#include "test_support.h"

namespace {

namespace fs = std::filesystem;

struct Outcome {
  int status = -1;
  std::string err;
  double seconds = 0.0;
};

// Runs `command` (one OpenMP thread per process) under a 60 s timeout, stderr captured, stdout dropped.
Outcome run(const std::string& command) {
  const fs::path err = fs::temp_directory_path() / ("race-distributed-err-" + std::to_string(::getpid()));
  const auto start = std::chrono::steady_clock::now();
  const int raw =
      std::system(("OMP_NUM_THREADS=1 timeout 60 " + command + " >/dev/null 2>" + err.string()).c_str());
  Outcome o;
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  o.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  std::ifstream in(err);
  o.err.assign(std::istreambuf_iterator<char>(in), {});
  fs::remove(err);
  return o;
}

// mpirun with N ranks; as root (CI) OpenMPI wants --allow-run-as-root, and 2 ranks may exceed the cores.
std::string mpirun(int ranks) {
  return std::string(RACE_MPIEXEC) + (::geteuid() == 0 ? " --allow-run-as-root" : "") +
         " --oversubscribe -np " + std::to_string(ranks) + " ";
}

std::string race_train() {
  const char* apps = std::getenv("RACE_APPS");
  return apps != nullptr ? (fs::path(apps) / "race-train").string() : "race-train";
}

// step -> loss of the lines of `split` in a run's metrics.jsonl.
std::map<int64_t, double> losses(const fs::path& run_dir, const std::string& split) {
  std::map<int64_t, double> out;
  std::ifstream in(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto record = nlohmann::json::parse(line);
    if (record.at("split") == split) out[record.at("step").get<int64_t>()] = record.at("loss").get<double>();
  }
  return out;
}

// Largest |a - b| over the parameters of two checkpoints of the same model.
double max_param_difference(const fs::path& a, const fs::path& b) {
  const race::train::Checkpoint x = race::train::read_checkpoint(a), y = race::train::read_checkpoint(b);
  EXPECT_EQ(x.step, y.step);
  EXPECT_EQ(x.trainer_state, y.trainer_state) << "the data-loader position must not depend on the ranks";
  double worst = 0.0;
  for (const auto& p : x.params)
    for (const auto& q : y.params)
      if (p.name == q.name)
        for (size_t i = 0; i < p.values.size(); ++i)
          worst = std::max(worst, static_cast<double>(std::fabs(p.values[i] - q.values[i])));
  return worst;
}

class Distributed : public race::test::TempDirTest {
 protected:
  Distributed() : TempDirTest("distributed") {}
  void SetUp() override {
    TempDirTest::SetUp();
    write_corpus(dir_ / "corpus.h5");
  }

  // Sentences, a quarter of them followed by a run of 0 to 15 end-of-text tokens: rows hold very different
  // numbers of maskable (non-special) tokens, so under MLM the two ranks' shards score different numbers of
  // targets (15% of each row's maskable tokens).
  static void write_corpus(const fs::path& path) {
    const auto tokenizer = race::train::byte_level_tokenizer();
    std::mt19937_64 rng(11);
    std::vector<uint16_t> tokens;
    for (int i = 0; i < 400; ++i) {
      for (const int32_t id :
           tokenizer.encode_bytes(i % 2 ? "the quick brown fox jumps. " : "a stitch in time. "))
        tokens.push_back(static_cast<uint16_t>(id));
      if (rng() % 4 == 0) tokens.insert(tokens.end(), rng() % 16, static_cast<uint16_t>(tokenizer.eos_id));
    }
    auto writer = race::Hdf5Writer::create(path);
    for (const char* split : {"train", "val"})
      writer.write(std::string("/") + split + "/tokens", {static_cast<int64_t>(tokens.size())},
                   std::span<const uint16_t>(tokens));
    race::train::write_tokenizer(writer, tokenizer);
    writer.commit();
  }

  fs::path write_config(const std::string& task) {
    const fs::path path = dir_ / (task + ".json");
    std::ofstream(path) << nlohmann::json{
        {"task", task},
        {"run", {{"name", "unnamed"}, {"root", (dir_ / "runs").string()}}},
        {"data",
         {{"path", (dir_ / "corpus.h5").string()}, {"context", 32}, {"batch_size", 4}, {"val_windows", 12}}},
        {"model",
         {{"layers", 2},
          {"d_model", 32},
          {"heads", 2},
          {"mlp_hidden", 64},
          {"softmax_layers", {1}},
          {"softmax_window", 16}}},
        {"schedule", {{"lr", 3e-3}, {"min_lr", 3e-4}, {"warmup_steps", 2}, {"total_steps", 6}}},
        // Buckets of 1000 floats: several all-reduces per step, started during the backward.
        {"train",
         {{"grad_accum", 2},
          {"log_every", 1},
          {"eval_every", 3},
          {"checkpoint_every", 3},
          {"allreduce_bucket_mb",
           0.004}}}}.dump(2);
    return path;
  }

  // Trains `config` as run `name` on `ranks` processes (1: no mpirun at all).
  fs::path train(const fs::path& config, const std::string& name, int ranks) {
    const std::string launcher = ranks > 1 ? mpirun(ranks) : "";
    const Outcome o =
        run(launcher + race_train() + " --config " + config.string() + " --set run.name=" + name);
    EXPECT_EQ(o.status, 0) << o.err;
    return dir_ / "runs" / name;
  }

  // Copies a finished run, drops its checkpoints after `step` (as if it had been stopped there) and resumes
  // the copy on `ranks` processes.
  fs::path resume_copy(const fs::path& run_dir, const std::string& name, int64_t step, int ranks) {
    const fs::path copy = dir_ / "runs" / name;
    fs::copy(run_dir, copy, fs::copy_options::recursive);
    for (const auto& f : fs::directory_iterator(copy / "checkpoints"))
      if (f.path().filename().string() > race::train::checkpoint_file_name(step)) fs::remove(f.path());
    const Outcome o = run((ranks > 1 ? mpirun(ranks) : "") + race_train() + " --resume " + copy.string());
    EXPECT_EQ(o.status, 0) << o.err;
    return copy;
  }

  static void expect_same_losses(const std::map<int64_t, double>& a, const std::map<int64_t, double>& b,
                                 const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (const auto& [step, loss] : a) {
      ASSERT_TRUE(b.contains(step)) << what << ": step " << step;
      EXPECT_NEAR(loss, b.at(step), 1e-6 * std::fabs(loss)) << what << ": step " << step;
    }
  }
};

// Global batch 4 x grad_accum 2: two ranks of 2 rows each against one process of 4. MLM on this corpus
// gives the shards different target counts, which only a sum of loss sums and counts averages correctly.
TEST_F(Distributed, TwoRanksTrainLikeOneProcessWithTheSameGlobalBatch) {
  for (const std::string task : {"mlm", "lm"}) {
    const fs::path config = write_config(task);
    const fs::path one = train(config, task + "-one", 1);
    const fs::path two = train(config, task + "-two", 2);
    expect_same_losses(losses(one, "train"), losses(two, "train"), task + " train");
    expect_same_losses(losses(one, "val"), losses(two, "val"), task + " val");
    EXPECT_EQ(losses(two, "train").size(), 6u);
    // AdamW turns a gradient element that is pure rounding noise into a step of up to lr (3e-3) either way,
    // so parameters get a looser bound than losses; summing per-rank means instead misses by 1e-3.
    for (const std::string file : {"step-00000003.h5", "step-00000006.h5"})
      EXPECT_LT(max_param_difference(one / "checkpoints" / file, two / "checkpoints" / file), 1e-4)
          << task << " " << file;
  }
}

TEST_F(Distributed, CheckpointsResumeOnAnotherNumberOfRanks) {
  const fs::path config = write_config("lm");
  const fs::path two = train(config, "two", 2);
  const fs::path one = train(config, "one", 1);
  // Stopped after step 3 on two ranks, continued on one; and the other way round.
  const fs::path two_then_one = resume_copy(two, "two-then-one", 3, 1);
  const fs::path one_then_two = resume_copy(one, "one-then-two", 3, 2);
  expect_same_losses(losses(two, "train"), losses(two_then_one, "train"), "2 ranks, resumed on 1");
  expect_same_losses(losses(one, "train"), losses(one_then_two, "train"), "1 rank, resumed on 2");
  expect_same_losses(losses(two, "val"), losses(two_then_one, "val"), "2 ranks, resumed on 1: val");
  // On the same number of ranks a resumed run is bit for bit the uninterrupted one.
  const fs::path two_then_two = resume_copy(two, "two-then-two", 3, 2);
  EXPECT_EQ(losses(two, "train"), losses(two_then_two, "train"));
  EXPECT_EQ(losses(two, "val"), losses(two_then_two, "val"));
  const fs::path last = "checkpoints/step-00000006.h5";
  EXPECT_LT(max_param_difference(two / last, two_then_one / last), 1e-4);
  EXPECT_LT(max_param_difference(one / last, one_then_two / last), 1e-4);
}

TEST_F(Distributed, ABatchThatDoesNotSplitOverTheRanksIsAnError) {
  const Outcome o = run(mpirun(2) + race_train() + " --config " + write_config("lm").string() +
                        " --set run.name=odd --set data.batch_size=3");
  EXPECT_NE(o.status, 0);
  EXPECT_NE(o.err.find("data.batch_size: 3 rows cannot be split evenly over 2 ranks"), std::string::npos)
      << o.err;
  EXPECT_FALSE(fs::exists(dir_ / "runs" / "odd"));
}

// Two ranks started with different model seeds (mpirun's MPMD form gives each its own --set): the parameter
// checksums differ, and every rank stops before training.
TEST_F(Distributed, RanksWithDifferentInitialParametersStopWithAnError) {
  const std::string command =
      race_train() + " --config " + write_config("lm").string() + " --set run.name=seeds";
  const Outcome o =
      run(mpirun(1) + command + " --set model.seed=1 : -np 1 " + command + " --set model.seed=2");
  EXPECT_NE(o.status, 0);
  EXPECT_NE(o.err.find("the ranks disagree on the initial parameters"), std::string::npos) << o.err;
  EXPECT_FALSE(fs::exists(dir_ / "runs" / "seeds")) << "the run must stop before its directory is created";
}

// Rank 1 sleeps 20 s instead of joining a sum; rank 0's 1 s timeout ends the job with a message long before.
TEST_F(Distributed, AStalledRankEndsTheJobWithTheTimeoutMessage) {
  const Outcome o = run(mpirun(2) + RACE_STALLED_RANK + " stall");
  EXPECT_NE(o.status, 0);
  EXPECT_NE(o.err.find("rank 0 of 2: a sum of 1 values did not complete within 1 s"), std::string::npos)
      << o.err;
  EXPECT_LT(o.seconds, 15.0);
}

// race-train's own timeout comes from train.collective_timeout_s: beside a rank that never joins (the helper,
// as rank 1 of an MPMD job), race-train stops in its first collective, the start-up comparison.
TEST_F(Distributed, TrainingStopsAfterTheConfiguredCollectiveTimeout) {
  const Outcome o =
      run(mpirun(1) + race_train() + " --config " + write_config("lm").string() +
          " --set run.name=alone --set train.collective_timeout_s=1 : -np 1 " + RACE_STALLED_RANK + " stall");
  EXPECT_NE(o.status, 0);
  EXPECT_TRUE(o.err.find("rank 0 of 2: the comparison of the initial parameters (model.seed and the model "
                         "config) did not complete within 1 s (train.collective_timeout_s)") !=
              std::string::npos)
      << o.err;
  EXPECT_LT(o.seconds, 15.0);
  EXPECT_FALSE(fs::exists(dir_ / "runs" / "alone"));
}

// Rank 1 exits without finalising MPI: the job ends (the launcher's or our timeout's doing), never hangs.
TEST_F(Distributed, ARankThatDiesEndsTheJob) {
  const Outcome o = run(mpirun(2) + RACE_STALLED_RANK + " exit");
  EXPECT_NE(o.status, 0);
  EXPECT_NE(o.status, 124) << "the job hung until the test's 60 s timeout";
  EXPECT_LT(o.seconds, 30.0) << o.err;
}

}  // namespace
