// race-bench: command-line front end of the attention benchmarks and the cross-check tool.
//   race-bench attention ...            single-layer scaling study (one size, or a doubling sweep)
//   race-bench check --in A --out B     one layer on tensors from an HDF5 file, for outside comparison
//   race-bench allreduce --bytes N      the gradient all-reduce's bus bandwidth (under mpirun -np N)
//   race-bench model ...                a whole GPT's training throughput: tokens/s, TFLOP/s, MFU
//   race-bench attention-one ...        (internal) one size of a sweep, run in a fresh process
#include <fmt/format.h>
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "allreduce.h"
#include "check.h"
#ifdef RACE_HAVE_CUDA
#include "cuda_layer_bench.h"
#endif
#include "peak.h"
#include "core/error.h"
#include "core/main_guard.h"
#include "layer_bench.h"
#include "model_bench.h"
#include "report.h"
#include "sweep.h"
#include "system_info.h"

namespace race::bench {
namespace {

void add_layer_options(CLI::App& app, LayerConfig& c, bool& bidirectional) {
  app.add_option("--impl", c.impl, "Attention kernel")
      ->check(CLI::IsMember({"race", "softmax"}))
      ->capture_default_str();
  auto* causal = app.add_flag("--causal")->description("Causal attention (the default)");
  app.add_flag("--bidirectional", bidirectional, "Bidirectional (non-causal) attention")->excludes(causal);
  app.add_option("-B,--batch", c.batch, "Batch size")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("-H,--heads", c.heads, "Heads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("-D,--head-dim", c.head_dim, "Head dimension")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("-L,--tables", c.tables, "RACE hash tables")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  app.add_option("-P,--bits", c.bits, "RACE hyperplanes per table (2^P buckets)")
      ->check(CLI::Range(1, 12))
      ->capture_default_str();
  app.add_option("--estimator", c.estimator, "RACE estimator")
      ->check(CLI::IsMember({"bucket", "ratio"}))
      ->capture_default_str();
  app.add_option("--beta", c.beta, "RACE temperature (fixed, every head)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--eps", c.eps, "RACE denominator epsilon")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--window", c.window, "Softmax sliding window W (0 = full attention)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--threads", c.threads, "OpenMP threads")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  app.add_option("--repeats", c.repeats, "Timed repeats per size; the median is reported")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--seed", c.seed, "Seed of the synthetic inputs")->capture_default_str();
  app.add_flag("--in-place", c.in_place,
               "cuda race: gradients written over q, k, v and dout over out (4 tensors instead of 8)");
}

void add_model_options(CLI::App& app, ModelBenchConfig& c) {
  app.add_option("--device", c.device, "Device")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--precision", c.precision,
                 "Linear layers' products: auto (cuda bf16, cpu fp32), fp32, or bf16 (cuda only)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}))
      ->capture_default_str();
  app.add_option("--task", c.task, "lm: causal GPT, every position scored; mlm: bidirectional, 15% scored")
      ->check(CLI::IsMember({"lm", "mlm"}))
      ->capture_default_str();
  app.add_option("--attention", c.attention, "Attention of every layer")
      ->check(CLI::IsMember({"race", "softmax"}))
      ->capture_default_str();
  app.add_option("--layers", c.layers, "Layers")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  app.add_option("--d-model", c.d_model, "Model width C")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--heads", c.heads, "Heads H (must divide --d-model)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--mlp-hidden", c.mlp_hidden, "MLP width (default: 4 x --d-model)")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--vocab", c.vocab, "Vocabulary size")->check(CLI::Range(2, 1 << 30))->capture_default_str();
  app.add_option("-T,--context", c.context, "Tokens per window T")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("-B,--batch", c.batch, "Windows per step B")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("-L,--tables", c.tables, "RACE hash tables")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("-P,--bits", c.bits, "RACE hyperplanes per table (2^P buckets)")
      ->check(CLI::Range(1, 12))
      ->capture_default_str();
  app.add_option("--window", c.window, "Softmax sliding window W (0 = full attention)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--profile", c.profile,
               "After the timed steps, one more with every operation timed between device synchronisations "
               "(results.profile: seconds, share and the linear layers' TFLOP/s per operation)");
  app.add_flag("--recompute", c.recompute,
               "Keep only each layer's input; re-run its forward before its backward");
  app.add_option("--steps", c.steps, "Timed optimizer steps")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--warmup", c.warmup, "Untimed optimizer steps first")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  app.add_option("--seed", c.seed, "Seed of the initialisation, the hyperplanes and the random tokens")
      ->capture_default_str();
  app.add_option("--threads", c.threads, "OpenMP threads")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  app.add_option("--peak-seconds", c.peak_seconds,
                 "CPU: time of the in-run peak measurement (race-bench peak's row product)")
      ->check(CLI::Range(0.05, 600.0))
      ->capture_default_str();
  app.add_option(
         "--peak-tflops", c.peak_tflops,
         "CUDA: dense BF16 tensor-core peak, TFLOP/s, for the second MFU (default: NVIDIA H200 SXM "
         "datasheet, 1,979 TFLOPS BF16 with 2:4 sparsity, halved for dense). The model computes in FP32 "
         "on CUDA cores, so this is the yardstick of a BF16 tensor-core build, not of this one")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option(
         "--fp32-peak-tflops", c.fp32_peak_tflops,
         "CUDA: FP32 CUDA-core peak, TFLOP/s (default: SMs x peak SM clock x FP32 lanes per SM x 2, from "
         "the device query; required where the query cannot give it)")
      ->check(CLI::PositiveNumber);
}

// Bytes of the first CUDA device's memory; fails when --device cuda cannot run here (no CUDA in this build,
// or no usable device), naming why.
std::int64_t device_memory_bytes() {
#ifdef RACE_HAVE_CUDA
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) fail("race-bench: --device cuda: no usable CUDA device ({})", why);
  return cuda_device_memory_bytes();
#else
  fail("race-bench: --device cuda: this build has no CUDA backend (configure with the CUDA toolkit installed)");
#endif
}

// Fails before any measuring when FILE cannot be written, rather than after a sweep of many minutes.
void require_writable_output(const std::string& path) {
  if (path.empty() || path == "-") return;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::filesystem::path dir = parent.empty() ? std::filesystem::path(".") : parent;
  if (!std::filesystem::is_directory(dir) || access(dir.c_str(), W_OK) != 0)
    throw UsageError(fmt::format("--json {}: directory {} does not exist or is not writable", path, dir.string()));
}

// The table goes to stdout, or to stderr when the JSON does, so that stdout stays parseable.
int run_attention(RunOptions& run, const std::string& json_path) {
  validate(run.layer);
  const bool cuda = run.layer.on_cuda();
  const std::int64_t memory = cuda ? device_memory_bytes() : physical_memory_bytes();
  if (!run.plan.sweep && io_bytes(run.layer, run.plan.seq_len) > memory)
    throw UsageError(fmt::format("-T {}: the layer's inputs and outputs alone need {:.1f} GB, more than this "
                                 "{}'s {:.1f} GB of memory",
                                 run.plan.seq_len, static_cast<double>(io_bytes(run.layer, run.plan.seq_len)) / 1e9,
                                 cuda ? "GPU" : "machine", static_cast<double>(memory) / 1e9));
  std::FILE* table = json_path == "-" ? stderr : stdout;
  fmt::print(table, "{}", table_header(run));
  std::fflush(table);
  const SweepOutcome outcome = run_sweep(run.layer, run.plan, [&](const SweepOutcome& so_far) {
    fmt::print(table, "{}", table_row(run.layer, so_far.sizes.back()));
    std::fflush(table);
    if (!json_path.empty() && json_path != "-")
      write_text_atomically(json_path, attention_json(run, so_far, false).dump(2) + "\n");
  });
  for (const std::string& note : outcome.notes) fmt::print(table, "note: {}\n", note);
  std::fflush(table);
  if (json_path == "-")
    fmt::print("{}\n", attention_json(run, outcome, true).dump(2));
  else if (!json_path.empty())
    write_text_atomically(json_path, attention_json(run, outcome, true).dump(2) + "\n");
  return outcome.failed ? 1 : 0;
}

// `comm` is connected only by the allreduce subcommand: the others fork children and must not start MPI.
int run(int argc, char** argv, std::unique_ptr<train::Communicator>& comm) {
  CLI::App app{
      "race-bench: RACE and softmax attention benchmarks, and a cross-check against outside "
      "implementations"};
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::help);

  RunOptions run;
  run.layer.threads = cpu_count();
  run.plan.max_memory_bytes = 0.8 * static_cast<double>(physical_memory_bytes());
  double max_memory_gb = run.plan.max_memory_bytes / 1e9;
  bool bidirectional = false;
  std::string json_path;
  auto* attention = app.add_subcommand("attention",
                                       "Time one attention layer, forward and forward+backward, "
                                       "at one sequence length or a doubling sweep");
  add_layer_options(*attention, run.layer, bidirectional);
  auto* size = attention->add_option_group("size", "One sequence length, or a sweep");
  size->add_option("-T,--seq-len", run.plan.seq_len, "Sequence length")->check(CLI::PositiveNumber);
  auto* sweep = size->add_flag("--sweep", run.plan.sweep, "Double T from --t-min until a budget would be exceeded");
  size->require_option(1);
  attention->add_option("--t-min", run.plan.t_min, "First T of a sweep")
      ->check(CLI::PositiveNumber)
      ->needs(sweep)
      ->capture_default_str();
  attention
      ->add_option("--max-memory-gb", max_memory_gb,
                   "Sweep: peak memory budget per size, GB (1e9 bytes); "
                   "default 80% of physical memory")
      ->check(CLI::PositiveNumber)
      ->needs(sweep)
      ->capture_default_str();
  attention->add_option("--max-seconds", run.plan.max_seconds, "Sweep: time budget for the whole sweep (default: none)")
      ->check(CLI::PositiveNumber)
      ->needs(sweep);
  attention->add_option("--device", run.layer.device, "Device")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  attention->add_option("--dtype", run.layer.dtype, "Tensor precision (bf16: --device cuda only)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  attention->add_option("--json", json_path, "Write the results as JSON to FILE (\"-\": stdout)");

  std::string in_path, out_path;
  int check_threads = cpu_count();
  auto* check = app.add_subcommand("check",
                                   "Run one layer on the tensors of an HDF5 file and write the output "
                                   "(and gradients) to another, for comparison with other implementations");
  check->add_option("--in", in_path, "Input HDF5 file (q, k, v, optional dout, planes, ...)")->required();
  check->add_option("--out", out_path, "Output HDF5 file (out, dq, dk, dv, dbeta/lse); replaced atomically")
      ->required();
  check->add_option("--threads", check_threads, "OpenMP threads")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  std::string check_device = "cpu";
  check->add_option("--device", check_device, "Device (cuda: race only, fp32)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();

  int peak_threads = cpu_count();
  double peak_seconds = 2.0;
  std::string peak_json;
  auto* peak = app.add_subcommand("peak",
                                  "Measure this machine's limits: the FMA rate of the kernels' row product "
                                  "(in cache) and streaming memory bandwidth");
  peak->add_option("--threads", peak_threads, "OpenMP threads")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  peak->add_option("--seconds", peak_seconds, "Time per measurement")->check(CLI::Range(0.1, 600.0))->capture_default_str();
  peak->add_option("--json", peak_json, "Write the results as JSON to FILE (\"-\": stdout)");

  std::int64_t allreduce_bytes = std::int64_t{64} << 20;
  int allreduce_repeats = 20;
  std::string allreduce_json;
  auto* allreduce =
      app.add_subcommand("allreduce",
                         "Time the gradient all-reduce of data-parallel training (under mpirun -np "
                         "N, N >= 2) and report its bus bandwidth as nccl-tests does");
  allreduce->add_option("--bytes", allreduce_bytes, "Bytes of fp32 gradients summed")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  allreduce->add_option("--repeats", allreduce_repeats, "Timed repeats; the median is reported")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  allreduce->add_option("--json", allreduce_json,
                        "Write the result as JSON to FILE (\"-\": stdout), on rank 0");
  ModelBenchConfig model_config;
  model_config.threads = cpu_count();
  std::string model_json;
  auto* model =
      app.add_subcommand("model",
                         "Time a whole GPT's training steps on random tokens (forward, backward, "
                         "gradient norm, AdamW, as race-train): tokens/s, FLOPs per token, TFLOP/s, MFU");
  add_model_options(*model, model_config);
  model->add_option("--json", model_json, "Write the results as JSON to FILE (\"-\": stdout)");

  std::string child_config;
  std::int64_t child_seq_len = 0;
  auto* one = app.add_subcommand("attention-one", "Internal: one size of `attention`, as one JSON line");
  one->group("");  // hidden from --help: its interface is private to race-bench
  one->add_option("--config", child_config)->required();
  one->add_option("--seq-len", child_seq_len)->required()->check(CLI::PositiveNumber);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : 2;
  }

  if (attention->parsed()) {
    // An option that the chosen kernel would ignore is a mistake in the command, not something to drop.
    const bool race = run.layer.impl == "race";
    for (const char* name : {"--tables", "--bits", "--estimator", "--beta", "--eps"})
      if (!race && attention->count(name) > 0)
        throw UsageError(fmt::format("{} applies to --impl race, not --impl softmax", name));
    if (race && attention->count("--window") > 0)
      throw UsageError("--window applies to --impl softmax, not --impl race");
    require_writable_output(json_path);
    run.layer.causal = !bidirectional;
    run.plan.max_memory_bytes = max_memory_gb * 1e9;
    // A GPU sweep's default budget is the GPU's memory, not the host's.
    if (run.layer.on_cuda() && attention->count("--max-memory-gb") == 0) {
      validate(run.layer);
      run.plan.max_memory_bytes = 0.8 * static_cast<double>(device_memory_bytes());
    }
    return run_attention(run, json_path);
  }
  if (model->parsed()) {
    const bool race = model_config.attention == "race";
    for (const char* name : {"--tables", "--bits"})
      if (!race && model->count(name) > 0)
        throw UsageError(fmt::format("{} applies to --attention race, not --attention softmax", name));
    if (race && model->count("--window") > 0)
      throw UsageError("--window applies to --attention softmax, not --attention race");
    const bool cuda = model_config.device == "cuda";
    if (cuda && model->count("--peak-seconds") > 0)
      throw UsageError("--peak-seconds applies to --device cpu (a GPU's peaks are computed, not measured)");
    for (const char* name : {"--peak-tflops", "--fp32-peak-tflops"})
      if (!cuda && model->count(name) > 0)
        throw UsageError(
            fmt::format("{} applies to --device cuda (the CPU's peak is measured in the run)", name));
    require_writable_output(model_json);
    std::string command = "race-bench";
    for (int i = 1; i < argc; ++i) command += fmt::format(" {}", argv[i]);
    const nlohmann::ordered_json report =
        run_model_bench(model_config, command, model_json == "-" ? stderr : stdout);
    if (model_json == "-")
      fmt::print("{}\n", report.dump(2));
    else if (!model_json.empty())
      write_text_atomically(model_json, report.dump(2) + "\n");
    return 0;
  }
  if (allreduce->parsed()) {
    require_writable_output(allreduce_json);
    comm = train::connect_communicator();
    const AllreduceResult r = measure_allreduce(*comm, allreduce_bytes, allreduce_repeats);
    if (comm->rank() != 0) return 0;
    fmt::print(allreduce_json == "-" ? stderr : stdout,
               "race-bench allreduce: {} ranks, {} bytes: {:.6f} s (median of {}), algbw {:.3f} GB/s, busbw "
               "{:.3f} GB/s\n",
               r.ranks, r.bytes, r.median_seconds, r.repeats, r.algbw_gbytes_per_s, r.busbw_gbytes_per_s);
    if (allreduce_json == "-")
      fmt::print("{}\n", to_json(r).dump(2));
    else if (!allreduce_json.empty())
      write_text_atomically(allreduce_json, to_json(r).dump(2) + "\n");
    return 0;
  }
  if (peak->parsed()) {
    const PeakResult r = measure_peak(peak_threads, peak_seconds);
    fmt::print(peak_json == "-" ? stderr : stdout,
               "race-bench peak: {} threads: row product {:.1f} GFLOP/s (in cache), triad {:.1f} GB/s\n",
               r.threads, r.product_gflops, r.triad_gbytes_per_s);
    if (peak_json == "-")
      fmt::print("{}\n", to_json(r).dump(2));
    else if (!peak_json.empty())
      write_text_atomically(peak_json, to_json(r).dump(2) + "\n");
    return 0;
  }
  if (check->parsed()) {
    omp_set_num_threads(check_threads);
    if (check_device == "cuda") device_memory_bytes();  // a clear error now when there is no usable GPU
    const CheckSummary s = run_check(in_path, out_path, check_device);
    fmt::print("race-bench check: {} on {} {} B={} H={} T={} D={}: wrote {} to {} (kernels {:.6f} s)\n", s.impl, s.device,
               s.causal ? "causal" : "bidirectional", s.batch, s.heads, s.seq_len, s.head_dim,
               fmt::join(s.written, ", "), out_path, s.forward_seconds + s.backward_seconds);
    return 0;
  }
  const LayerConfig config = layer_config_from_json(nlohmann::json::parse(child_config));
  fmt::print("{}\n", measure_one(config, child_seq_len).dump());
  return 0;
}

}  // namespace
}  // namespace race::bench

int main(int argc, char** argv) {
  std::unique_ptr<race::train::Communicator> comm;
  const int status = race::run_guarded([&] { return race::bench::run(argc, argv, comm); });
  // A failed rank of `allreduce` takes the job down: the others may be waiting for it in a collective.
  if (status != 0 && comm) comm->abort(status);
  return status;
}
