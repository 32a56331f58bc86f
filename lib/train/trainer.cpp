// race-train's loop for GPT language models: config, plan, steps, validation, checkpoints, resume.
#include "train/trainer.h"

#include <omp.h>
#include <unistd.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <span>

#include "core/error.h"
#include "core/logging.h"
#include "model/flops.h"
#include "model/gpt.h"
#include "model/model_config.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "train/device_communicator.h"
#include "train/gradient_buckets.h"
#include "train/rank_threads.h"
#include "train/task_data.h"
#include "train/run_directory.h"
#include "train/schedule.h"
#include "train/tokenizer.h"

namespace race::train {

Schema train_schema() {
  return Schema::object(
      "A race-train run.",
      {
          {"task", Schema::string("lm", "lm: GPT, next-token prediction; mlm: BERT, masked tokens (15%, "
                                        "80/10/10 mask/random/keep); classify: an encoder with a linear head "
                                        "over pooled states.")
                       .one_of({"lm", "mlm", "classify"})},
          {"run", Schema::object("Where results go.",
                                 {{"name", Schema::string("run", "Run directory name under run.root.")},
                                  {"root", Schema::string("runs", "Parent directory of run directories.")},
                                  {"threads", Schema::integer(0, "OpenMP threads per rank (0: OMP_NUM_THREADS "
                                                                 "if set, else the cores of this rank).")
                                                  .min(0)},
                                  {"device", Schema::string("cpu", "Where the model computes: cpu, or cuda (one "
                                                                   "GPU per process; under mpirun, GPU r mod "
                                                                   "count for node-local rank r).")
                                                 .one_of({"cpu", "cuda"})},
                                  {"precision",
                                   Schema::string("auto", "The linear layers' matrix products: fp32, or bf16 "
                                                          "(cuda only: bf16 operands on the tensor cores, fp32 "
                                                          "sums); auto is bf16 on cuda, fp32 on cpu.")
                                       .one_of({"auto", "fp32", "bf16"})}})},
          {"data",
           Schema::object(
               "Language-model data: an HDF5 file in the layout of docs (DESIGN section 4).",
               {{"path", Schema::string("", "The HDF5 dataset (train and val splits).")},
                {"context", Schema::integer(256, "Tokens per window (T).").min(1)},
                {"batch_size", Schema::integer(4, "Windows per micro-batch (B), over all ranks: a multiple of "
                                                  "the number of ranks.")
                                   .min(1)},
                {"cross_documents", Schema::boolean(true, "Windows may span document boundaries.")},
                {"packed", Schema::boolean(false, "Documents in one window do not attend to each other.")},
                {"seed", Schema::integer(0, "Seed of the window order.").min(0)},
                {"val_windows", Schema::integer(16, "Windows of the val split used for validation.").min(1)}})},
          {"model", model::model_schema()},
          {"optimizer",
           Schema::object("AdamW with decoupled weight decay on matrices only.",
                          {{"beta1", Schema::number(0.9, "First-moment decay.").min(0.0).max(0.999999)},
                           {"beta2", Schema::number(0.95, "Second-moment decay.").min(0.0).max(0.999999)},
                           {"eps", Schema::number(1e-8, "Denominator epsilon.").min(1e-30)},
                           {"weight_decay", Schema::number(0.1, "Decay of weight matrices.").min(0.0)},
                           {"decay_embeddings", Schema::boolean(false, "Also decay the embeddings.")},
                           {"decay_norms_and_biases",
                            Schema::boolean(false, "Also decay LayerNorm weights and biases.")},
                           {"grad_clip", Schema::number(1.0, "Global gradient-norm clip (0: off).").min(0.0)}})},
          {"schedule", schedule_schema()},
          {"train",
           Schema::object(
               "The loop; its length is schedule.total_steps.",
               {{"grad_accum", Schema::integer(1, "Micro-batches per optimizer step.").min(1)},
                {"tokens_per_step",
                 Schema::integer(0, "Tokens per optimizer step (0: batch_size x context x grad_accum); "
                                    "sets grad_accum, and must be a multiple of batch_size x context.")
                     .min(0)},
                {"log_every", Schema::integer(10, "Steps between train metrics lines.").min(1)},
                {"eval_every", Schema::integer(100, "Steps between validations (and at the end).").min(1)},
                {"checkpoint_every", Schema::integer(500, "Steps between checkpoints (and at the end).").min(1)},
                {"keep_last", Schema::integer(3, "Checkpoints kept.").min(1)},
                {"on_nan", Schema::string("error", "A NaN or inf loss or gradient: stop, or skip the step.")
                               .one_of({"error", "skip"})},
                {"allreduce_bucket_mb",
                 Schema::number(1.0, "Several ranks: MB of gradients per all-reduce bucket, started during the "
                                     "backward.")
                     .min(1e-6)},
                {"collective_timeout_s",
                 Schema::number(kDefaultCollectiveTimeoutS,
                                "Several ranks: seconds a collective may wait for the other ranks before the "
                                "job is stopped with an error.")
                     .min(1e-3)}})},
      });
}

namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

namespace {

std::vector<TensorView> views(const std::vector<model::ParamInfo>& infos, const std::vector<float>& host) {
  std::vector<TensorView> out;
  for (const auto& p : infos)
    out.push_back({p.name, p.shape, std::span<const float>(host.data() + p.offset, static_cast<size_t>(p.size))});
  return out;
}

std::vector<TensorSpec> specs(const std::vector<model::ParamInfo>& infos) {
  std::vector<TensorSpec> out;
  for (const auto& p : infos) out.push_back({p.name, p.shape});
  return out;
}

// Copies checkpoint tensors, matched by name, into a flat host arena laid out as `infos`.
void unpack(const std::vector<NamedTensor>& tensors, const std::vector<model::ParamInfo>& infos,
            std::vector<float>& host) {
  for (const auto& p : infos)
    for (const auto& t : tensors)
      if (t.name == p.name) std::copy(t.values.begin(), t.values.end(), host.begin() + p.offset);
}

std::string format_bytes(double bytes) {
  return bytes >= 1e9 ? fmt::format("{:.2f} GB", bytes / 1e9) : fmt::format("{:.1f} MB", bytes / 1e6);
}

}  // namespace

namespace {

// Adds the loss and argmax accuracy of the answer tokens (targets other than -1) of one batch, from full
// logits.
void score_answers(model::Gpt& gpt, const ModelBatch& b, EvalTotals& totals) {
  const std::vector<float> logits = gpt.forward_logits(b.view());  // (B*T, V)
  const int64_t T = gpt.seq_len(), V = gpt.spec().vocab_size;
  for (int64_t r = 0; r < b.rows; ++r) {
    int64_t answers = 0, correct = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int32_t target = b.targets[static_cast<size_t>(r * T + t)];
      if (target < 0) continue;
      const float* row = logits.data() + (r * T + t) * V;  // (V)
      const int64_t best = std::max_element(row, row + V) - row;
      double sum = 0.0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - row[best]);
      totals.loss_sum += std::log(sum) + row[best] - row[target];
      ++answers;
      correct += best == target;
    }
    if (answers == 0) continue;
    totals.tokens += answers;
    totals.labelled += answers;
    totals.correct += correct;
    ++totals.answered_windows;
    totals.exact_windows += correct == answers;
  }
}

}  // namespace

EvalTotals evaluation_totals(model::Gpt& gpt, const std::vector<ModelBatch>& batches, const Tokenizer& tokenizer,
                             bool scores_answers) {
  EvalTotals totals;
  const bool classify = gpt.spec().num_classes > 0;
  for (const ModelBatch& b : batches) {
    if (scores_answers) {
      score_answers(gpt, b, totals);
    } else {
      const model::LossSum loss = gpt.forward_loss(b.view());
      totals.loss_sum += loss.sum;
      totals.tokens += loss.count;
    }
    if (classify) {
      const std::vector<int32_t> predicted = gpt.predictions();
      for (int64_t r = 0; r < b.rows; ++r) {
        totals.labelled += b.labels[static_cast<size_t>(r)] >= 0;
        totals.correct += predicted[static_cast<size_t>(r)] == b.labels[static_cast<size_t>(r)];
      }
    } else {
      for (const int32_t t : b.targets)
        if (t >= 0) totals.target_bytes += static_cast<int64_t>(tokenizer.piece(t).size());
    }
  }
  return totals;
}

EvalResult summarize(const EvalTotals& totals, bool classify, bool scores_answers) {
  EvalResult result;
  result.tokens = totals.tokens;
  result.loss = model::LossSum{totals.loss_sum, totals.tokens}.mean();
  result.perplexity = std::exp(result.loss);
  if (classify)
    result.accuracy =
        static_cast<double>(totals.correct) / static_cast<double>(std::max<int64_t>(1, totals.labelled));
  else
    result.bits_per_byte =
        totals.loss_sum / std::log(2.0) / static_cast<double>(std::max<int64_t>(1, totals.target_bytes));
  if (scores_answers) {
    result.accuracy =
        static_cast<double>(totals.correct) / static_cast<double>(std::max<int64_t>(1, totals.labelled));
    result.exact_match = static_cast<double>(totals.exact_windows) /
                         static_cast<double>(std::max<int64_t>(1, totals.answered_windows));
  }
  return result;
}

EvalResult evaluate(model::Gpt& gpt, const std::vector<ModelBatch>& batches, const Tokenizer& tokenizer,
                    bool scores_answers) {
  return summarize(evaluation_totals(gpt, batches, tokenizer, scores_answers), gpt.spec().num_classes > 0,
                   scores_answers);
}

model::ModelSpec model_spec(const nlohmann::json& config, const TaskData& data) {
  model::ModelSpec spec = model::spec_from_config(config.at("model"), data.tokenizer().vocab_size, data.context());
  spec.causal = config.at("task") == "lm";
  spec.num_classes = data.num_classes();
  return spec;
}

TrainResult run_training(const TrainOptions& options, const std::function<bool()>& stop_requested) {
  SingleProcessCommunicator only;
  return run_training(options, only, stop_requested);
}

TrainResult run_training(const TrainOptions& options, Communicator& comm,
                         const std::function<bool()>& stop_requested) {
  if (options.config_file.has_value() == options.resume_dir.has_value())
    throw UsageError("race-train: give exactly one of --config FILE or --resume RUN_DIR");

  // The resolved config: from the file (+ overrides) for a new run, from the run directory on resume.
  nlohmann::json config;
  std::optional<RunDirectory> run;
  if (options.config_file) {
    config = load_config(train_schema(), *options.config_file, options.overrides);
  } else {
    if (!options.overrides.empty())
      throw UsageError("race-train --resume: --set cannot change a run's config; start a new run instead");
    RunDirectory opened = RunDirectory::open_for_resume(*options.resume_dir);
    config = resolve(train_schema(), opened.config(), {}, (opened.path() / "config.json").string());
    run.emplace(std::move(opened));
  }
  // The device and precision change how the run computes, not what: --device and --precision may change a
  // resumed run too.
  if (options.device) config["run"]["device"] = *options.device;
  if (options.precision) config["run"]["precision"] = *options.precision;
  const auto& data_cfg = config.at("data");
  const auto& opt_cfg = config.at("optimizer");
  const auto& train_cfg = config.at("train");
  const ThreadChoice threads = choose_threads(config.at("run").at("threads").get<int>(), comm.local_size());
  omp_set_num_threads(threads.threads);
  const ScheduleOptions schedule = schedule_options_from_json(config.at("schedule"));
  const int64_t total_steps = schedule.total_steps;
  comm.set_timeout(train_cfg.at("collective_timeout_s").get<double>());

  // Rank r of N reads rows [r B / N, (r + 1) B / N) of every global micro-batch of B = data.batch_size rows.
  const int64_t global_batch = data_cfg.at("batch_size").get<int64_t>();
  if (global_batch % comm.world_size() != 0)
    fail("data.batch_size: {} rows cannot be split evenly over {} ranks; use a multiple of {}", global_batch,
         comm.world_size(), comm.world_size());
  const BatchShard shard{comm.rank(), comm.world_size()};
  if (comm.world_size() > 1)
    spdlog::info(
        "rank {} of {} ({} of {} on this node): {} OpenMP threads ({}), rows {} to {} of each "
        "micro-batch of {}",
        comm.rank(), comm.world_size(), comm.local_rank(), comm.local_size(), threads.threads, threads.reason,
        comm.rank() * (global_batch / comm.world_size()),
        (comm.rank() + 1) * (global_batch / comm.world_size()) - 1, global_batch);
  else
    spdlog::info("{} OpenMP threads ({})", threads.threads, threads.reason);

  std::unique_ptr<TaskData> data = TaskData::open(config, {}, shard);
  const int64_t context = data->context(), batch_size = data->batch_size();  // batch_size: this rank's rows
  int64_t grad_accum = train_cfg.at("grad_accum").get<int64_t>();
  if (const int64_t target = train_cfg.at("tokens_per_step").get<int64_t>(); target > 0) {
    if (target % (global_batch * context) != 0)
      fail("train.tokens_per_step: {} is not a multiple of data.batch_size x data.context = {}", target,
           global_batch * context);
    if (train_cfg.at("grad_accum").get<int64_t>() != 1)
      fail("train.tokens_per_step sets the accumulation itself: leave train.grad_accum at 1 (got {})",
           train_cfg.at("grad_accum").get<int64_t>());
    grad_accum = target / (global_batch * context);
  }
  const int64_t tokens_per_step = global_batch * context * grad_accum;  // over all ranks
  const Tokenizer tokenizer = data->tokenizer();  // a copy: `data` is reopened at the resume position below
  const std::vector<ModelBatch> val_batches = data->validation("val", data_cfg.at("val_windows").get<int64_t>());

  const std::string device_name = config.at("run").at("device").get<std::string>();
  ComputeDevice device =
      open_device(device_name, options.device ? "--device" : "run.device", comm.local_rank(),
                  config.at("run").at("precision").get<std::string>(),
                  options.precision ? "--precision" : "run.precision");
  model::Ops& ops = *device.ops;
  model::ModelSpec spec = model_spec(config, *data);
  spec.logits_block_bytes = device.logits_block_bytes;
  spdlog::info("device: {}", device.description);

  // The memory plan, checked before anything is allocated: parameters, gradients and AdamW's two moments,
  // the activations kept for the backward, and the scratch the layers share, against the device's budget
  // (ComputeDevice::budget_bytes). Processes that share a machine's memory or a GPU split it.
  const model::MemoryPlan plan = model::plan_memory(spec, batch_size, context, ops.operand_type());
  // Ranks on one GPU are counted by its identity, whatever CUDA_VISIBLE_DEVICES gave each of them.
  const int sharing = device.kind == DeviceKind::cuda
                          ? (comm.world_size() > 1 ? ranks_sharing_gpu(comm, device.gpu_uuid) : 1)
                          : comm.local_size();
  const double budget = device.budget_bytes(sharing);
  const std::string budget_text = device.budget_description(sharing);
  const double optimizer_bytes = 2.0 * sizeof(float) * static_cast<double>(plan.parameters);
  const double needed = static_cast<double>(plan.bytes(batch_size, context)) + optimizer_bytes;
  const double token_independent = needed - static_cast<double>(plan.bytes_per_token() * batch_size * context);
  const double largest_context =
      (budget - token_independent) / static_cast<double>(plan.bytes_per_token() * batch_size);
  spdlog::info(
      "memory plan ({} product operands): {} for parameters, gradients and AdamW state; {:.1f} KB per token "
      "({:.1f} KB of "
      "activations kept for the backward, {:.1f} KB of shared scratch); {} in all for micro-batches of {} x {} "
      "tokens; largest context that fits in {} at batch {}: about {:.0f} tokens",
      model::element_type_name(ops.operand_type()),
      format_bytes(static_cast<double>(2 * plan.parameters + plan.buffers) * sizeof(float) +
                   static_cast<double>(plan.weight_operand_bytes) + optimizer_bytes),
      static_cast<double>(plan.bytes_per_token()) / 1e3,
      static_cast<double>(plan.activation_bytes_per_token) / 1e3,
      static_cast<double>(plan.scratch_bytes_per_token) / 1e3, format_bytes(needed), batch_size, context,
      budget_text, batch_size, std::max(0.0, largest_context));
  if (needed > budget)
    fail("data.context {} x data.batch_size {}: the memory plan needs {}, more than {} ({}); lower the context "
         "or the batch (raise train.grad_accum to keep the tokens per step), or set model.recompute",
         context, global_batch, format_bytes(needed), budget_text, format_bytes(budget));

  model::Gpt gpt(ops, spec, batch_size, context);
  const int64_t n_params = gpt.parameter_count();
  spdlog::info("task {}: {} layers, d_model {}, {} heads, {} parameters; data {}", config.at("task").get<std::string>(),
               spec.layers.size(), spec.d_model, spec.heads, n_params, data->describe());
  // Training FLOPs per token (model/flops.h): 6 per matrix weight, the tied head included, plus attention.
  const double flops_per_token = model::training_flops_per_token(spec, gpt.params(), context);
  spdlog::info(
      "training: {:.1f} MFLOP per token (matrices and attention); {} micro-batch(es) of {} x {} "
      "tokens per step{}",
      flops_per_token / 1e6, grad_accum, global_batch, context,
      comm.world_size() > 1 ? fmt::format(", {} rows on each of {} ranks", batch_size, comm.world_size())
                            : "");
  if (options.dry_run) {
    data->check_all_tokens();
    spdlog::info("dry run: config, data and plan are valid");
    return {};
  }

  // Rank 0 alone writes the run directory (config, metrics, log, checkpoints); the others only read it.
  const bool writes_files = comm.rank() == 0;
  const std::filesystem::path run_path =
      run ? run->path()
          : std::filesystem::path(config.at("run").at("root").get<std::string>()) /
                config.at("run").at("name").get<std::string>();

  std::vector<float> m_host(static_cast<size_t>(n_params), 0.f), v_host(static_cast<size_t>(n_params), 0.f);
  float* adam_m = ops.allocate(n_params);
  float* adam_v = ops.allocate(n_params);
  int64_t step = 0, tokens_seen = 0;
  DataState data_state;
  gpt.initialize();
  if (options.resume_dir) {
    const auto latest = latest_checkpoint(run->checkpoint_dir());
    const std::string latest_name = latest ? latest->filename().string() : "";
    comm.check_same(checksum(std::as_bytes(std::span<const char>(latest_name))),
                    "the newest checkpoint (is the run directory on a file system every rank sees?)");
    if (latest) {
      const Checkpoint ckpt = read_checkpoint(*latest);
      check_compatible(ckpt, specs(gpt.params()), specs(gpt.buffers()), "checkpoint " + latest->string());
      std::vector<float> host(static_cast<size_t>(n_params));
      unpack(ckpt.params, gpt.params(), host);
      ops.copy_from_host(gpt.parameters(), host.data(), n_params);
      unpack(ckpt.adam_m, gpt.params(), m_host);
      unpack(ckpt.adam_v, gpt.params(), v_host);
      std::vector<float> buffers(static_cast<size_t>(gpt.buffer_count()));
      unpack(ckpt.buffers, gpt.buffers(), buffers);
      if (gpt.buffer_count() > 0) ops.copy_from_host(gpt.buffer_data(), buffers.data(), gpt.buffer_count());
      step = ckpt.step;
      tokens_seen = ckpt.tokens_seen;
      data_state = ckpt.trainer_state.at("data").get<DataState>();
      spdlog::info("resuming {} from {} (step {})", run->path().string(), latest->string(), step);
    } else {
      spdlog::info("resuming {}: no complete checkpoint, starting from step 0", run->path().string());
    }
    if (writes_files) run->truncate_metrics_after(latest ? step : -1);
  }
  ops.copy_from_host(adam_m, m_host.data(), n_params);
  ops.copy_from_host(adam_v, v_host.data(), n_params);

  // The training order resumes where the checkpoint stood (a fresh run keeps the loader it has).
  if (data_state != DataState{}) data = TaskData::open(config, data_state, shard);

  // Every rank must start from the same state: the same initialisation (model.seed) or the same checkpoint,
  // and the same config. Compared as checksums; a mismatch stops every rank with the checksums listed.
  auto state_checksum = [&] {
    std::vector<float> params(static_cast<size_t>(n_params)),
        buffers(static_cast<size_t>(gpt.buffer_count()));
    ops.copy_to_host(params.data(), gpt.parameter_values(), n_params);
    ops.copy_to_host(m_host.data(), adam_m, n_params);
    ops.copy_to_host(v_host.data(), adam_v, n_params);
    if (gpt.buffer_count() > 0) ops.copy_to_host(buffers.data(), gpt.buffer_data(), gpt.buffer_count());
    uint64_t hash = kChecksumSeed;
    for (const std::vector<float>* v : {&params, &buffers, &m_host, &v_host})
      hash = checksum(std::as_bytes(std::span<const float>(*v)), hash);
    const std::string position =
        fmt::format("{} {} {}", step, tokens_seen, nlohmann::json(data->state()).dump());
    return checksum(std::as_bytes(std::span<const char>(position)), hash);
  };
  comm.check_same(state_checksum(), options.resume_dir
                                        ? "the state loaded from the checkpoint (parameters, "
                                          "AdamW moments, step and data position)"
                                        : "the initial parameters (model.seed and the model config)");
  const std::string config_text = config.dump();
  comm.check_same(checksum(std::as_bytes(std::span<const char>(config_text))), "the resolved config");
  // A new run's directory appears only once every rank has agreed to start it.
  if (writes_files && !run)
    run.emplace(RunDirectory::create(config.at("run").at("root").get<std::string>(),
                                     config.at("run").at("name").get<std::string>(), config));
  if (writes_files) init_logging(options.log_level, run->log_path());

  auto save_checkpoint = [&] {
    // The ranks' copies can only drift apart through a bug; catch that before it is saved.
    comm.check_same(state_checksum(), fmt::format("the training state at step {}", step));
    if (!writes_files) return;
    std::vector<float> params(static_cast<size_t>(n_params)), buffers(static_cast<size_t>(gpt.buffer_count()));
    ops.copy_to_host(params.data(), gpt.parameter_values(), n_params);
    ops.copy_to_host(m_host.data(), adam_m, n_params);
    ops.copy_to_host(v_host.data(), adam_v, n_params);
    if (gpt.buffer_count() > 0) ops.copy_to_host(buffers.data(), gpt.buffer_data(), gpt.buffer_count());
    CheckpointView ckpt;
    ckpt.step = step;
    ckpt.tokens_seen = tokens_seen;
    ckpt.config_json = config.dump();
    ckpt.source_revision = "";
    ckpt.params = views(gpt.params(), params);
    ckpt.adam_m = views(gpt.params(), m_host);
    ckpt.adam_v = views(gpt.params(), v_host);
    ckpt.buffers = views(gpt.buffers(), buffers);
    ckpt.trainer_state = {{"data", data->state()}};
    const auto path = write_checkpoint(run->checkpoint_dir(), ckpt, train_cfg.at("keep_last").get<int64_t>(),
                                       [&](Hdf5Writer& writer) { write_tokenizer(writer, tokenizer); });
    spdlog::info("checkpoint {}", path.string());
  };

  // Each rank scores its own validation batches (TaskData::validation); the sums are added over ranks, so
  // the result is that of one process scoring them all.
  auto validate_now = [&] {
    const bool answers = data->scores_answers();
    const EvalTotals local = evaluation_totals(gpt, val_batches, tokenizer, answers);
    std::vector<double> sums = {local.loss_sum,
                                static_cast<double>(local.tokens),
                                static_cast<double>(local.target_bytes),
                                static_cast<double>(local.correct),
                                static_cast<double>(local.labelled),
                                static_cast<double>(local.exact_windows),
                                static_cast<double>(local.answered_windows)};
    comm.sum(sums);
    const auto count = [&](size_t i) { return static_cast<int64_t>(sums[i]); };
    const EvalResult eval = summarize({sums[0], count(1), count(2), count(3), count(4), count(5), count(6)},
                                      spec.num_classes > 0, answers);
    nlohmann::json record = {{"step", step}, {"split", "val"}, {"loss", eval.loss}};
    if (spec.num_classes > 0) {
      record["accuracy"] = eval.accuracy;
      spdlog::info("step {}: val loss {:.4f}, accuracy {:.4f}", step, eval.loss, eval.accuracy);
    } else if (data->scores_answers()) {
      record["accuracy"] = eval.accuracy;
      record["exact_match"] = eval.exact_match;
      spdlog::info("step {}: val loss {:.4f}, answer accuracy {:.4f}, exact match {:.4f}", step, eval.loss,
                   eval.accuracy, eval.exact_match);
    } else {
      record["bits_per_byte"] = eval.bits_per_byte;
      spdlog::info("step {}: val loss {:.4f}, {:.4f} bits per byte", step, eval.loss, eval.bits_per_byte);
    }
    if (writes_files) run->append_metrics(record);
    return eval.loss;
  };

  TrainResult result;
  result.run_dir = run_path;
  // The mean over the step's scored targets: every token for LM, about 15% for MLM, one label per row for
  // a classifier (counted on the batches themselves, so padding rows weigh nothing).

  const double grad_clip = opt_cfg.at("grad_clip").get<double>();
  // Weight matrices always decay; embeddings, and norms and biases, only when configured; learned
  // temperatures never (they are not weights).
  const bool decay_embeddings = opt_cfg.at("decay_embeddings").get<bool>();
  const bool decay_norms_and_biases = opt_cfg.at("decay_norms_and_biases").get<bool>();
  auto decays = [&](const model::ParamInfo& p) {
    if (p.weight_decay) return true;
    if (p.name == "wte" || p.name == "wpe") return decay_embeddings;
    if (p.name.ends_with("log_beta")) return false;
    return decay_norms_and_biases;
  };
  const std::vector<model::ParamRange> adam_ranges = model::adamw_ranges(gpt.params(), decays);
  const bool skip_nan = train_cfg.at("on_nan") == "skip";
  const int64_t log_every = train_cfg.at("log_every").get<int64_t>();
  const int64_t eval_every = train_cfg.at("eval_every").get<int64_t>();
  const int64_t checkpoint_every = train_cfg.at("checkpoint_every").get<int64_t>();
  const bool interactive = writes_files && isatty(STDERR_FILENO) != 0;
  // Several ranks: the gradient sum in buckets, started as the last micro-batch's backward finishes each
  // range. On a GPU the gradients are device memory: NCCL sums them there, or they are staged through the
  // host (train/device_communicator.h); on the CPU the host communicator sums them in place.
  const std::unique_ptr<Communicator> device_sums =
      device_gradient_communicator(comm, ops, device.kind == DeviceKind::cuda, device.cuda_index, sharing,
                                   train_cfg.at("collective_timeout_s").get<double>());
  Communicator& gradient_comm = device_sums ? *device_sums : comm;
  std::optional<GradientBuckets> buckets;
  if (comm.world_size() > 1) {
    const auto bucket_floats =
        static_cast<int64_t>(train_cfg.at("allreduce_bucket_mb").get<double>() * 1e6 / sizeof(float));
    buckets.emplace(gradient_comm, gpt.gradients(), n_params, std::max<int64_t>(1, bucket_floats));
  }
  const model::GradientsReady on_gradients_ready = [&](int64_t offset, int64_t count) {
    buckets->ready(offset, count);
  };
  bool evaluated_last = false;
  while (step < total_steps) {
    const auto start = Clock::now();
    gpt.zero_gradients();
    model::LossSum loss;
    std::vector<ModelBatch> micro_batches;
    int64_t scored = 0;
    for (int64_t micro = 0; micro < grad_accum; ++micro) {
      micro_batches.push_back(data->next(step * grad_accum + micro));
      const ModelBatch& mb = micro_batches.back();
      if (spec.num_classes > 0)
        scored += std::count_if(mb.labels.begin(), mb.labels.end(), [](int32_t l) { return l >= 0; });
      else
        scored += std::count_if(mb.targets.begin(), mb.targets.end(), [](int32_t t) { return t >= 0; });
    }
    // The loss is the mean over the targets of the whole global step: the ranks' counts are summed first, so
    // ranks whose shards score different numbers of targets (MLM, padding) weigh each target equally.
    std::vector<double> step_scored = {static_cast<double>(scored)};
    comm.sum(step_scored);
    scored = static_cast<int64_t>(step_scored[0]);
    const float loss_scale = 1.f / static_cast<float>(std::max<int64_t>(1, scored));
    for (size_t micro = 0; micro < micro_batches.size(); ++micro) {
      const ModelBatch& mb = micro_batches[micro];
      // Dropout masks from (model seed, micro-batch index, first row of this rank's shard): a resumed run
      // draws the same ones, and ranks draw different ones for their rows.
      const uint64_t dropout_seed = spec.seed * 0x9e3779b97f4a7c15ULL +
                                    static_cast<uint64_t>(step * grad_accum + static_cast<int64_t>(micro)) +
                                    static_cast<uint64_t>(shard.rank * batch_size) * 0xbf58476d1ce4e5b9ULL;
      const bool last = micro + 1 == micro_batches.size();
      const model::LossSum l =
          gpt.forward_backward(mb.view(), loss_scale, dropout_seed,
                               buckets && last ? on_gradients_ready : model::GradientsReady{});
      loss.sum += l.sum;
    }
    if (buckets) buckets->finish();
    std::vector<double> step_loss = {loss.sum};
    comm.sum(step_loss);
    loss = {step_loss[0], scored};
    const double norm = ops.grad_norm(gpt.gradients(), n_params);
    if (!std::isfinite(loss.mean()) || !std::isfinite(norm)) {
      if (!skip_nan)
        fail("step {}: the loss ({}) or the gradient norm ({}) is not finite; nothing was updated or saved "
             "(train.on_nan = \"skip\" skips such steps)",
             step + 1, loss.mean(), norm);
      spdlog::warn("step {}: non-finite loss or gradient, step skipped", step + 1);
      ++step;
      continue;
    }
    const double lr = learning_rate(schedule, step);
    const float clip = grad_clip > 0.0 && norm > grad_clip ? static_cast<float>(grad_clip / norm) : 1.f;
    ++step;
    model::AdamWStep adam;
    adam.lr = static_cast<float>(lr);
    adam.beta1 = opt_cfg.at("beta1").get<float>();
    adam.beta2 = opt_cfg.at("beta2").get<float>();
    adam.eps = opt_cfg.at("eps").get<float>();
    adam.weight_decay = opt_cfg.at("weight_decay").get<float>();
    adam.step = step;
    adam.grad_scale = clip;
    gpt.adamw(adam_m, adam_v, adam_ranges, adam);
    tokens_seen += tokens_per_step;
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    result.steps.push_back({step, loss.mean(), lr, norm});
    // On a terminal, a progress line rewritten every step; the log lines below go to the log either way.
    if (interactive) {
      const double eta = seconds * static_cast<double>(total_steps - step);
      fmt::print(
          stderr,
          "\rstep {}/{}  loss {:.4f}  lr {:.3g}  grad norm {:.3f}  {:.0f} tokens/s  ETA {:.0f}:{:02.0f} ",
          step, total_steps, loss.mean(), lr, norm, static_cast<double>(tokens_per_step) / seconds,
          std::floor(eta / 60.0), std::fmod(eta, 60.0));
      std::fflush(stderr);
    }
    if (step % log_every == 0 || step == total_steps) {
      if (interactive) fmt::print(stderr, "\n");
      const double tokens_per_s = static_cast<double>(tokens_per_step) / seconds;
      if (writes_files)
        run->append_metrics({{"step", step},
                             {"split", "train"},
                             {"loss", loss.mean()},
                             {"lr", lr},
                             {"grad_norm", norm},
                             {"tokens_per_s", tokens_per_s},
                             {"ms_per_step", seconds * 1e3},
                             {"memory_bytes", ops.allocated_bytes()}});
      const double eta = seconds * static_cast<double>(total_steps - step);
      spdlog::info("step {}/{}: loss {:.4f}, lr {:.3g}, grad norm {:.3f}, {:.0f} tokens/s, ETA {:.0f} min {:02.0f} s",
                   step, total_steps, loss.mean(), lr, norm, tokens_per_s, std::floor(eta / 60.0),
                   std::fmod(eta, 60.0));
    }
    evaluated_last = false;
    if (step % eval_every == 0 || step == total_steps) {
      result.final_val_loss = validate_now();
      evaluated_last = true;
    }
    // Any rank's request stops every rank after the same step.
    std::vector<double> stop_votes = {stop_requested && stop_requested() ? 1.0 : 0.0};
    comm.sum(stop_votes);
    const bool stopping = stop_votes[0] > 0.0;
    if (step % checkpoint_every == 0 || step == total_steps || stopping) save_checkpoint();
    if (stopping) {
      result.interrupted = true;
      spdlog::info("stopped at step {} on request; resume with race-train --resume {}", step,
                   run_path.string());
      break;
    }
  }
  if (!evaluated_last && !result.interrupted && step == total_steps) result.final_val_loss = validate_now();
  result.last_step = step;
  return result;
}

}  // namespace race::train
