// race-eval: the loss, perplexity and bits per byte of a checkpoint on a dataset split. Thin: options and
// output here, the evaluation in lib/train/evaluation.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/logging.h"
#include "core/main_guard.h"
#include "train/evaluation.h"

namespace {

int run(int argc, char** argv) {
  CLI::App app{"race-eval: evaluate a race checkpoint"};
  race::train::EvalOptions options;
  std::string checkpoint, data, json_path;
  app.add_option("--checkpoint", checkpoint, "Checkpoint file, or a run directory (its newest checkpoint)")
      ->required()
      ->check(CLI::ExistingPath);
  app.add_option("--data", data, "HDF5 dataset (default: the one in the checkpoint's config)")
      ->check(CLI::ExistingFile);
  app.add_option("--split", options.split, "Split of the dataset")->capture_default_str();
  app.add_option("--windows", options.windows, "Windows evaluated, in file order (0: the config's val_windows)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--json", json_path, "Also write the results as JSON to FILE (\"-\": stdout only JSON)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : 2;
  }
  race::init_logging("warn");
  options.checkpoint = checkpoint;
  if (!data.empty()) options.data = data;
  const auto e = race::train::evaluate_checkpoint(options);
  const nlohmann::json json = {{"checkpoint", e.checkpoint.string()}, {"step", e.step},
                               {"data", e.data.string()},           {"split", e.split},
                               {"windows", e.windows},              {"tokens", e.result.tokens},
                               {"loss", e.result.loss},             {"perplexity", e.result.perplexity},
                               {"bits_per_byte", e.result.bits_per_byte}};
  if (json_path == "-") {
    fmt::print("{}\n", json.dump(2));
    return 0;
  }
  fmt::print("{} (step {}) on {} [{}], {} tokens: loss {:.4f}, perplexity {:.3f}, {:.4f} bits per byte\n",
             e.checkpoint.string(), e.step, e.data.string(), e.split, e.result.tokens, e.result.loss,
             e.result.perplexity, e.result.bits_per_byte);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    if (!(out << json.dump(2) << "\n")) race::fail("--json {}: cannot write the file", json_path);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return race::run_guarded([&] { return run(argc, argv); });
}
