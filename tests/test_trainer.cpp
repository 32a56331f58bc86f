// race-train's loop end to end on a small byte-level corpus written here: the validation loss falls well
// below the uniform baseline, a run stopped and resumed reproduces an uninterrupted run's losses bit for
// bit, and bad configs fail with the key named.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "core/config.h"
#include "core/error.h"
#include "core/hdf5_io.h"
#if RACE_HAVE_CUDA
#include "kernels/cuda/device_info.h"
#endif
#include "train/device.h"
#include "train/evaluation.h"
#include "train/tokenizer.h"
#include "train/trainer.h"

#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using race::test::error_of;
using race::train::run_training;

bool gpu_present() {
#if RACE_HAVE_CUDA
  return !race::kernels::cuda::query_devices().devices.empty();
#else
  return false;
#endif
}

using race::train::TrainOptions;

class Trainer : public race::test::TempDirTest {
 protected:
  Trainer() : TempDirTest("trainer") {}
  void SetUp() override {
    TempDirTest::SetUp();
    write_corpus(dir_ / "corpus.h5");
  }

  // A few sentences repeated: learnable, so the loss must fall far below log(vocab).
  static void write_corpus(const fs::path& path) {
    const auto tokenizer = race::train::byte_level_tokenizer();
    std::string text;
    for (int i = 0; i < 60; ++i)
      text += "the quick brown fox jumps over the lazy dog. a stitch in time saves nine. ";
    auto writer = race::Hdf5Writer::create(path);
    for (const char* split : {"train", "val"}) {
      const auto ids = tokenizer.encode_bytes(text);
      std::vector<uint16_t> tokens(ids.begin(), ids.end());
      writer.write(std::string("/") + split + "/tokens", {static_cast<int64_t>(tokens.size())},
                   std::span<const uint16_t>(tokens));
    }
    race::train::write_tokenizer(writer, tokenizer);
    writer.commit();
  }

  fs::path write_config(const std::string& name, int64_t steps, int64_t checkpoint_every,
                        const std::string& task = "lm") {
    const fs::path path = dir_ / (name + ".json");
    std::ofstream(path) << nlohmann::json{
        {"task", task},
        {"run", {{"name", name}, {"root", (dir_ / "runs").string()}}},
        {"data", {{"path", (dir_ / "corpus.h5").string()}, {"context", 32}, {"batch_size", 4}, {"val_windows", 8}}},
        {"model", {{"layers", 2}, {"d_model", 32}, {"heads", 2}, {"mlp_hidden", 64},
                   {"softmax_layers", {1}}, {"softmax_window", 16}}},
        {"optimizer", {{"weight_decay", 0.01}}},
        {"schedule", {{"lr", 3e-3}, {"min_lr", 3e-4}, {"warmup_steps", std::min<int64_t>(5, steps)}, {"total_steps", steps}}},
        {"train", {{"log_every", 1}, {"eval_every", 1000}, {"checkpoint_every", checkpoint_every}}}}
                            .dump(2);
    return path;
  }
};

TEST_F(Trainer, ValidationLossFallsFarBelowUniform) {
  TrainOptions options;
  options.config_file = write_config("learn", 150, 1000);
  const auto result = run_training(options);
  ASSERT_TRUE(result.final_val_loss.has_value());
  const double uniform = std::log(261.0);  // 256 bytes and 5 special tokens
  EXPECT_LT(*result.final_val_loss, 0.5 * uniform) << "uniform " << uniform;
  EXPECT_LT(result.steps.back().loss, result.steps.front().loss * 0.5);
  EXPECT_TRUE(fs::exists(result.run_dir / "config.json"));
  EXPECT_TRUE(fs::exists(result.run_dir / "metrics.jsonl"));
  EXPECT_FALSE(fs::is_empty(result.run_dir / "checkpoints"));
  // Every train line records the memory the model and optimizer hold, the same at every step: it is all
  // allocated before step 1.
  std::ifstream metrics(result.run_dir / "metrics.jsonl");
  std::vector<int64_t> memory;
  for (std::string line; std::getline(metrics, line);) {
    const auto record = nlohmann::json::parse(line);
    if (record.at("split") == "train") memory.push_back(record.at("memory_bytes").get<int64_t>());
  }
  ASSERT_EQ(memory.size(), 150u);
  EXPECT_GT(memory.front(), 0);
  EXPECT_EQ(std::count(memory.begin(), memory.end(), memory.front()), 150);
}

TEST_F(Trainer, ResumedRunReproducesTheUninterruptedLossesBitForBit) {
  TrainOptions straight;
  straight.config_file = write_config("straight", 8, 4);
  const auto full = run_training(straight);
  ASSERT_EQ(full.steps.size(), 8u);

  TrainOptions first;
  first.config_file = write_config("interrupted", 8, 4);
  int calls = 0;
  const auto part = run_training(first, [&] { return ++calls >= 3; });  // stop after step 3
  ASSERT_TRUE(part.interrupted);
  ASSERT_EQ(part.last_step, 3);
  TrainOptions second;
  second.resume_dir = part.run_dir;
  const auto rest = run_training(second);
  ASSERT_EQ(rest.steps.size(), 5u);
  for (size_t i = 0; i < rest.steps.size(); ++i) {
    EXPECT_EQ(rest.steps[i].step, full.steps[i + 3].step);
    EXPECT_EQ(rest.steps[i].loss, full.steps[i + 3].loss) << "step " << rest.steps[i].step;
    EXPECT_EQ(rest.steps[i].grad_norm, full.steps[i + 3].grad_norm) << "step " << rest.steps[i].step;
  }
  EXPECT_EQ(rest.final_val_loss, full.final_val_loss);
}

TEST_F(Trainer, EvaluatingTheCheckpointGivesTheLoggedValidationLoss) {
  TrainOptions options;
  options.config_file = write_config("evaluated", 12, 6);
  const auto trained = run_training(options);
  ASSERT_TRUE(trained.final_val_loss.has_value());
  race::train::EvalOptions eval;
  eval.checkpoint = trained.run_dir;  // a run directory: its newest checkpoint
  const auto evaluated = race::train::evaluate_checkpoint(eval);
  EXPECT_EQ(evaluated.step, 12);
  EXPECT_EQ(evaluated.result.loss, *trained.final_val_loss);
  EXPECT_NEAR(evaluated.result.perplexity, std::exp(evaluated.result.loss), 1e-9);
  // Byte-level: one token is one byte, so bits per byte is the loss in bits.
  EXPECT_NEAR(evaluated.result.bits_per_byte, evaluated.result.loss / std::log(2.0), 1e-9);
  eval.split = "test";
  EXPECT_THROW(race::train::evaluate_checkpoint(eval), race::Error);
  // A context far past the machine's memory is refused by the plan, before anything is allocated.
  eval.split = "val";
  eval.batch_size = 1 << 20;
  const std::string error = error_of([&] { race::train::evaluate_checkpoint(eval); });
  EXPECT_NE(error.find("race-eval: --context 32 x --batch-size 1048576 needs"), std::string::npos) << error;
}

TEST_F(Trainer, GenerationIsSeededAndLearnsTheCorpus) {
  TrainOptions options;
  options.config_file = write_config("generating", 150, 1000);
  const auto trained = run_training(options);
  race::train::GenerateOptions gen;
  gen.checkpoint = trained.run_dir;
  gen.prompt = "the quick brown fox ";
  gen.max_new_tokens = 20;
  gen.temperature = 0.0;  // greedy: the corpus continues "jumps over the lazy dog"
  const auto greedy = race::train::generate(gen);
  EXPECT_EQ(greedy.tokens.size(), 20u);
  EXPECT_NE(greedy.text.find("jumps"), std::string::npos) << greedy.text;
  gen.temperature = 1.0;
  gen.top_k = 5;
  gen.seed = 7;
  const auto a = race::train::generate(gen);
  const auto b = race::train::generate(gen);
  EXPECT_EQ(a.text, b.text);
  gen.max_new_tokens = 0;
  EXPECT_THROW(race::train::generate(gen), race::Error);
}

TEST_F(Trainer, MaskedLanguageModelLearnsAndResumesExactly) {
  TrainOptions options;
  options.config_file = write_config("bert", 150, 1000, "mlm");
  const auto trained = run_training(options);
  ASSERT_TRUE(trained.final_val_loss.has_value());
  EXPECT_LT(*trained.final_val_loss, 0.6 * std::log(261.0));
  race::train::EvalOptions eval;
  eval.checkpoint = trained.run_dir;
  EXPECT_EQ(race::train::evaluate_checkpoint(eval).result.loss, *trained.final_val_loss);
  race::train::GenerateOptions gen;
  gen.checkpoint = trained.run_dir;
  EXPECT_THROW(race::train::generate(gen), race::Error);  // an encoder does not generate

  // With dropout too: the masks must also come back identically after the resume.
  TrainOptions straight;
  straight.config_file = write_config("bert-straight", 6, 3, "mlm");
  straight.overrides = {"model.dropout=0.1"};
  const auto full = run_training(straight);
  TrainOptions first;
  first.config_file = write_config("bert-interrupted", 6, 3, "mlm");
  first.overrides = {"model.dropout=0.1"};
  int calls = 0;
  const auto part = run_training(first, [&] { return ++calls >= 2; });
  TrainOptions second;
  second.resume_dir = part.run_dir;
  const auto rest = run_training(second);
  ASSERT_EQ(rest.steps.size(), 4u);
  for (size_t i = 0; i < rest.steps.size(); ++i) EXPECT_EQ(rest.steps[i].loss, full.steps[i + 2].loss);
}

// Rows of random letters padded to T; the label is whether the row contains 'x' (needs every position and
// the padding mask: pad ids would otherwise leak into the mean).
void write_classification(const fs::path& path, int64_t rows, uint64_t seed) {
  const auto tokenizer = race::train::byte_level_tokenizer();
  constexpr int64_t T = 24;
  std::mt19937_64 rng(seed);
  auto writer = race::Hdf5Writer::create(path);
  for (const char* split : {"train", "val"}) {
    std::vector<int32_t> inputs(static_cast<size_t>(rows * T), tokenizer.pad_id), lengths, labels;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t length = 8 + static_cast<int64_t>(rng() % (T - 8 + 1));
      bool has_x = false;
      for (int64_t t = 0; t < length; ++t) {
        const int32_t letter = 'a' + static_cast<int32_t>(rng() % 24);  // 'a'..'x'
        inputs[static_cast<size_t>(r * T + t)] = letter;
        has_x |= letter == 'x';
      }
      lengths.push_back(static_cast<int32_t>(length));
      labels.push_back(has_x ? 1 : 0);
    }
    const std::string s(split);
    writer.write("/" + s + "/inputs", {rows, T}, std::span<const int32_t>(inputs));
    writer.write("/" + s + "/lengths", {rows}, std::span<const int32_t>(lengths));
    writer.write("/" + s + "/labels", {rows}, std::span<const int32_t>(labels));
  }
  writer.write_int64_attribute("/", "num_classes", 2);
  race::train::write_tokenizer(writer, tokenizer);
  writer.commit();
}

TEST_F(Trainer, ClassifierLearnsARuleThatNeedsTheWholeRow) {
  write_classification(dir_ / "classes.h5", 512, 3);
  const fs::path config = dir_ / "classify.json";
  std::ofstream(config) << nlohmann::json{
      {"task", "classify"},
      {"run", {{"name", "classify"}, {"root", (dir_ / "runs").string()}}},
      {"data", {{"path", (dir_ / "classes.h5").string()}, {"context", 24}, {"batch_size", 16}, {"val_windows", 128}}},
      {"model", {{"layers", 2}, {"d_model", 32}, {"heads", 2}, {"mlp_hidden", 64}}},
      {"schedule", {{"lr", 3e-3}, {"min_lr", 3e-4}, {"warmup_steps", 10}, {"total_steps", 250}}},
      {"train", {{"log_every", 50}, {"eval_every", 1000}, {"checkpoint_every", 1000}}}}
                             .dump();
  TrainOptions options;
  options.config_file = config;
  const auto trained = run_training(options);
  race::train::EvalOptions eval;
  eval.checkpoint = trained.run_dir;
  const auto evaluated = race::train::evaluate_checkpoint(eval);
  EXPECT_EQ(evaluated.task, "classify");
  EXPECT_GT(evaluated.result.accuracy, 0.9) << "loss " << evaluated.result.loss;
  EXPECT_EQ(evaluated.result.loss, *trained.final_val_loss);

  options.overrides = {"data.context=32"};
  options.overrides.push_back("run.name=classify-bad");
  EXPECT_THROW(run_training(options), race::Error);  // data.context must match the rows' length
  options.overrides = {"data.packed=true", "run.name=classify-packed"};
  EXPECT_THROW(run_training(options), race::Error);  // packing means nothing for classification rows
}

// Documents "#" + pairs: a random letter from a..p, then its upper case; the loss mask marks the upper-case
// answers. Unmarked letters are random (about ln 16 nats each), answers are certain given the previous token.
void write_answer_pairs(const fs::path& path, int64_t pairs_per_document, int64_t documents) {
  const auto tokenizer = race::train::byte_level_tokenizer();
  std::mt19937 rng(11);
  auto writer = race::Hdf5Writer::create(path);
  for (const std::string s : {"train", "val"}) {
    std::vector<uint8_t> tokens, mask;
    std::vector<uint64_t> starts;
    for (int64_t d = 0; d < documents; ++d) {
      starts.push_back(tokens.size());
      tokens.push_back('#');
      mask.push_back(0);
      for (int64_t p = 0; p < pairs_per_document; ++p) {
        const auto letter = static_cast<uint8_t>('a' + rng() % 16);
        tokens.insert(tokens.end(), {letter, static_cast<uint8_t>(letter - 'a' + 'A')});
        mask.insert(mask.end(), {0, 1});
      }
    }
    const int64_t n = static_cast<int64_t>(tokens.size());
    writer.write("/" + s + "/tokens", {n}, std::span<const uint8_t>(tokens));
    writer.write("/" + s + "/loss_mask", {n}, std::span<const uint8_t>(mask));
    writer.write("/" + s + "/doc_offsets", {documents}, std::span<const uint64_t>(starts));
  }
  race::train::write_tokenizer(writer, tokenizer);
  writer.commit();
}

TEST_F(Trainer, LossMaskScoresOnlyTheAnswersAndEvaluationReportsTheirAccuracy) {
  write_answer_pairs(dir_ / "pairs.h5", 16, 64);       // context 32
  write_answer_pairs(dir_ / "pairs_long.h5", 32, 16);  // context 64
  const fs::path config = dir_ / "pairs.json";
  std::ofstream(config) << nlohmann::json{
      {"task", "lm"},
      {"run", {{"name", "pairs"}, {"root", (dir_ / "runs").string()}}},
      {"data", {{"path", (dir_ / "pairs.h5").string()}, {"context", 32}, {"batch_size", 8}, {"val_windows", 32},
                {"cross_documents", false}}},
      {"model", {{"layers", 2}, {"d_model", 32}, {"heads", 2}, {"mlp_hidden", 64}}},
      {"schedule", {{"lr", 3e-3}, {"min_lr", 3e-4}, {"warmup_steps", 10}, {"total_steps", 120}}},
      {"train", {{"log_every", 40}, {"eval_every", 1000}, {"checkpoint_every", 1000}}}}
                             .dump();
  TrainOptions options;
  options.config_file = config;
  const auto trained = run_training(options);
  ASSERT_TRUE(trained.final_val_loss.has_value());
  // Scoring every token would leave about ln(16) / 2 = 1.39 nats per token; only answers are scored.
  EXPECT_LT(*trained.final_val_loss, 0.3);

  race::train::EvalOptions eval;
  eval.checkpoint = trained.run_dir;
  const auto evaluated = race::train::evaluate_checkpoint(eval);
  EXPECT_TRUE(evaluated.scores_answers);
  EXPECT_EQ(evaluated.result.tokens, 32 * 16);  // 32 windows of 16 answers
  EXPECT_NEAR(evaluated.result.loss, *trained.final_val_loss, 1e-12);
  EXPECT_GT(evaluated.result.accuracy, 0.99);
  EXPECT_GT(evaluated.result.exact_match, 0.9);
  EXPECT_LE(evaluated.result.exact_match, evaluated.result.accuracy);

  // Longer windows than trained (RoPE): the rule is local, so it still holds.
  eval.data = dir_ / "pairs_long.h5";
  eval.context = 64;
  eval.batch_size = 4;
  eval.windows = 16;
  const auto longer = race::train::evaluate_checkpoint(eval);
  EXPECT_EQ(longer.context, 64);
  EXPECT_EQ(longer.result.tokens, 16 * 32);
  EXPECT_GT(longer.result.accuracy, 0.95);

  eval.context = -1;
  EXPECT_THROW(race::train::evaluate_checkpoint(eval), race::Error);

  options.overrides = {"model.positions=learned", "run.name=pairs-learned", "schedule.total_steps=2", "schedule.warmup_steps=1"};
  const auto learned = run_training(options);
  eval.checkpoint = learned.run_dir;
  eval.context = 64;
  std::string message;
  try {
    race::train::evaluate_checkpoint(eval);
  } catch (const race::Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("--context 64 is longer than the 32 rows of the model's learned position table"),
            std::string::npos)
      << message;

  options.overrides = {"task=mlm", "run.name=pairs-mlm"};
  try {
    run_training(options);
    ADD_FAILURE() << "an MLM run accepted a loss mask";
  } catch (const race::Error& e) {
    EXPECT_NE(std::string(e.what()).find("it applies to task \"lm\""), std::string::npos) << e.what();
  }
}

TEST_F(Trainer, TokensPerStepAccumulatesMicroBatches) {
  // 2 micro-batches of 4 x 32 per step: the same as grad_accum 2, bit for bit.
  TrainOptions by_tokens;
  by_tokens.config_file = write_config("by-tokens", 3, 1000);
  by_tokens.overrides = {"train.tokens_per_step=256"};
  TrainOptions by_count;
  by_count.config_file = write_config("by-count", 3, 1000);
  by_count.overrides = {"train.grad_accum=2"};
  const auto a = run_training(by_tokens);
  const auto b = run_training(by_count);
  ASSERT_EQ(a.steps.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(a.steps[i].loss, b.steps[i].loss);
}

TEST_F(Trainer, ANonFiniteLossStopsTheRunAndNoCheckpointHoldsIt) {
  // A learning rate of 1e30 throws the weights to infinity after the first update.
  TrainOptions options;
  options.config_file = write_config("diverging", 5, 1);
  options.overrides = {"schedule.lr=1e30", "schedule.min_lr=1e29", "optimizer.grad_clip=0"};
  try {
    run_training(options);
    FAIL() << "expected an error";
  } catch (const race::Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 2: the loss"), std::string::npos) << e.what();
  }
  const fs::path checkpoints = dir_ / "runs" / "diverging" / "checkpoints";
  for (const auto& f : fs::directory_iterator(checkpoints))
    EXPECT_EQ(f.path().filename(), "step-00000001.h5") << "only the finite first step may be saved";
  // With train.on_nan = "skip" the non-finite steps are skipped (the weights stay as step 1 left them)
  // and the run goes on to the end.
  options.config_file = write_config("diverging-skip", 3, 1);
  options.overrides.push_back("train.on_nan=skip");
  const auto skipped = run_training(options);
  EXPECT_EQ(skipped.last_step, 3);
  ASSERT_EQ(skipped.steps.size(), 1u);
  EXPECT_EQ(skipped.steps[0].step, 1);
}

TEST_F(Trainer, ConfigMistakesNameTheKey) {
  TrainOptions options;
  options.config_file = write_config("typo", 2, 1);
  options.overrides = {"model.hedas=4"};
  try {
    run_training(options);
    FAIL() << "expected an error";
  } catch (const race::Error& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean \"heads\""), std::string::npos) << e.what();
  }
  options.overrides = {"data.path=" + (dir_ / "missing.h5").string()};
  EXPECT_THROW(run_training(options), race::Error);
  options.overrides = {"train.tokens_per_step=100"};  // not a multiple of 4 x 32
  try {
    run_training(options);
    FAIL() << "expected an error";
  } catch (const race::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.tokens_per_step"), std::string::npos) << e.what();
  }
  options.overrides = {"model.softmax_layers=[5]"};
  try {
    run_training(options);
    FAIL() << "expected an error";
  } catch (const race::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.softmax_layers[0]"), std::string::npos) << "got: " << e.what();
  }
  EXPECT_FALSE(fs::exists(dir_ / "runs" / "typo")) << "a failed start must not leave a run directory";
}

// run.device and --device: an unknown name, and CUDA where it cannot run (a build without the backend, or a
// machine without a GPU), fail before a run directory exists, naming where the choice came from and why.
TEST_F(Trainer, DeviceChoiceErrorsNameTheSourceAndTheReason) {
  TrainOptions options;
  options.config_file = write_config("device", 2, 1);
  options.overrides = {"run.device=gpu"};
  const std::string unknown = error_of([&] { run_training(options); });
  EXPECT_NE(unknown.find("run.device"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("cuda"), std::string::npos) << unknown;
  EXPECT_THROW(race::train::open_device("tpu", "--device"), race::Error);

  // bf16 products need CUDA: asked for on the CPU, from the config or the flag, it is an error naming both.
  options.overrides = {"run.precision=bf16"};
  const std::string bf16_on_cpu = error_of([&] { run_training(options); });
  EXPECT_NE(bf16_on_cpu.find("run.precision = \"bf16\" needs the CUDA device"), std::string::npos) << bf16_on_cpu;
  EXPECT_NE(bf16_on_cpu.find("run.device = \"cuda\""), std::string::npos) << bf16_on_cpu;
  options.overrides = {"run.precision=fp16"};
  const std::string unknown_precision = error_of([&] { run_training(options); });
  EXPECT_NE(unknown_precision.find("run.precision"), std::string::npos) << unknown_precision;
  EXPECT_NE(unknown_precision.find("bf16"), std::string::npos) << unknown_precision;
  options.overrides = {};
  options.precision = "bf16";
  EXPECT_NE(error_of([&] { run_training(options); }).find("--precision = \"bf16\" needs the CUDA device"),
            std::string::npos);
  options.precision.reset();
  EXPECT_NE(error_of([&] { race::train::open_device("cpu", "--device", 0, "fp8"); })
                .find("--precision = \"fp8\": expected \"auto\", \"fp32\" or \"bf16\""),
            std::string::npos);
  EXPECT_FALSE(fs::exists(dir_ / "runs" / "device")) << "a failed start must not leave a run directory";
  if (gpu_present()) GTEST_SKIP() << "a GPU is present: run.device = \"cuda\" is valid here";
  const std::string why = race::train::cuda_backend_built() ? "no usable CUDA device" : "no CUDA backend";
  options.overrides = {"run.device=cuda"};
  const std::string from_config = error_of([&] { run_training(options); });
  EXPECT_NE(from_config.find("run.device = \"cuda\""), std::string::npos) << from_config;
  EXPECT_NE(from_config.find(why), std::string::npos) << from_config;
  options.overrides = {};
  options.device = "cuda";
  const std::string from_flag = error_of([&] { run_training(options); });
  EXPECT_NE(from_flag.find("--device = \"cuda\""), std::string::npos) << from_flag;
  EXPECT_FALSE(fs::exists(dir_ / "runs" / "device")) << "a failed start must not leave a run directory";

  // A CPU checkpoint evaluated or sampled on CUDA meets the same error.
  options.device.reset();
  const auto trained = run_training(options);
  race::train::EvalOptions eval;
  eval.checkpoint = trained.run_dir;
  eval.device = "cuda";
  EXPECT_NE(error_of([&] { race::train::evaluate_checkpoint(eval); }).find(why), std::string::npos);
  race::train::GenerateOptions generate;
  generate.checkpoint = trained.run_dir;
  generate.device = "cuda";
  EXPECT_NE(error_of([&] { race::train::generate(generate); }).find(why), std::string::npos);
}

// A model that cannot fit is refused by the memory plan, with the numbers, before anything is allocated (the
// model below would need about 1.6 TB) and before a run directory exists.
TEST_F(Trainer, MemoryPlanRefusesAModelThatCannotFitBeforeAllocating) {
  TrainOptions options;
  options.config_file = write_config("huge", 2, 1);
  options.overrides = {"model.d_model=65536", "model.heads=2", "model.mlp_hidden=262144"};
  const std::string error = error_of([&] { run_training(options); });
  EXPECT_NE(error.find("memory plan needs"), std::string::npos) << error;
  EXPECT_NE(error.find("data.context 32 x data.batch_size 4"), std::string::npos) << error;
  EXPECT_FALSE(fs::exists(dir_ / "runs" / "huge"));
}

// CPU against CUDA from the same initialisation (GPU only): ten steps of the hybrid GPT (RACE and a
// sliding-window softmax layer) and of the BERT encoder, with fp32 and with bf16 products, give losses
// within 2% at every step; a CPU
// checkpoint resumed on CUDA continues like the CPU run, and the CUDA checkpoint evaluates on the CPU to the
// validation loss the CUDA run logged.
TEST_F(Trainer, CudaTrainingFollowsTheCpuRun) {
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device";
  for (const std::string task : {"lm", "mlm"}) {
    TrainOptions cpu_options;
    cpu_options.config_file = write_config(task + "-cpu", 10, 1000, task);
    const auto cpu = run_training(cpu_options);
    ASSERT_EQ(cpu.steps.size(), 10u);
    ASSERT_TRUE(cpu.final_val_loss.has_value());
    for (const std::string precision : {"fp32", "bf16"}) {
      TrainOptions options;
      options.config_file = write_config(task + "-cuda-" + precision, 10, 1000, task);
      options.overrides = {"run.device=cuda", "run.precision=" + precision};
      const auto cuda = run_training(options);
      ASSERT_EQ(cuda.steps.size(), 10u);
      for (size_t i = 0; i < 10; ++i)
        EXPECT_NEAR(cuda.steps[i].loss, cpu.steps[i].loss, 0.02 * cpu.steps[i].loss)
            << task << " " << precision << " step " << i + 1;
      ASSERT_TRUE(cuda.final_val_loss.has_value());
      EXPECT_NEAR(*cuda.final_val_loss, *cpu.final_val_loss, 0.02 * *cpu.final_val_loss) << task << " " << precision;
    }
  }

  TrainOptions cpu_half;
  cpu_half.config_file = write_config("moved", 10, 5);
  cpu_half.overrides = {"train.eval_every=5"};
  TrainOptions whole = cpu_half;
  whole.config_file = write_config("unmoved", 10, 5);
  const auto reference = run_training(whole);
  int calls = 0;
  const auto first = run_training(cpu_half, [&] { return ++calls >= 5; });  // stops after step 5
  ASSERT_TRUE(first.interrupted);
  ASSERT_EQ(first.last_step, 5);
  TrainOptions resumed;
  resumed.resume_dir = first.run_dir;
  resumed.device = "cuda";
  resumed.precision = "fp32";  // so that the CPU evaluation below can match the logged loss to 1e-4
  const auto moved = run_training(resumed);
  ASSERT_EQ(moved.last_step, 10);
  ASSERT_EQ(moved.steps.size(), 5u);
  for (const auto& step : moved.steps)
    EXPECT_NEAR(step.loss, reference.steps[static_cast<size_t>(step.step - 1)].loss,
                0.02 * reference.steps[static_cast<size_t>(step.step - 1)].loss)
        << "step " << step.step;
  race::train::EvalOptions eval;
  eval.checkpoint = moved.run_dir;  // written by the CUDA run
  ASSERT_TRUE(moved.final_val_loss.has_value());
  EXPECT_NEAR(race::train::evaluate_checkpoint(eval).result.loss, *moved.final_val_loss,
              1e-4 * *moved.final_val_loss);
}

// Every shipped config resolves against the schema (a typo in configs/ fails here, not after a download).
TEST(Configs, EveryShippedConfigResolves) {
  const fs::path configs = fs::path(RACE_SOURCE_DIR) / "configs";
  int seen = 0;
  for (const auto& entry : fs::directory_iterator(configs)) {
    if (entry.path().extension() != ".json") continue;
    ++seen;
    EXPECT_NO_THROW(race::load_config(race::train::train_schema(), entry.path())) << entry.path();
  }
  EXPECT_GE(seen, 3);
}

}  // namespace
