// Schema of the "model" config section and its conversion to a ModelSpec.
#include "model/model_config.h"

#include <set>

#include "core/error.h"

namespace race::model {

Schema model_schema() {
  return Schema::object(
      "The transformer.",
      {
          {"layers", Schema::integer(4, "Transformer blocks.").min(1).max(1024)},
          {"d_model", Schema::integer(256, "Width of the residual stream (C).").min(1)},
          {"heads", Schema::integer(4, "Attention heads; must divide d_model.").min(1)},
          {"mlp_hidden", Schema::integer(1024, "Hidden width of the GELU MLP.").min(1)},
          {"bias", Schema::boolean(true, "Biases in the linear layers.")},
          {"tie_embeddings", Schema::boolean(true, "Output projection shares the token embedding.")},
          {"positions", Schema::string("rope", "Position encoding.").one_of({"rope", "learned", "none"})},
          {"rope_base", Schema::number(10000.0, "RoPE frequency base.").min(1.0)},
          {"max_seq_len", Schema::integer(0, "Rows of the learned position table (0: the context).").min(0)},
          {"layernorm_eps", Schema::number(1e-5, "LayerNorm epsilon.").min(1e-12)},
          {"recompute", Schema::boolean(false, "Keep only each layer's input and re-run its forward "
                                               "before its backward (less memory, about 1/3 more compute).")},
          {"dropout", Schema::number(0.0, "Dropout on embeddings and residual branches (training only).")
                          .min(0.0)
                          .max(0.95)},
          {"seed", Schema::integer(0, "Seed of the initialisation and the RACE hyperplanes.").min(0)},
          {"attention",
           Schema::object(
               "Attention of every layer not listed in softmax_layers.",
               {
                   {"kind", Schema::string("race", "Attention kernel.").one_of({"race", "softmax"})},
                   {"tables", Schema::integer(3, "RACE hash tables L.").min(1).max(1024)},
                   {"bits", Schema::integer(3, "RACE hyperplanes per table P (2^P buckets).").min(1).max(12)},
                   {"estimator", Schema::string("bucket", "RACE estimator.").one_of({"bucket", "ratio"})},
                   {"beta", Schema::number(1.0, "RACE temperature (initial value when learned).").min(1e-6)},
                   {"learned_beta", Schema::boolean(true, "Learn a log-temperature per head.")},
                   {"planes_per_head", Schema::boolean(false, "Hyperplanes per head instead of shared.")},
                   {"eps", Schema::number(1e-6, "RACE denominator epsilon.").min(1e-30)},
                   {"window", Schema::integer(0, "Softmax sliding window (0: full attention).").min(0)},
               })},
          {"softmax_layers",
           Schema::array(Schema::integer(0, "Layer index.").min(0), nlohmann::json::array(),
                         "Layers that use softmax attention instead (a hybrid).")},
          {"softmax_window", Schema::integer(0, "Sliding window of softmax_layers (0: full).").min(0)},
          {"pooling", Schema::string("mean", "Classifier: mean of the real tokens' states, or the first "
                                             "token's (cls).")
                          .one_of({"mean", "cls"})},
      });
}

ModelSpec spec_from_config(const nlohmann::json& m, int64_t vocab_size, int64_t context) {
  ModelSpec spec;
  spec.vocab_size = vocab_size;
  spec.d_model = m.at("d_model").get<int64_t>();
  spec.heads = m.at("heads").get<int64_t>();
  spec.mlp_hidden = m.at("mlp_hidden").get<int64_t>();
  spec.bias = m.at("bias").get<bool>();
  spec.tie_embeddings = m.at("tie_embeddings").get<bool>();
  const std::string positions = m.at("positions").get<std::string>();
  spec.positions = positions == "rope" ? Positions::rope : positions == "learned" ? Positions::learned : Positions::none;
  spec.rope_base = m.at("rope_base").get<float>();
  spec.max_seq_len = m.at("max_seq_len").get<int64_t>() > 0 ? m.at("max_seq_len").get<int64_t>() : context;
  spec.layernorm_eps = m.at("layernorm_eps").get<float>();
  spec.seed = m.at("seed").get<uint64_t>();
  spec.cls_pooling = m.at("pooling") == "cls";
  spec.dropout = m.at("dropout").get<float>();
  spec.recompute = m.at("recompute").get<bool>();
  if (spec.d_model % spec.heads != 0)
    fail("model.heads: {} does not divide model.d_model {}", spec.heads, spec.d_model);

  const nlohmann::json& a = m.at("attention");
  AttentionSpec base;
  base.kind = a.at("kind") == "race" ? AttentionKind::race : AttentionKind::softmax;
  base.tables = a.at("tables").get<int>();
  base.bits = a.at("bits").get<int>();
  base.estimator = a.at("estimator") == "bucket" ? kernels::RaceEstimator::bucket : kernels::RaceEstimator::ratio;
  base.beta = a.at("beta").get<float>();
  base.learned_beta = a.at("learned_beta").get<bool>();
  base.planes_per_head = a.at("planes_per_head").get<bool>();
  base.eps = a.at("eps").get<float>();
  base.window = a.at("window").get<int64_t>();
  const int64_t layers = m.at("layers").get<int64_t>();
  spec.layers.assign(static_cast<size_t>(layers), base);
  std::set<int64_t> seen;
  const auto& softmax_layers = m.at("softmax_layers");
  for (size_t i = 0; i < softmax_layers.size(); ++i) {
    const int64_t l = softmax_layers[i].get<int64_t>();
    if (l >= layers) fail("model.softmax_layers[{}]: layer {} does not exist (model.layers = {})", i, l, layers);
    if (!seen.insert(l).second) fail("model.softmax_layers[{}]: layer {} is listed twice", i, l);
    AttentionSpec softmax;
    softmax.kind = AttentionKind::softmax;
    softmax.window = m.at("softmax_window").get<int64_t>();
    spec.layers[static_cast<size_t>(l)] = softmax;
  }
  validate(spec);
  return spec;
}

}  // namespace race::model
