// GPT forward and backward over Ops: parameter layout, initialisation, the activation plan, and the
// hand-written passes (see gpt.h for the equations).
#include "model/gpt.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"

namespace race::model {

void validate(const ModelSpec& s) {
  if (s.vocab_size < 2) fail("model: vocab_size must be >= 2, got {}", s.vocab_size);
  if (s.d_model < 1) fail("model: d_model must be >= 1, got {}", s.d_model);
  if (s.heads < 1 || s.d_model % s.heads != 0)
    fail("model: heads must divide d_model ({}), got {}", s.d_model, s.heads);
  if (s.positions == Positions::rope && (s.d_model / s.heads) % 2 != 0)
    fail("model: RoPE needs an even head dimension, got d_model / heads = {}", s.d_model / s.heads);
  if (s.mlp_hidden < 1) fail("model: mlp_hidden must be >= 1, got {}", s.mlp_hidden);
  if (s.logits_block_bytes < 1) fail("model: logits_block_bytes must be >= 1, got {}", s.logits_block_bytes);
  if (s.max_seq_len < 1) fail("model: max_seq_len must be >= 1, got {}", s.max_seq_len);
  if (s.layers.empty()) fail("model: at least one layer is needed");
  if (s.num_classes < 0) fail("model: num_classes must be >= 0, got {}", s.num_classes);
  if (s.num_classes > 0 && s.causal)
    fail("model: a classifier reads the whole sequence: it must not be causal");
  if (!(s.layernorm_eps > 0.f)) fail("model: layernorm_eps must be > 0, got {}", s.layernorm_eps);
  if (!(s.dropout >= 0.f && s.dropout < 1.f)) fail("model: dropout must be in [0, 1), got {}", s.dropout);
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const AttentionSpec& a = s.layers[l];
    if (a.kind == AttentionKind::softmax && a.window < 0)
      fail("model: layers[{}].window must be >= 0, got {}", l, a.window);
    if (a.kind == AttentionKind::race && !(a.beta > 0.f))
      fail("model: layers[{}].beta must be > 0, got {}", l, a.beta);
  }
}

// Per-layer parameter pointers (device) and saved activations.
struct Gpt::Layer {
  const AttentionSpec* attention = nullptr;
  float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ln2_w, *ln2_b, *fc_w, *fc_b, *fc2_w, *fc2_b;
  float *log_beta = nullptr, *planes = nullptr;
  float *d_ln1_w, *d_ln1_b, *d_qkv_w, *d_qkv_b, *d_proj_w, *d_proj_b, *d_ln2_w, *d_ln2_b, *d_fc_w, *d_fc_b,
      *d_fc2_w, *d_fc2_b, *d_log_beta = nullptr;
  float* beta = nullptr;  // (H) exp(log_beta), or the fixed temperature
  // Saved for the backward.
  // What only the layer's products and attention read (ln1, q, k, v, att, att_rows, ln2, gelu) is in the
  // Ops's operand type.
  float* x_in;                  // (B*T, C) residual stream entering the layer
  OperandOut ln1;               // (B*T, C)
  float *ln1_mean, *ln1_rstd;   // (B*T), (B*T)
  OperandOut q, k, v;           // (B, H, T, D), q and k after RoPE
  OperandOut att;               // (B, H, T, D)
  float* lse = nullptr;         // softmax: (B, H, T)
  OperandOut att_rows;          // (B*T, C)
  float* x_mid;                 // (B*T, C) after the attention residual
  OperandOut ln2;               // (B*T, C)
  float *ln2_mean, *ln2_rstd;   // (B*T), (B*T)
  float* fc;                    // (B*T, M) before the GELU
  OperandOut gelu;              // (B*T, M)
};

// Generation state and one token's activations.
struct Gpt::Decoder {
  int64_t max_tokens = 0, position = 0;
  std::vector<float*> key_sums, value_sums;  // RACE layers: (H, S), (H, S, D); null for softmax layers
  std::vector<float*> keys, values;          // softmax layers: (H, capacity, D); null for RACE layers
  std::vector<int64_t> capacity;
  int32_t *token = nullptr, *position_id = nullptr;  // (1)
  float *x, *qkv, *q, *k, *v, *att, *mid, *fc, *logits, *ln_mean, *ln_rstd;
  OperandOut ln, att_rows, gelu;  // (C), (C), (M) in the operand type
};

Gpt::~Gpt() = default;

namespace {

// Parameters and buffers of a spec, in arena order; the offsets where each layer's parameters begin, then
// where the final LayerNorm's begin.
struct ParameterLayout {
  std::vector<ParamInfo> params, buffers;
  int64_t param_count = 0, buffer_count = 0;
  std::vector<int64_t> layer_param_begin;
};

ParameterLayout parameter_layout(const ModelSpec& spec) {
  const int64_t C = spec.d_model, M = spec.mlp_hidden, V = spec.vocab_size, H = spec.heads, D = C / H;
  ParameterLayout out;
  auto add = [](std::vector<ParamInfo>& list, int64_t& total, std::string name, std::vector<int64_t> shape,
                bool decay) {
    int64_t size = 1;
    for (const int64_t d : shape) size *= d;
    list.push_back({std::move(name), std::move(shape), total, size, decay});
    total += size;
  };
  auto param = [&](std::string name, std::vector<int64_t> shape, bool decay) {
    add(out.params, out.param_count, std::move(name), std::move(shape), decay);
  };
  param("wte", {V, C}, false);
  if (spec.positions == Positions::learned) param("wpe", {spec.max_seq_len, C}, false);
  for (size_t l = 0; l < spec.layers.size(); ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    const AttentionSpec& a = spec.layers[l];
    out.layer_param_begin.push_back(out.param_count);
    param(p + "ln1.weight", {C}, false);
    param(p + "ln1.bias", {C}, false);
    param(p + "attn.qkv.weight", {3 * C, C}, true);
    if (spec.bias) param(p + "attn.qkv.bias", {3 * C}, false);
    param(p + "attn.proj.weight", {C, C}, true);
    if (spec.bias) param(p + "attn.proj.bias", {C}, false);
    if (a.kind == AttentionKind::race && a.learned_beta) param(p + "attn.log_beta", {H}, false);
    param(p + "ln2.weight", {C}, false);
    param(p + "ln2.bias", {C}, false);
    param(p + "mlp.fc.weight", {M, C}, true);
    if (spec.bias) param(p + "mlp.fc.bias", {M}, false);
    param(p + "mlp.proj.weight", {C, M}, true);
    if (spec.bias) param(p + "mlp.proj.bias", {C}, false);
    if (a.kind == AttentionKind::race) {
      std::vector<int64_t> shape = {a.tables, a.bits, D};
      if (a.planes_per_head) shape.insert(shape.begin(), H);
      add(out.buffers, out.buffer_count, p + "attn.planes", shape, false);
    }
  }
  out.layer_param_begin.push_back(out.param_count);
  param("lnf.weight", {C}, false);
  param("lnf.bias", {C}, false);
  if (spec.num_classes > 0) {
    param("classifier.weight", {spec.num_classes, C}, true);
    param("classifier.bias", {spec.num_classes}, false);
  } else if (!spec.tie_embeddings) {
    param("lm_head.weight", {V, C}, true);
  }
  return out;
}

void check_shape(const ModelSpec& spec, int64_t batch, int64_t seq_len) {
  validate(spec);
  if (batch < 1 || seq_len < 1) fail("model: batch and seq_len must be >= 1, got {} and {}", batch, seq_len);
  if (spec.positions == Positions::learned && seq_len > spec.max_seq_len)
    fail("model: seq_len {} exceeds max_seq_len {} of the learned position table", seq_len, spec.max_seq_len);
}

// The parameters that large products read, whose operand-type copies weight_copies lays out.
bool product_weight(const ModelSpec& spec, const std::string& name) {
  if (name.ends_with("attn.qkv.weight") || name.ends_with("attn.proj.weight") ||
      name.ends_with("mlp.fc.weight") || name.ends_with("mlp.proj.weight"))
    return true;
  if (spec.num_classes > 0) return false;  // the classifier's small head multiplies the fp32 weights
  return name == (spec.tie_embeddings ? "wte" : "lm_head.weight");
}

}  // namespace

// Each copy starts on a 16-byte boundary, whatever the parameter arena's offsets: cuBLASLt's tensor-core
// kernels want aligned operands.
std::vector<Gpt::WeightCopy> Gpt::weight_copies(const ModelSpec& spec, const std::vector<ParamInfo>& params,
                                                int64_t* total) {
  std::vector<WeightCopy> copies;
  int64_t end = 0;
  for (const ParamInfo& p : params) {
    if (!product_weight(spec, p.name)) continue;
    const int64_t start = (end + 7) / 8 * 8;
    copies.push_back({p.offset, p.size, start});
    end = start + p.size;
  }
  *total = end;
  return copies;
}

namespace {

// Rows of the vocabulary projection computed at a time: spec.logits_block_bytes of logits, at least one row.
int64_t logits_block_rows(const ModelSpec& spec, int64_t rows) {
  return std::clamp<int64_t>(spec.logits_block_bytes / (spec.vocab_size * int64_t{sizeof(float)}), 1, rows);
}

}  // namespace

int64_t MemoryPlan::bytes(int64_t batch, int64_t seq_len) const {
  const int64_t f = sizeof(float);
  return (2 * parameters + buffers) * f + weight_operand_bytes + bytes_per_token() * batch * seq_len +
         per_row_bytes * batch + fixed_bytes;
}

// Mirrors the constructor's allocations; test_gpt checks that the two agree byte for byte.
MemoryPlan plan_memory(const ModelSpec& spec, int64_t batch, int64_t seq_len, ElementType operands) {
  check_shape(spec, batch, seq_len);
  const int64_t C = spec.d_model, M = spec.mlp_hidden, H = spec.heads, f = sizeof(float);
  const int64_t e = element_bytes(operands);
  const bool copies = operands != ElementType::fp32;  // fp32 operands are the fp32 buffers themselves
  const ParameterLayout layout = parameter_layout(spec);
  MemoryPlan plan;
  plan.parameters = layout.param_count;
  plan.buffers = layout.buffer_count;
  if (copies) {
    int64_t copied = 0;
    Gpt::weight_copies(spec, layout.params, &copied);
    plan.weight_operand_bytes = copied * e;
  }
  // tokens, targets, positions, segment ids (int32) and the key mask (one byte)
  plan.batch_bytes_per_token = 4 * int64_t{sizeof(int32_t)} + 1;
  plan.per_row_bytes = int64_t{sizeof(int32_t)};  // labels
  if (spec.num_classes > 0) plan.per_row_bytes += (2 * C + spec.num_classes) * f;
  int64_t activations = 0, operand_activations = 0;  // floats and operand elements per token
  for (size_t l = 0; l < spec.layers.size(); ++l) {
    if (spec.layers[l].kind == AttentionKind::race) plan.fixed_bytes += H * f;  // temperatures
    // x_mid, fc and two LayerNorms' mean and rstd in fp32; ln1, q, k, v, att, att_rows, ln2 and gelu as
    // operands. With recomputation the layers share the first layer's set.
    if (!spec.recompute || l == 0) {
      activations += C + M + 4;
      operand_activations += 7 * C + M;
    }
    if (spec.layers[l].kind == AttentionKind::softmax) activations += H;  // log-sum-exp rows
  }
  const auto layers = static_cast<int64_t>(spec.layers.size());
  activations += C * (layers + 1) + 2;  // the residual stream between layers, the final LayerNorm's statistics
  operand_activations += C;             // the final LayerNorm's output
  plan.activation_bytes_per_token = activations * f + operand_activations * e;
  // qkv and its gradient, the gradient rows, two MLP hidden buffers, the residual gradient in fp32; dq, dk,
  // dv and the heads' gradient as operands
  plan.scratch_bytes_per_token = (8 * C + 2 * M) * f + 4 * C * e;
  plan.fixed_bytes += H * f;  // the learned temperatures' gradient
  const int64_t logits_block = logits_block_rows(spec, batch * seq_len) * spec.vocab_size;
  plan.fixed_bytes += logits_block * f;
  // The block's gradient, for a language model's head; fp32 writes it over the logits.
  if (copies && spec.num_classes == 0) plan.fixed_bytes += logits_block * e;
  return plan;
}

Gpt::Gpt(Ops& ops, ModelSpec spec, int64_t batch, int64_t seq_len)
    : ops_(ops), spec_(std::move(spec)), batch_(batch), seq_len_(seq_len), rows_(batch * seq_len) {
  const ElementType operand_type = ops_.operand_type();
  plan_ = plan_memory(spec_, batch, seq_len, operand_type);
  const int64_t C = spec_.d_model, M = spec_.mlp_hidden, V = spec_.vocab_size, H = spec_.heads;
  head_dim_ = C / H;
  ParameterLayout layout = parameter_layout(spec_);
  params_ = std::move(layout.params);
  buffers_ = std::move(layout.buffers);
  param_count_ = layout.param_count;
  buffer_count_ = layout.buffer_count;
  layer_param_begin_ = std::move(layout.layer_param_begin);

  params_data_ = ops_.allocate(param_count_);
  grads_data_ = ops_.allocate(param_count_);
  buffers_data_ = buffer_count_ > 0 ? ops_.allocate(buffer_count_) : nullptr;
  if (operand_type != ElementType::fp32) {
    int64_t copied = 0;
    weight_copies_ = weight_copies(spec_, params_, &copied);
    weight_operands_ = ops_.allocate_operands(copied);
  }

  tokens_ = ops_.allocate_ints(rows_);
  targets_ = ops_.allocate_ints(rows_);
  positions_ = ops_.allocate_ints(rows_);
  segments_ = ops_.allocate_ints(rows_);
  key_mask_ = ops_.allocate_bytes(rows_);
  labels_ = ops_.allocate_ints(batch_);
  if (spec_.num_classes > 0) {
    pooled_ = ops_.allocate(batch_ * spec_.d_model), d_pooled_ = ops_.allocate(batch_ * spec_.d_model);
    class_logits_ = ops_.allocate(batch_ * spec_.num_classes);
  }

  // Activations: what each layer keeps for its backward (plan_memory counts them per token).
  const int64_t BT = rows_, heads_size = batch_ * H * seq_len_ * head_dim_;
  layers_.resize(spec_.layers.size());
  embed_ = ops_.allocate(BT * C);
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const std::string p = "layers." + std::to_string(l) + ".";
    L.attention = &spec_.layers[l];
    L.ln1_w = param(p + "ln1.weight"), L.ln1_b = param(p + "ln1.bias");
    L.qkv_w = param(p + "attn.qkv.weight"), L.qkv_b = spec_.bias ? param(p + "attn.qkv.bias") : nullptr;
    L.proj_w = param(p + "attn.proj.weight"), L.proj_b = spec_.bias ? param(p + "attn.proj.bias") : nullptr;
    L.ln2_w = param(p + "ln2.weight"), L.ln2_b = param(p + "ln2.bias");
    L.fc_w = param(p + "mlp.fc.weight"), L.fc_b = spec_.bias ? param(p + "mlp.fc.bias") : nullptr;
    L.fc2_w = param(p + "mlp.proj.weight"), L.fc2_b = spec_.bias ? param(p + "mlp.proj.bias") : nullptr;
    L.d_ln1_w = grad(p + "ln1.weight"), L.d_ln1_b = grad(p + "ln1.bias");
    L.d_qkv_w = grad(p + "attn.qkv.weight"), L.d_qkv_b = spec_.bias ? grad(p + "attn.qkv.bias") : nullptr;
    L.d_proj_w = grad(p + "attn.proj.weight"), L.d_proj_b = spec_.bias ? grad(p + "attn.proj.bias") : nullptr;
    L.d_ln2_w = grad(p + "ln2.weight"), L.d_ln2_b = grad(p + "ln2.bias");
    L.d_fc_w = grad(p + "mlp.fc.weight"), L.d_fc_b = spec_.bias ? grad(p + "mlp.fc.bias") : nullptr;
    L.d_fc2_w = grad(p + "mlp.proj.weight"), L.d_fc2_b = spec_.bias ? grad(p + "mlp.proj.bias") : nullptr;
    if (L.attention->kind == AttentionKind::race) {
      for (const ParamInfo& b : buffers_)
        if (b.name == p + "attn.planes") L.planes = buffers_data_ + b.offset;
      L.beta = ops_.allocate(H);
      if (L.attention->learned_beta) {
        L.log_beta = param(p + "attn.log_beta");
        L.d_log_beta = grad(p + "attn.log_beta");
      }
    }
    // With recomputation every layer shares one set (the backward re-runs a layer's forward first);
    // lse stays per layer only for its size: softmax needs it, and it is small.
    if (spec_.recompute && l > 0) {
      const Layer& first = layers_[0];
      L.ln1 = first.ln1, L.ln1_mean = first.ln1_mean, L.ln1_rstd = first.ln1_rstd;
      L.q = first.q, L.k = first.k, L.v = first.v, L.att = first.att, L.att_rows = first.att_rows;
      L.x_mid = first.x_mid, L.ln2 = first.ln2, L.ln2_mean = first.ln2_mean, L.ln2_rstd = first.ln2_rstd;
      L.fc = first.fc, L.gelu = first.gelu;
    } else {
      L.ln1 = ops_.allocate_operands(BT * C), L.ln1_mean = ops_.allocate(BT), L.ln1_rstd = ops_.allocate(BT);
      L.q = ops_.allocate_operands(heads_size), L.k = ops_.allocate_operands(heads_size);
      L.v = ops_.allocate_operands(heads_size), L.att = ops_.allocate_operands(heads_size);
      L.att_rows = ops_.allocate_operands(BT * C);
      L.x_mid = ops_.allocate(BT * C);
      L.ln2 = ops_.allocate_operands(BT * C), L.ln2_mean = ops_.allocate(BT), L.ln2_rstd = ops_.allocate(BT);
      L.fc = ops_.allocate(BT * M), L.gelu = ops_.allocate_operands(BT * M);
    }
    if (L.attention->kind == AttentionKind::softmax) {
      L.lse = ops_.allocate(batch_ * H * seq_len_);
    }
  }
  // Residual stream: layer l + 1 reads layer l's output; the last output feeds the final LayerNorm.
  for (size_t l = 0; l < layers_.size(); ++l) layers_[l].x_in = l == 0 ? embed_ : ops_.allocate(BT * C);
  final_ = ops_.allocate(BT * C);
  lnf_ = ops_.allocate_operands(BT * C), lnf_mean_ = ops_.allocate(BT), lnf_rstd_ = ops_.allocate(BT);

  qkv_ = ops_.allocate(BT * 3 * C);
  d_qkv_ = ops_.allocate(BT * 3 * C);
  d_rows_ = ops_.allocate(BT * C);
  d_hidden_a_ = ops_.allocate(BT * M), d_hidden_b_ = ops_.allocate(BT * M);
  dq_ = ops_.allocate_operands(heads_size), dk_ = ops_.allocate_operands(heads_size);
  dv_ = ops_.allocate_operands(heads_size), d_heads_ = ops_.allocate_operands(heads_size);
  residual_grad_ = ops_.allocate(BT * C);
  dbeta_ = ops_.allocate(H);
  head_block_rows_ = logits_block_rows(spec_, BT);
  logits_ = ops_.allocate(head_block_rows_ * V);
  // Operand views of fp32 scratch, which holds as many operands or more: d_qkv_ for the qkv projection's
  // output gradient, its last third for a cast of the residual stream's gradient (the first third may hold
  // a dropout's output that the cast reads), d_hidden_b_ for the fc projection's.
  d_qkv_operands_ = OperandOut(d_qkv_, operand_type);
  dy_operands_ = OperandOut(d_qkv_ + 2 * BT * C, operand_type);
  d_hidden_operands_ = OperandOut(d_hidden_b_, operand_type);
  if (operand_type == ElementType::fp32)
    dlogits_ = logits_;
  else if (spec_.num_classes == 0)
    dlogits_ = ops_.allocate_operands(head_block_rows_ * V);
}

Operand Gpt::weight(const float* w) const {
  if (weight_copies_.empty()) return w;
  for (const WeightCopy& c : weight_copies_)
    if (params_data_ + c.param_offset == w) return weight_operands_.at(c.copy_offset);
  fail("model: no operand copy of the parameter at offset {}", w - params_data_);
}

void Gpt::update_weight_operands() {
  if (weight_operands_current_) return;
  for (const WeightCopy& c : weight_copies_)
    ops_.to_operands(weight_operands_.at(c.copy_offset), params_data_ + c.param_offset, c.count);
  weight_operands_current_ = true;
}

void Gpt::adamw(float* m, float* v, std::vector<ParamRange> ranges, const AdamWStep& step) {
  size_t written = 0;
  for (ParamRange& r : ranges)
    for (const WeightCopy& c : weight_copies_)
      if (r.offset == c.param_offset && r.count == c.count) {
        r.copy = weight_operands_.at(c.copy_offset);
        ++written;
      }
  ops_.adamw(params_data_, grads_data_, m, v, ranges, step);
  weight_operands_current_ = written == weight_copies_.size();
}

Operand Gpt::product_input(const float* x, int64_t count) {
  if (ops_.operand_type() == ElementType::fp32) return x;
  ops_.to_operands(dy_operands_, x, count);
  return dy_operands_;
}

float* Gpt::param(const std::string& name) {
  for (const ParamInfo& p : params_)
    if (p.name == name) return params_data_ + p.offset;
  fail("model: no parameter named {}", name);
}

float* Gpt::grad(const std::string& name) {
  for (const ParamInfo& p : params_)
    if (p.name == name) return grads_data_ + p.offset;
  fail("model: no parameter named {}", name);
}

void Gpt::initialize() {
  weight_operands_current_ = false;
  std::mt19937_64 rng(spec_.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<float> host(static_cast<size_t>(param_count_), 0.f);
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(spec_.layers.size()));
  for (const ParamInfo& p : params_) {
    float* values = host.data() + p.offset;
    const bool norm_weight =
        p.name.ends_with("ln1.weight") || p.name.ends_with("ln2.weight") || p.name == "lnf.weight";
    const bool residual_projection =
        p.name.ends_with("attn.proj.weight") || p.name.ends_with("mlp.proj.weight");
    double std_dev = 0.02;
    if (p.name == "wpe") std_dev = 0.01;
    if (residual_projection) std_dev = residual_std;
    for (int64_t i = 0; i < p.size; ++i) {
      if (norm_weight)
        values[i] = 1.f;
      else if (p.name.ends_with("bias"))
        values[i] = 0.f;
      else if (p.name.ends_with("log_beta"))
        values[i] = 0.f;  // set per layer below
      else
        values[i] = static_cast<float>(std_dev * normal(rng));
    }
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    const AttentionSpec& a = spec_.layers[l];
    if (a.kind != AttentionKind::race || !a.learned_beta) continue;
    for (const ParamInfo& p : params_)
      if (p.name == "layers." + std::to_string(l) + ".attn.log_beta")
        std::fill_n(host.data() + p.offset, p.size, std::log(a.beta));
  }
  ops_.copy_from_host(params_data_, host.data(), param_count_);

  // Hyperplanes: frozen, N(0, 1), each layer from its own stream so adding a layer leaves the others.
  std::vector<float> planes(static_cast<size_t>(buffer_count_));
  for (const ParamInfo& b : buffers_) {
    std::mt19937_64 layer_rng(spec_.seed ^ (0x9e3779b97f4a7c15ULL * (std::hash<std::string>{}(b.name) | 1)));
    for (int64_t i = 0; i < b.size; ++i)
      planes[static_cast<size_t>(b.offset + i)] = static_cast<float>(normal(layer_rng));
  }
  if (buffer_count_ > 0) ops_.copy_from_host(buffers_data_, planes.data(), buffer_count_);
  zero_gradients();
}

void Gpt::zero_gradients() { ops_.fill(grads_data_, 0.f, param_count_); }

void Gpt::upload(const Batch& batch) {
  RACE_CHECK(batch.tokens != nullptr && batch.targets != nullptr, "model: a batch needs tokens and targets");
  ops_.copy_ints_from_host(tokens_, batch.tokens, rows_);
  ops_.copy_ints_from_host(targets_, batch.targets, rows_);
  if (batch.positions != nullptr) {
    ops_.copy_ints_from_host(positions_, batch.positions, rows_);
  } else {
    std::vector<int32_t> positions(static_cast<size_t>(rows_));
    for (int64_t i = 0; i < rows_; ++i)
      positions[static_cast<size_t>(i)] = static_cast<int32_t>(i % seq_len_);
    ops_.copy_ints_from_host(positions_, positions.data(), rows_);
  }
  has_segments_ = batch.segment_ids != nullptr;
  if (has_segments_) ops_.copy_ints_from_host(segments_, batch.segment_ids, rows_);
  has_key_mask_ = batch.key_mask != nullptr;
  if (has_key_mask_) ops_.copy_bytes_from_host(key_mask_, batch.key_mask, rows_);
  if (spec_.num_classes > 0) {
    RACE_CHECK(batch.labels != nullptr, "model: a classifier batch needs labels");
    for (int64_t b = 0; b < batch_; ++b)
      if (batch.labels[b] >= spec_.num_classes)
        fail("model: label {} of row {} is not below num_classes {}", batch.labels[b], b, spec_.num_classes);
    ops_.copy_ints_from_host(labels_, batch.labels, batch_);
  }
}

uint64_t Gpt::dropout_site(int64_t layer, int site) const {
  return dropout_seed_ ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(3 * (layer + 1) + site));
}

// One block, from layers_[l].x_in to its MLP branch in mlp_out, before the residual add: the caller fuses
// that add with the LayerNorm reading its sum. Saves what the backward reads into the layer's buffers. ln1
// is computed here when normalise_input (the first layer, a recomputed one); otherwise the previous layer's
// fused residual LayerNorm wrote it.
void Gpt::forward_layer(size_t l, bool drop, bool normalise_input, float* mlp_out) {
  const int64_t C = spec_.d_model, M = spec_.mlp_hidden, H = spec_.heads;
  const int64_t BT = rows_, D = head_dim_;
  Layer& L = layers_[l];
  const auto li = static_cast<int64_t>(l);
  const AttentionSpec& a = *L.attention;
  if (normalise_input)
    ops_.layernorm_forward(L.ln1, L.ln1_mean, L.ln1_rstd, L.x_in, L.ln1_w, L.ln1_b, BT, C, spec_.layernorm_eps);
  ops_.linear_forward(qkv_, L.ln1, weight(L.qkv_w), L.qkv_b, BT, C, 3 * C);
  ops_.split_heads(L.q, L.k, L.v, qkv_, batch_, seq_len_, H, D);
  if (spec_.positions == Positions::rope) {
    ops_.rope_forward(L.q, L.q, positions_, batch_, H, seq_len_, D, spec_.rope_base);
    ops_.rope_forward(L.k, L.k, positions_, batch_, H, seq_len_, D, spec_.rope_base);
  }
  const int32_t* segments = has_segments_ ? segments_ : nullptr;
  const uint8_t* mask = has_key_mask_ ? key_mask_ : nullptr;
  if (a.kind == AttentionKind::race) {
    if (a.learned_beta)
      ops_.exp_forward(L.beta, L.log_beta, H);
    else
      ops_.fill(L.beta, a.beta, H);
    ops_.race_attention_forward({batch_, H, seq_len_, D, a.tables, a.bits, a.planes_per_head},
                                {spec_.causal, a.estimator, a.eps},
                                {L.q, L.k, L.v, L.planes, L.beta, mask, segments}, L.att);
  } else {
    ops_.softmax_attention_forward({batch_, H, seq_len_, D}, {spec_.causal, a.window, 0.f},
                                   {L.q, L.k, L.v, mask, segments}, L.att, L.lse);
  }
  ops_.heads_to_rows(L.att_rows, L.att, batch_, seq_len_, H, D);
  ops_.linear_forward(L.x_mid, L.att_rows, weight(L.proj_w), L.proj_b, BT, C, C);
  if (drop) ops_.dropout(L.x_mid, L.x_mid, BT * C, spec_.dropout, dropout_site(li, 1));
  ops_.residual_layernorm_forward(L.x_mid, L.ln2, L.ln2_mean, L.ln2_rstd, L.x_mid, L.x_in, L.ln2_w, L.ln2_b, BT, C,
                                  spec_.layernorm_eps);
  ops_.linear_forward(L.fc, L.ln2, weight(L.fc_w), L.fc_b, BT, C, M);
  ops_.gelu_forward(L.gelu, L.fc, BT * M);
  ops_.linear_forward(mlp_out, L.gelu, weight(L.fc2_w), L.fc2_b, BT, M, C);
  if (drop) ops_.dropout(mlp_out, mlp_out, BT * C, spec_.dropout, dropout_site(li, 2));
}

void Gpt::forward(bool training) {
  const bool drop = training && spec_.dropout > 0.f;
  const int64_t C = spec_.d_model, V = spec_.vocab_size;
  const int64_t BT = rows_;
  update_weight_operands();
  ops_.embedding_forward(embed_, tokens_, params_data_, BT, V, C, false);
  if (spec_.positions == Positions::learned)
    ops_.embedding_forward(embed_, positions_, param("wpe"), BT, spec_.max_seq_len, C, true);
  if (drop) ops_.dropout(embed_, embed_, BT * C, spec_.dropout, dropout_site(-1, 0));
  for (size_t l = 0; l < layers_.size(); ++l) {
    // The MLP branch goes where the residual stream continues, and the add after it is fused with the
    // LayerNorm that reads the sum: the next layer's first, or the final one.
    const Layer& L = layers_[l];
    if (l + 1 < layers_.size()) {
      Layer& next = layers_[l + 1];
      forward_layer(l, drop, l == 0, next.x_in);
      ops_.residual_layernorm_forward(next.x_in, next.ln1, next.ln1_mean, next.ln1_rstd, next.x_in, L.x_mid,
                                      next.ln1_w, next.ln1_b, BT, C, spec_.layernorm_eps);
    } else {
      forward_layer(l, drop, l == 0, final_);
      ops_.residual_layernorm_forward(final_, lnf_, lnf_mean_, lnf_rstd_, final_, L.x_mid, param("lnf.weight"),
                                      param("lnf.bias"), BT, C, spec_.layernorm_eps);
    }
  }
}

LossSum Gpt::head(bool backward, float loss_scale) {
  const int64_t C = spec_.d_model, V = spec_.vocab_size;
  if (spec_.num_classes > 0) {
    const int64_t K = spec_.num_classes;
    const uint8_t* mask = has_key_mask_ ? key_mask_ : nullptr;
    ops_.pool_forward(pooled_, lnf_, mask, batch_, seq_len_, C, spec_.cls_pooling);
    ops_.linear_forward(class_logits_, pooled_, param("classifier.weight"), param("classifier.bias"), batch_,
                        C, K);
    LossSum loss;
    // The classifier's products are small: they multiply fp32 operands (the master weights) on any device.
    loss.sum = ops_.cross_entropy(backward ? OperandOut(class_logits_) : OperandOut(), class_logits_, labels_,
                                  batch_, K, loss_scale, &loss.count);
    if (backward) {
      ops_.linear_backward(d_pooled_, grad("classifier.weight"), grad("classifier.bias"), class_logits_,
                           pooled_, param("classifier.weight"), batch_, C, K);
      ops_.pool_backward(d_rows_, d_pooled_, mask, batch_, seq_len_, C, spec_.cls_pooling);
    }
    return loss;
  }
  const Operand w = weight(spec_.tie_embeddings ? params_data_ : param("lm_head.weight"));
  float* dw = spec_.tie_embeddings ? grads_data_ : grad("lm_head.weight");
  LossSum loss;
  for (int64_t r0 = 0; r0 < rows_; r0 += head_block_rows_) {
    const int64_t n = std::min(head_block_rows_, rows_ - r0);
    ops_.linear_forward(logits_, lnf_.at(r0 * C), w, nullptr, n, C, V);
    int64_t count = 0;
    loss.sum += ops_.cross_entropy(backward ? dlogits_ : OperandOut(), logits_, targets_ + r0, n, V, loss_scale,
                                   &count);
    loss.count += count;
    if (backward) ops_.linear_backward(d_rows_ + r0 * C, dw, nullptr, dlogits_, lnf_.at(r0 * C), w, n, C, V);
  }
  return loss;
}

void Gpt::backward(const GradientsReady& gradients_ready) {
  auto ready = [&](int64_t begin, int64_t end) {
    if (gradients_ready) gradients_ready(begin, end - begin);
  };
  const bool drop = spec_.dropout > 0.f;
  const int64_t C = spec_.d_model, M = spec_.mlp_hidden, V = spec_.vocab_size, H = spec_.heads;
  const int64_t BT = rows_, D = head_dim_;
  // residual_grad_ carries dL/dx of the residual stream down the layers; layernorm_backward adds into it.
  ops_.fill(residual_grad_, 0.f, BT * C);
  ops_.layernorm_backward(residual_grad_, grad("lnf.weight"), grad("lnf.bias"), d_rows_, final_,
                          param("lnf.weight"), lnf_mean_, lnf_rstd_, BT, C);
  // The head's and lnf's gradients are final (a tied head's share of wte is not: the embedding adds to it).
  ready(layer_param_begin_.back(), param_count_);
  for (size_t l = layers_.size(); l-- > 0;) {
    Layer& L = layers_[l];
    const AttentionSpec& a = *L.attention;
    // The shared buffers hold the last layer's activations: re-run this one (same dropout masks); its
    // output goes to scratch, the saved residual stream already holds it.
    if (spec_.recompute && l + 1 < layers_.size()) forward_layer(l, drop, true, d_qkv_);
    // MLP
    const auto li = static_cast<int64_t>(l);
    // Through a dropout the branch sees the residual gradient masked the same way (d_rows_ is free here).
    const float* d_branch = residual_grad_;
    if (drop) {
      ops_.dropout(d_rows_, residual_grad_, BT * C, spec_.dropout, dropout_site(li, 2));
      d_branch = d_rows_;
    }
    ops_.linear_backward(d_hidden_a_, L.d_fc2_w, L.d_fc2_b, product_input(d_branch, BT * C), L.gelu,
                         weight(L.fc2_w), BT, M, C);
    ops_.gelu_backward(d_hidden_operands_, d_hidden_a_, L.fc, BT * M);
    ops_.linear_backward(d_rows_, L.d_fc_w, L.d_fc_b, d_hidden_operands_, L.ln2, weight(L.fc_w), BT, C, M);
    ops_.layernorm_backward(residual_grad_, L.d_ln2_w, L.d_ln2_b, d_rows_, L.x_mid, L.ln2_w, L.ln2_mean,
                            L.ln2_rstd, BT, C);
    // Attention
    const float* d_attention_branch = residual_grad_;
    if (drop) {
      ops_.dropout(d_qkv_, residual_grad_, BT * C, spec_.dropout,
                   dropout_site(li, 1));  // d_qkv_ is free here
      d_attention_branch = d_qkv_;
    }
    ops_.linear_backward(d_rows_, L.d_proj_w, L.d_proj_b, product_input(d_attention_branch, BT * C), L.att_rows,
                         weight(L.proj_w), BT, C, C);
    ops_.rows_to_heads(d_heads_, d_rows_, batch_, seq_len_, H, D);
    const int32_t* segments = has_segments_ ? segments_ : nullptr;
    const uint8_t* mask = has_key_mask_ ? key_mask_ : nullptr;
    if (a.kind == AttentionKind::race) {
      ops_.race_attention_backward({batch_, H, seq_len_, D, a.tables, a.bits, a.planes_per_head},
                                   {spec_.causal, a.estimator, a.eps},
                                   {L.q, L.k, L.v, L.planes, L.beta, mask, segments}, d_heads_,
                                   {dq_, dk_, dv_, a.learned_beta ? dbeta_ : nullptr});
      if (a.learned_beta) ops_.exp_backward(L.d_log_beta, dbeta_, L.beta, H);
    } else {
      ops_.softmax_attention_backward({batch_, H, seq_len_, D}, {spec_.causal, a.window, 0.f},
                                      {L.q, L.k, L.v, mask, segments}, L.att, L.lse, d_heads_,
                                      {dq_, dk_, dv_});
    }
    if (spec_.positions == Positions::rope) {
      ops_.rope_backward(dq_, dq_, positions_, batch_, H, seq_len_, D, spec_.rope_base);
      ops_.rope_backward(dk_, dk_, positions_, batch_, H, seq_len_, D, spec_.rope_base);
    }
    ops_.merge_heads(d_qkv_operands_, dq_, dk_, dv_, batch_, seq_len_, H, D);
    ops_.linear_backward(d_rows_, L.d_qkv_w, L.d_qkv_b, d_qkv_operands_, L.ln1, weight(L.qkv_w), BT, C, 3 * C);
    ops_.layernorm_backward(residual_grad_, L.d_ln1_w, L.d_ln1_b, d_rows_, L.x_in, L.ln1_w, L.ln1_mean,
                            L.ln1_rstd, BT, C);
    ready(layer_param_begin_[l], layer_param_begin_[l + 1]);
  }
  if (drop) ops_.dropout(residual_grad_, residual_grad_, BT * C, spec_.dropout, dropout_site(-1, 0));
  ops_.embedding_backward(grads_data_, tokens_, residual_grad_, BT, V, C);
  if (spec_.positions == Positions::learned)
    ops_.embedding_backward(grad("wpe"), positions_, residual_grad_, BT, spec_.max_seq_len, C);
  ready(0, layer_param_begin_.front());
}

std::vector<int32_t> Gpt::predictions() {
  RACE_CHECK(spec_.num_classes > 0, "model: predictions() is for classifiers");
  // class_logits_ holds the logits of the last forward_loss (the backward pass overwrites them).
  std::vector<int32_t> out(static_cast<size_t>(batch_));
  std::vector<float> logits(static_cast<size_t>(batch_ * spec_.num_classes));
  ops_.copy_to_host(logits.data(), class_logits_, batch_ * spec_.num_classes);
  for (int64_t b = 0; b < batch_; ++b) {
    const float* row = logits.data() + b * spec_.num_classes;
    out[static_cast<size_t>(b)] = static_cast<int32_t>(std::max_element(row, row + spec_.num_classes) - row);
  }
  return out;
}

std::vector<float> Gpt::forward_logits(const Batch& batch) {
  const int64_t C = spec_.d_model, V = spec_.vocab_size;
  upload(batch);
  forward(false);
  const Operand w = weight(spec_.tie_embeddings ? params_data_ : param("lm_head.weight"));
  std::vector<float> logits(static_cast<size_t>(rows_ * V));
  for (int64_t r0 = 0; r0 < rows_; r0 += head_block_rows_) {
    const int64_t n = std::min(head_block_rows_, rows_ - r0);
    ops_.linear_forward(logits_, lnf_.at(r0 * C), w, nullptr, n, C, V);
    ops_.copy_to_host(logits.data() + r0 * V, logits_, n * V);
  }
  return logits;
}

void Gpt::start_decoding(int64_t max_tokens) {
  if (!spec_.causal) fail("model: a bidirectional encoder does not generate token by token");
  if (max_tokens < 1) fail("model: generation needs room for at least one token, got {}", max_tokens);
  const int64_t C = spec_.d_model, M = spec_.mlp_hidden, V = spec_.vocab_size, H = spec_.heads, D = head_dim_;
  if (!decoder_) {
    decoder_ = std::make_unique<Decoder>();
    Decoder& d = *decoder_;
    d.token = ops_.allocate_ints(1), d.position_id = ops_.allocate_ints(1);
    d.x = ops_.allocate(C), d.ln = ops_.allocate_operands(C), d.qkv = ops_.allocate(3 * C);
    d.q = ops_.allocate(C), d.k = ops_.allocate(C), d.v = ops_.allocate(C), d.att = ops_.allocate(C);
    d.att_rows = ops_.allocate_operands(C), d.mid = ops_.allocate(C), d.fc = ops_.allocate(M),
    d.gelu = ops_.allocate_operands(M);
    d.logits = ops_.allocate(V), d.ln_mean = ops_.allocate(1), d.ln_rstd = ops_.allocate(1);
  }
  Decoder& d = *decoder_;
  if (max_tokens > d.max_tokens) {
    d.key_sums.assign(layers_.size(), nullptr), d.value_sums.assign(layers_.size(), nullptr);
    d.keys.assign(layers_.size(), nullptr), d.values.assign(layers_.size(), nullptr);
    d.capacity.assign(layers_.size(), 0);
    for (size_t l = 0; l < layers_.size(); ++l) {
      const AttentionSpec& a = spec_.layers[l];
      if (a.kind == AttentionKind::race) {
        const int64_t S = a.tables * (int64_t{1} << a.bits);
        d.key_sums[l] = ops_.allocate(H * S), d.value_sums[l] = ops_.allocate(H * S * D);
      } else {
        d.capacity[l] = a.window > 0 ? std::min(a.window, max_tokens) : max_tokens;
        d.keys[l] = ops_.allocate(H * d.capacity[l] * D), d.values[l] = ops_.allocate(H * d.capacity[l] * D);
      }
    }
    d.max_tokens = max_tokens;
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (d.key_sums[l] == nullptr) continue;
    const AttentionSpec& a = spec_.layers[l];
    const int64_t S = a.tables * (int64_t{1} << a.bits);
    ops_.fill(d.key_sums[l], 0.f, H * S);
    ops_.fill(d.value_sums[l], 0.f, H * S * D);
  }
  d.position = 0;
}

const float* Gpt::decode_step(int32_t token) {
  RACE_CHECK(decoder_ != nullptr, "model: start_decoding before decode_step");
  Decoder& d = *decoder_;
  if (d.position >= d.max_tokens)
    fail("model: generation reached its limit of {} tokens (start_decoding)", d.max_tokens);
  if (spec_.positions == Positions::learned && d.position >= spec_.max_seq_len)
    fail("model: position {} is beyond the learned position table ({} rows)", d.position, spec_.max_seq_len);
  const int64_t C = spec_.d_model, M = spec_.mlp_hidden, V = spec_.vocab_size, H = spec_.heads, D = head_dim_;
  const auto position = static_cast<int32_t>(d.position);
  update_weight_operands();
  ops_.copy_ints_from_host(d.token, &token, 1);
  ops_.copy_ints_from_host(d.position_id, &position, 1);
  ops_.embedding_forward(d.x, d.token, params_data_, 1, V, C, false);
  if (spec_.positions == Positions::learned)
    ops_.embedding_forward(d.x, d.position_id, param("wpe"), 1, spec_.max_seq_len, C, true);
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const AttentionSpec& a = *L.attention;
    ops_.layernorm_forward(d.ln, d.ln_mean, d.ln_rstd, d.x, L.ln1_w, L.ln1_b, 1, C, spec_.layernorm_eps);
    ops_.linear_forward(d.qkv, d.ln, weight(L.qkv_w), L.qkv_b, 1, C, 3 * C);
    ops_.split_heads(d.q, d.k, d.v, d.qkv, 1, 1, H, D);
    if (spec_.positions == Positions::rope) {
      ops_.rope_forward(d.q, d.q, d.position_id, 1, H, 1, D, spec_.rope_base);
      ops_.rope_forward(d.k, d.k, d.position_id, 1, H, 1, D, spec_.rope_base);
    }
    if (a.kind == AttentionKind::race) {
      if (a.learned_beta)
        ops_.exp_forward(L.beta, L.log_beta, H);
      else
        ops_.fill(L.beta, a.beta, H);
      ops_.race_attention_decode({1, H, 1, D, a.tables, a.bits, a.planes_per_head},
                                 {true, a.estimator, a.eps}, d.q, d.k, d.v, L.planes, L.beta, d.key_sums[l],
                                 d.value_sums[l], d.att);
    } else {
      ops_.softmax_attention_decode(H, D, a.window, 1.f / std::sqrt(static_cast<float>(D)), d.q, d.k, d.v,
                                    d.keys[l], d.values[l], d.capacity[l], d.position, d.att);
    }
    ops_.heads_to_rows(d.att_rows, d.att, 1, 1, H, D);
    ops_.linear_forward(d.mid, d.att_rows, weight(L.proj_w), L.proj_b, 1, C, C);
    ops_.add(d.mid, d.x, C);
    ops_.layernorm_forward(d.ln, d.ln_mean, d.ln_rstd, d.mid, L.ln2_w, L.ln2_b, 1, C, spec_.layernorm_eps);
    ops_.linear_forward(d.fc, d.ln, weight(L.fc_w), L.fc_b, 1, C, M);
    ops_.gelu_forward(d.gelu, d.fc, M);
    ops_.linear_forward(d.x, d.gelu, weight(L.fc2_w), L.fc2_b, 1, M, C);
    ops_.add(d.x, d.mid, C);
  }
  ops_.layernorm_forward(d.ln, d.ln_mean, d.ln_rstd, d.x, param("lnf.weight"), param("lnf.bias"), 1, C,
                         spec_.layernorm_eps);
  ops_.linear_forward(d.logits, d.ln, weight(spec_.tie_embeddings ? params_data_ : param("lm_head.weight")),
                      nullptr, 1, C, V);
  ++d.position;
  return d.logits;
}

LossSum Gpt::forward_backward(const Batch& batch, float loss_scale, uint64_t dropout_seed,
                              const GradientsReady& gradients_ready) {
  upload(batch);
  dropout_seed_ = dropout_seed;
  forward(true);
  const LossSum loss = head(true, loss_scale);
  backward(gradients_ready);
  return loss;
}

LossSum Gpt::forward_loss(const Batch& batch) {
  upload(batch);
  forward(false);
  return head(false, 1.f);
}

}  // namespace race::model
