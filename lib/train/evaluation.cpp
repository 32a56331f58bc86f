// Loads a checkpoint into a GPT on the chosen device and measures its language-model loss on a split.
#include "train/evaluation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "core/error.h"
#include "model/model_config.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "train/tokenizer.h"

namespace race::train {

namespace {

std::filesystem::path resolve_checkpoint(const std::filesystem::path& given) {
  if (!std::filesystem::is_directory(given)) return given;
  const auto dir = std::filesystem::exists(given / "checkpoints") ? given / "checkpoints" : given;
  const auto latest = latest_checkpoint(dir);
  if (!latest) fail("{}: no complete checkpoint found", given.string());
  return *latest;
}

// Copies the checkpoint's parameters and buffers into `gpt`, after checking they match its spec.
void load_into(model::Gpt& gpt, model::Ops& ops, const Checkpoint& ckpt, const std::string& source) {
  std::vector<TensorSpec> params, buffers;
  for (const auto& p : gpt.params()) params.push_back({p.name, p.shape});
  for (const auto& b : gpt.buffers()) buffers.push_back({b.name, b.shape});
  check_compatible(ckpt, params, buffers, source);
  auto load = [&](const std::vector<NamedTensor>& tensors, const std::vector<model::ParamInfo>& infos,
                  float* device, int64_t count) {
    std::vector<float> host(static_cast<size_t>(count));
    for (const auto& info : infos)
      for (const auto& t : tensors)
        if (t.name == info.name) std::copy(t.values.begin(), t.values.end(), host.begin() + info.offset);
    if (count > 0) ops.copy_from_host(device, host.data(), count);
  };
  load(ckpt.params, gpt.params(), gpt.parameters(), gpt.parameter_count());
  load(ckpt.buffers, gpt.buffers(), gpt.buffer_data(), gpt.buffer_count());
}

}  // namespace

CheckpointEvaluation evaluate_checkpoint(const EvalOptions& options) {
  const std::filesystem::path path = resolve_checkpoint(options.checkpoint);
  const Checkpoint ckpt = read_checkpoint(path);
  const nlohmann::json config =
      resolve(train_schema(), nlohmann::json::parse(ckpt.config_json), {}, path.string() + ": config");
  nlohmann::json data_config = config;
  if (options.data) data_config["data"]["path"] = options.data->string();
  if (options.context < 0) fail("race-eval: --context must be at least 1 (0: the checkpoint's), got {}", options.context);
  if (options.batch_size < 0)
    fail("race-eval: --batch-size must be at least 1 (0: the checkpoint's), got {}", options.batch_size);
  const int64_t trained_context = config.at("data").at("context").get<int64_t>();
  if (options.context > 0) {
    const nlohmann::json& model = config.at("model");
    const int64_t table_rows = model.at("max_seq_len").get<int64_t>() > 0 ? model.at("max_seq_len").get<int64_t>()
                                                                          : trained_context;
    if (config.at("task") == "classify")
      fail("race-eval: --context does not apply to classification, whose rows have the dataset's length");
    if (model.at("positions") == "learned" && options.context > table_rows)
      fail("race-eval: --context {} is longer than the {} rows of the model's learned position table; only "
           "models with rope or no positions run beyond the context they were built for",
           options.context, table_rows);
    data_config["data"]["context"] = options.context;
  }
  if (options.batch_size > 0) data_config["data"]["batch_size"] = options.batch_size;
  const std::filesystem::path data_path = data_config.at("data").at("path").get<std::string>();
  const int64_t windows = options.windows > 0 ? options.windows : config.at("data").at("val_windows").get<int64_t>();
  const std::unique_ptr<TaskData> data = TaskData::open(data_config);
  // The model as trained: a learned position table keeps its rows whatever context is evaluated.
  nlohmann::json model_config = data_config;
  if (model_config["model"]["max_seq_len"].get<int64_t>() == 0)
    model_config["model"]["max_seq_len"] = std::max(trained_context, data->context());
  const ComputeDevice device = open_device(options.device, "--device", 0, options.precision, "--precision");
  model::Ops& ops = *device.ops;
  model::ModelSpec spec = model_spec(model_config, *data);
  spec.logits_block_bytes = device.logits_block_bytes;
  // Checked before allocating, as race-train does: a long --context could otherwise take all the memory.
  const int64_t needed = model::plan_memory(spec, data->batch_size(), data->context(), ops.operand_type())
                             .bytes(data->batch_size(), data->context());
  if (static_cast<double>(needed) > device.budget_bytes(1))
    fail("race-eval: --context {} x --batch-size {} needs {:.2f} GB for the model, more than {} ({:.2f} GB); "
         "lower --batch-size or --context",
         data->context(), data->batch_size(), static_cast<double>(needed) / 1e9, device.budget_description(1),
         device.budget_bytes(1) / 1e9);
  model::Gpt gpt(ops, spec, data->batch_size(), data->context());
  load_into(gpt, ops, ckpt, "checkpoint " + path.string() + " with data " + data_path.string());

  CheckpointEvaluation out;
  out.result = evaluate(gpt, data->validation(options.split, windows), data->tokenizer(), data->scores_answers());
  out.scores_answers = data->scores_answers();
  out.context = data->context();
  out.task = config.at("task").get<std::string>();
  out.checkpoint = path;
  out.data = data_path;
  out.split = options.split;
  out.step = ckpt.step;
  out.windows = windows;
  return out;
}

Generation generate(const GenerateOptions& options) {
  if (options.max_new_tokens < 1) fail("generate: --max-new-tokens must be >= 1, got {}", options.max_new_tokens);
  if (!(options.temperature >= 0.0)) fail("generate: --temperature must be >= 0, got {}", options.temperature);
  if (options.top_k < 0) fail("generate: --top-k must be >= 0, got {}", options.top_k);
  const std::filesystem::path path = resolve_checkpoint(options.checkpoint);
  Tokenizer tokenizer;
  const Checkpoint ckpt = read_checkpoint(path, [&](const Hdf5File& file) { tokenizer = read_tokenizer(file); });
  const nlohmann::json config =
      resolve(train_schema(), nlohmann::json::parse(ckpt.config_json), {}, path.string() + ": config");
  if (config.at("task") != "lm")
    fail("generate: {} is a \"{}\" model (a bidirectional encoder); only task \"lm\" models generate",
         path.string(), config.at("task").get<std::string>());
  std::vector<int32_t> prompt = tokenizer.encode(options.prompt);
  if (prompt.empty()) {
    if (tokenizer.bos_id < 0) fail("generate: an empty prompt needs a tokenizer with a bos token");
    prompt.push_back(tokenizer.bos_id);
  }
  const int64_t total = static_cast<int64_t>(prompt.size()) + options.max_new_tokens;
  model::ModelSpec spec =
      model::spec_from_config(config.at("model"), tokenizer.vocab_size, config.at("data").at("context").get<int64_t>());
  const ComputeDevice device = open_device(options.device, "--device", 0, options.precision, "--precision");
  model::Ops& ops = *device.ops;
  model::Gpt gpt(ops, spec, 1, 1);
  load_into(gpt, ops, ckpt, "checkpoint " + path.string());
  gpt.start_decoding(total);

  const int64_t V = tokenizer.vocab_size;
  const std::vector<int32_t> specials = tokenizer.special_ids();
  std::mt19937_64 rng(options.seed);
  std::vector<float> logits(static_cast<size_t>(V));
  const float* device_logits = nullptr;
  for (const int32_t t : prompt) device_logits = gpt.decode_step(t);
  Generation out;
  out.checkpoint = path;
  out.step = ckpt.step;
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    ops.copy_to_host(logits.data(), device_logits, V);
    // Special tokens (pad, mask, ...) are never sampled: they are not text.
    for (const int32_t s : specials) logits[static_cast<size_t>(s)] = -std::numeric_limits<float>::infinity();
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    int32_t next = order[0];
    if (options.temperature > 0.0) {
      const int64_t keep = options.top_k > 0 ? std::min<int64_t>(options.top_k, V) : V;
      std::vector<double> weights;
      for (int64_t j = 0; j < keep; ++j)
        weights.push_back(std::exp((logits[order[j]] - logits[order[0]]) / options.temperature));
      std::discrete_distribution<int64_t> pick(weights.begin(), weights.end());
      next = order[static_cast<size_t>(pick(rng))];
    }
    out.tokens.push_back(next);
    if (i + 1 < options.max_new_tokens) device_logits = gpt.decode_step(next);
  }
  out.text = tokenizer.decode(out.tokens);
  return out;
}

}  // namespace race::train
