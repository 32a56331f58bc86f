// race-train: trains a model from a JSON config (--config FILE [--set a.b=v ...]) or continues a run
// (--resume RUN_DIR), as one process or as every rank of `mpirun -np N race-train ...`. Thin: options,
// signals and the communicator here, everything else in lib/train.
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "core/logging.h"
#include "core/main_guard.h"
#include "train/communicator.h"
#include "train/trainer.h"

namespace {

std::atomic<bool> stop_flag{false};

// SIGINT/SIGTERM: finish the step in flight, write a checkpoint, exit cleanly.
extern "C" void request_stop(int) { stop_flag.store(true); }

int run(int argc, char** argv, race::train::Communicator& comm) {
  CLI::App app{"race-train: train a transformer with RACE attention"};
  race::train::TrainOptions options;
  std::string config_file, resume_dir;
  auto* config = app.add_option("--config", config_file, "JSON config of a new run")->check(CLI::ExistingFile);
  auto* resume = app.add_option("--resume", resume_dir, "Continue this run directory from its newest checkpoint")
                     ->check(CLI::ExistingDirectory);
  config->excludes(resume);
  app.add_option("--set", options.overrides, "Override a config key: a.b.c=value (repeatable)");
  std::string device;
  app.add_option("--device", device, "cpu or cuda: where to compute (replaces run.device; a resumed run may "
                                     "move between them)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  std::string precision;
  app.add_option("--precision", precision,
                 "auto, fp32 or bf16: the linear layers' products (replaces run.precision; bf16 needs cuda)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
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
  if (!device.empty()) options.device = device;
  if (!precision.empty()) options.precision = precision;
  // Ranks other than 0 run the same steps: their info lines would repeat rank 0's.
  race::init_logging(comm.rank() == 0 ? options.log_level : "warn");
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);
  const auto result = race::train::run_training(options, comm, [] { return stop_flag.load(); });
  return result.interrupted ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<race::train::Communicator> comm;
  const int status = race::run_guarded([&] {
    comm = race::train::connect_communicator();
    return run(argc, argv, *comm);
  });
  // A failed rank takes the job down: the others may be waiting for it in a collective.
  if (status != 0 && status != 130 && comm) comm->abort(status);
  return status;
}
