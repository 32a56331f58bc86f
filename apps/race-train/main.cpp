// race-train: trains a model from a JSON config (--config FILE [--set a.b=v ...]) or continues a run
// (--resume RUN_DIR). Thin: options and signals here, everything else in lib/train.
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <string>
#include <vector>

#include "core/logging.h"
#include "core/main_guard.h"
#include "train/trainer.h"

namespace {

std::atomic<bool> stop_flag{false};

// SIGINT/SIGTERM: finish the step in flight, write a checkpoint, exit cleanly.
extern "C" void request_stop(int) { stop_flag.store(true); }

int run(int argc, char** argv) {
  CLI::App app{"race-train: train a transformer with RACE attention"};
  race::train::TrainOptions options;
  std::string config_file, resume_dir;
  auto* config = app.add_option("--config", config_file, "JSON config of a new run")->check(CLI::ExistingFile);
  auto* resume = app.add_option("--resume", resume_dir, "Continue this run directory from its newest checkpoint")
                     ->check(CLI::ExistingDirectory);
  config->excludes(resume);
  app.add_option("--set", options.overrides, "Override a config key: a.b.c=value (repeatable)");
  app.add_flag("--dry-run", options.dry_run, "Validate the config and data, print the plan, and exit");
  app.add_option("--log-level", options.log_level, "trace, debug, info, warn, error")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : 2;
  }
  if (!config_file.empty()) options.config_file = config_file;
  if (!resume_dir.empty()) options.resume_dir = resume_dir;
  race::init_logging(options.log_level);
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);
  const auto result = race::train::run_training(options, [] { return stop_flag.load(); });
  return result.interrupted ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return race::run_guarded([&] { return run(argc, argv); });
}
