// Loads a checkpoint into a GPT on the CPU and measures its language-model loss on a split.
#include "train/evaluation.h"

#include "core/error.h"
#include "model/cpu_ops.h"
#include "model/model_config.h"
#include "train/checkpoint.h"

namespace race::train {

CheckpointEvaluation evaluate_checkpoint(const EvalOptions& options) {
  std::filesystem::path path = options.checkpoint;
  if (std::filesystem::is_directory(path)) {
    const auto latest = latest_checkpoint(std::filesystem::exists(path / "checkpoints") ? path / "checkpoints" : path);
    if (!latest) fail("{}: no complete checkpoint found", path.string());
    path = *latest;
  }
  const Checkpoint ckpt = read_checkpoint(path);
  const nlohmann::json config =
      resolve(train_schema(), nlohmann::json::parse(ckpt.config_json), {}, path.string() + ": config");
  const auto& data_cfg = config.at("data");
  const std::filesystem::path data_path = options.data.value_or(data_cfg.at("path").get<std::string>());
  const int64_t context = data_cfg.at("context").get<int64_t>();
  const int64_t batch_size = data_cfg.at("batch_size").get<int64_t>();
  const int64_t windows = options.windows > 0 ? options.windows : data_cfg.at("val_windows").get<int64_t>();
  const LmBatchOptions batch_options{data_cfg.at("cross_documents").get<bool>(), data_cfg.at("packed").get<bool>()};

  const LmDataset data = LmDataset::open(data_path, options.split);
  const model::ModelSpec spec =
      model::spec_from_config(config.at("model"), data.tokenizer().vocab_size, context);
  model::CpuOps ops;
  model::Gpt gpt(ops, spec, batch_size, context);
  std::vector<TensorSpec> params, buffers;
  for (const auto& p : gpt.params()) params.push_back({p.name, p.shape});
  for (const auto& b : gpt.buffers()) buffers.push_back({b.name, b.shape});
  check_compatible(ckpt, params, buffers,
                   "checkpoint " + path.string() + " with data " + data_path.string());
  auto load = [&](const std::vector<NamedTensor>& tensors, const std::vector<model::ParamInfo>& infos, float* device,
                  int64_t count) {
    std::vector<float> host(static_cast<size_t>(count));
    for (const auto& info : infos)
      for (const auto& t : tensors)
        if (t.name == info.name) std::copy(t.values.begin(), t.values.end(), host.begin() + info.offset);
    if (count > 0) ops.copy_from_host(device, host.data(), count);
  };
  load(ckpt.params, gpt.params(), gpt.parameters(), gpt.parameter_count());
  load(ckpt.buffers, gpt.buffers(), gpt.buffer_data(), gpt.buffer_count());

  CheckpointEvaluation out;
  out.result = evaluate_lm(gpt, validation_batches(data, context, batch_size, windows, batch_options),
                           data.tokenizer());
  out.checkpoint = path;
  out.data = data_path;
  out.split = options.split;
  out.step = ckpt.step;
  out.windows = windows;
  return out;
}

}  // namespace race::train
