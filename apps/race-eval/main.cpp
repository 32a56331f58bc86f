// race-eval: the loss, perplexity and bits per byte of a checkpoint on a dataset split, or
// `race-eval generate`: text sampled from it. Thin: options and output here, the work in
// lib/train/evaluation.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/logging.h"
#include "core/main_guard.h"
#include "train/evaluation.h"

namespace {

void write_json(const std::string& path, const nlohmann::json& json) {
  if (path == "-") {
    fmt::print("{}\n", json.dump(2));
    return;
  }
  std::ofstream out(path);
  if (!(out << json.dump(2) << "\n")) race::fail("--json {}: cannot write the file", path);
}

int run(int argc, char** argv) {
  CLI::App app{"race-eval: evaluate a race checkpoint, or generate text from it"};
  app.require_subcommand(0, 1);
  race::train::EvalOptions eval;
  std::string checkpoint, data, json_path;
  app.add_option("--checkpoint", checkpoint, "Checkpoint file, or a run directory (its newest checkpoint)")
      ->check(CLI::ExistingPath);
  app.add_option("--data", data, "HDF5 dataset (default: the one in the checkpoint's config)")
      ->check(CLI::ExistingFile);
  app.add_option("--split", eval.split, "Split of the dataset")->capture_default_str();
  app.add_option("--windows", eval.windows, "Windows evaluated, in file order (0: the config's val_windows)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--context", eval.context,
                 "Tokens per window (0: the checkpoint's); longer than trained needs rope or no positions")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--batch-size", eval.batch_size, "Windows per forward pass (0: the checkpoint's)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--device", eval.device, "cpu or cuda: where the model computes")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--precision", eval.precision, "auto (cuda bf16, cpu fp32), fp32, or bf16 (cuda only)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}))
      ->capture_default_str();
  app.add_option("--json", json_path, "Also write the results as JSON to FILE (\"-\": only JSON, on stdout)");

  race::train::GenerateOptions gen;
  std::string gen_checkpoint;
  auto* generate = app.add_subcommand("generate", "Sample text from a checkpoint");
  generate->add_option("--checkpoint", gen_checkpoint, "Checkpoint file, or a run directory")
      ->required()
      ->check(CLI::ExistingPath);
  generate->add_option("--prompt", gen.prompt, "Text the sample continues")->capture_default_str();
  generate->add_option("--max-new-tokens", gen.max_new_tokens, "Tokens to sample")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  generate->add_option("--temperature", gen.temperature, "Softmax temperature (0: greedy)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  generate->add_option("--top-k", gen.top_k, "Sample among the k most likely tokens (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  generate->add_option("--seed", gen.seed, "Seed of the sampling")->capture_default_str();
  generate->add_option("--device", gen.device, "cpu or cuda: where the model computes")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  generate->add_option("--precision", gen.precision, "auto (cuda bf16, cpu fp32), fp32, or bf16 (cuda only)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : 2;
  }
  race::init_logging("warn");

  if (generate->parsed()) {
    gen.checkpoint = gen_checkpoint;
    const auto g = race::train::generate(gen);
    fmt::print("{}{}\n", gen.prompt, g.text);
    return 0;
  }
  if (checkpoint.empty()) throw race::UsageError("race-eval: --checkpoint is required (or use `race-eval generate`)");
  eval.checkpoint = checkpoint;
  if (!data.empty()) eval.data = data;
  const auto e = race::train::evaluate_checkpoint(eval);
  const bool classify = e.task == "classify";
  nlohmann::json json = {{"checkpoint", e.checkpoint.string()}, {"step", e.step}, {"task", e.task},
                         {"data", e.data.string()}, {"split", e.split}, {"windows", e.windows},
                         {"context", e.context}, {"scored", e.result.tokens}, {"loss", e.result.loss}};
  if (classify) {
    json["accuracy"] = e.result.accuracy;
  } else {
    json["perplexity"] = e.result.perplexity;
    json["bits_per_byte"] = e.result.bits_per_byte;
  }
  if (e.scores_answers) {
    json["accuracy"] = e.result.accuracy;
    json["exact_match"] = e.result.exact_match;
  }
  if (json_path != "-") {
    if (classify)
      fmt::print("{} (step {}) on {} [{}], {} rows: loss {:.4f}, accuracy {:.4f}\n", e.checkpoint.string(), e.step,
                 e.data.string(), e.split, e.result.tokens, e.result.loss, e.result.accuracy);
    else if (e.scores_answers)
      fmt::print("{} (step {}) on {} [{}], context {}, {} answer tokens: loss {:.4f}, answer accuracy {:.4f}, "
                 "exact match {:.4f}\n",
                 e.checkpoint.string(), e.step, e.data.string(), e.split, e.context, e.result.tokens, e.result.loss,
                 e.result.accuracy, e.result.exact_match);
    else
      fmt::print("{} (step {}) on {} [{}], {} tokens: loss {:.4f}, perplexity {:.3f}, {:.4f} bits per byte\n",
                 e.checkpoint.string(), e.step, e.data.string(), e.split, e.result.tokens, e.result.loss,
                 e.result.perplexity, e.result.bits_per_byte);
  }
  if (!json_path.empty()) write_json(json_path, json);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return race::run_guarded([&] { return run(argc, argv); });
}
