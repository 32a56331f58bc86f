// GPT: a decoder-only transformer with pre-LN blocks, trained as a causal language model; with
// spec.causal false the same blocks form a bidirectional encoder (BERT), trained as a masked LM. Hand-written
// forward and backward over an Ops backend (the model never knows its device). Each layer's attention is
// RACE or softmax (full or sliding window), so a hybrid is a spec, not a fork. Positions: RoPE (applied
// to q and k before hashing), learned absolute, or none.
//
//   x = wte[tokens] (+ wpe[positions])                                                  (B*T, C)
//   per layer: a = Attn(LN1(x)); x = x + a W_proj^T + b;  m = GELU(LN2(x) W_fc^T + b);  x = x + m W_fc2^T + b
//   logits = LNf(x) W_head^T, with W_head = wte when tied;  loss = cross-entropy(logits, targets)
//
// The vocabulary projection runs in blocks of rows, each immediately followed by its loss, gradient and
// backward, so (B*T, V) logits never exist at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/race_attention.h"
#include "model/ops.h"

namespace race::model {

enum class AttentionKind { race, softmax };
enum class Positions { rope, learned, none };

struct AttentionSpec {
  AttentionKind kind = AttentionKind::race;
  int tables = 3;  // RACE: L
  int bits = 3;    // RACE: P
  kernels::RaceEstimator estimator = kernels::RaceEstimator::bucket;
  float beta = 1.f;           // RACE temperature, or its initial value when learned
  bool learned_beta = false;  // RACE: a log-beta parameter per head
  bool planes_per_head = false;
  float eps = 1e-6f;
  int64_t window = 0;  // softmax: sliding window W (0 = full attention)
};

struct ModelSpec {
  bool causal = true;  // GPT; false: a bidirectional encoder (BERT, trained as a masked LM)
  int64_t vocab_size = 256;
  int64_t max_seq_len = 1024;  // learned positions: rows of wpe
  int64_t d_model = 256;       // C
  int64_t heads = 4;           // H; D = C / H
  int64_t mlp_hidden = 1024;   // M
  bool bias = true;
  bool tie_embeddings = true;
  Positions positions = Positions::rope;
  float rope_base = 10000.f;
  float layernorm_eps = 1e-5f;
  std::vector<AttentionSpec> layers;  // one per layer
  bool recompute = false;  // keep only each layer's input; re-run a layer's forward before its backward
  float dropout = 0.f;                // on embeddings and each block's residual branches, training only
  int64_t num_classes = 0;            // > 0: a classifier (pooled encoder + linear head) instead of a LM head
  bool cls_pooling = false;           // classifier: the first token's state instead of the mean of real tokens
  uint64_t seed = 0;                  // initialisation and RACE hyperplanes
  // Memory for one block of logits: the vocabulary projection and its loss run a block of rows at a time,
  // so (B*T, V) logits never exist at once. Small blocks stay in a CPU's cache; a GPU needs large ones to
  // run the projection as large matrix products. How to compute, not what: results do not depend on it.
  int64_t logits_block_bytes = int64_t{4} << 20;
};

// Throws race::Error naming the first bad field.
// A classifier (num_classes > 0) must be bidirectional (causal false).
void validate(const ModelSpec& spec);

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, size = 0;  // in floats, within parameters() / gradients()
  bool weight_decay = false;     // matrices decay; norms, biases, embeddings and temperatures do not
};

// Ops::adamw's ranges for `params`, one per tensor, with decay where decays(param) is true.
template <class Decays>
std::vector<ParamRange> adamw_ranges(const std::vector<ParamInfo>& params, Decays decays) {
  std::vector<ParamRange> ranges;
  ranges.reserve(params.size());
  for (const ParamInfo& p : params) ranges.push_back({p.offset, p.size, static_cast<bool>(decays(p))});
  return ranges;
}

// One batch on the host, (B, T) each.
struct Batch {
  const int32_t* tokens = nullptr;
  const int32_t* targets = nullptr;      // -1: no loss at that position
  const int32_t* positions = nullptr;    // null: position t; packed rows restart at each document
  const int32_t* segment_ids = nullptr;  // null: one document per row
  const uint8_t* key_mask = nullptr;     // 1 = real token, 0 = padding no query sees; null: all real
  const int32_t* labels = nullptr;       // (B) classifier: the class of each row (-1: not scored)
};

struct LossSum {
  double sum = 0.0;   // summed over counted positions
  int64_t count = 0;  // positions with a target
  double mean() const { return count > 0 ? sum / static_cast<double>(count) : 0.0; }
};

// What a Gpt of `spec` allocates through its Ops for batches of (batch, seq_len), counted without allocating,
// so a trainer can check it against the device's memory before building the model. Generation's state
// (start_decoding) and the kernels' own per-call scratch are not included.
struct MemoryPlan {
  int64_t parameters = 0;  // floats of parameters; the gradients are as many again
  int64_t weight_operand_bytes = 0;  // the product weights' copy in the operand type (none for fp32)
  int64_t buffers = 0;     // floats of frozen buffers (RACE hyperplanes)
  int64_t activation_bytes_per_token = 0;  // kept from the forward for the backward, over all layers
  int64_t scratch_bytes_per_token = 0;     // reused by every layer: qkv, the backward's gradient buffers
  int64_t batch_bytes_per_token = 0;       // the batch on the device: tokens, targets, positions, masks
  int64_t fixed_bytes = 0;                 // independent of the tokens: a block of logits, temperatures
  int64_t per_row_bytes = 0;               // per window (row): labels, pooled states, class logits
  // Everything above for one micro-batch of (batch, seq_len): parameters, gradients, buffers and tokens.
  int64_t bytes(int64_t batch, int64_t seq_len) const;
  int64_t bytes_per_token() const {
    return activation_bytes_per_token + scratch_bytes_per_token + batch_bytes_per_token;
  }
};

// Throws race::Error like the Gpt constructor for a bad spec or shape. `operands`: the Ops's operand_type().
MemoryPlan plan_memory(const ModelSpec& spec, int64_t batch, int64_t seq_len, ElementType operands);

// Called by the backward with (offset, count) of gradients() once no later work of that call writes them:
// the head and final LayerNorm first, then each layer from the last to the first, then the embeddings. The
// ranges are disjoint, cover every parameter and come in decreasing offset order. Data-parallel training
// starts a range's all-reduce here, while the backward of earlier layers is still running.
using GradientsReady = std::function<void(int64_t offset, int64_t count)>;

class Gpt {
 public:
  // Plans and allocates parameters, gradients and activations for batches of (batch, seq_len).
  Gpt(Ops& ops, ModelSpec spec, int64_t batch, int64_t seq_len);
  ~Gpt();
  Gpt(const Gpt&) = delete;
  Gpt& operator=(const Gpt&) = delete;

  const ModelSpec& spec() const { return spec_; }
  const std::vector<ParamInfo>& params() const { return params_; }
  const std::vector<ParamInfo>& buffers() const { return buffers_; }  // frozen: RACE hyperplanes
  int64_t parameter_count() const { return param_count_; }
  int64_t batch_size() const { return batch_; }
  int64_t seq_len() const { return seq_len_; }
  // Device. Writing through this pointer is how parameters change (the optimizer, a checkpoint), so taking it
  // marks the product weights' copy in the operand type stale: the next forward pass rounds it again.
  float* parameters() {
    weight_operands_current_ = false;
    return params_data_;
  }
  const float* parameter_values() const { return params_data_; }  // device; for reading (a checkpoint)
  float* gradients() { return grads_data_; }    // device
  float* buffer_data() { return buffers_data_; }
  int64_t buffer_count() const { return buffer_count_; }
  // What the constructor allocated (plan_memory for this model's spec and shape).
  const MemoryPlan& memory_plan() const { return plan_; }
  // Bytes of activations stored per token for the backward, over all layers.
  int64_t activation_bytes_per_token() const { return plan_.activation_bytes_per_token; }

  // GPT-2 initialisation (N(0, 0.02), residual projections scaled by 1/sqrt(2 layers)) and hyperplanes
  // N(0, 1), both from spec.seed.
  void initialize();
  void zero_gradients();
  // One AdamW update of parameters() from gradients() over `ranges` (Ops::adamw), with moments m and v.
  // A range that is exactly one product weight also writes that weight's operand copy in the same pass;
  // when every copy was written so, the next forward pass need not round the weights again.
  void adamw(float* m, float* v, std::vector<ParamRange> ranges, const AdamWStep& step);
  // Forward and backward of the summed loss times loss_scale; gradients accumulate. dropout_seed draws
  // this call's dropout masks (ignored when spec.dropout is 0). `gradients_ready`, when set, is called as the
  // backward finishes each range of gradients() (see GradientsReady).
  LossSum forward_backward(const Batch& batch, float loss_scale, uint64_t dropout_seed = 0,
                           const GradientsReady& gradients_ready = {});
  LossSum forward_loss(const Batch& batch);
  // Classifier: the predicted class of each row (B) of the last forward pass.
  std::vector<int32_t> predictions();
  // Logits (B*T, V) of a full forward pass, on the host (for checks; training never forms them).
  std::vector<float> forward_logits(const Batch& batch);

  // Where the operand-type copy keeps a parameter the large products read (the layers' four matrices, the
  // language-model head): its offset in parameters(), its size, and its offset in the copy.
  struct WeightCopy {
    int64_t param_offset = 0, count = 0, copy_offset = 0;
  };
  // The copies of `spec`'s product weights, in parameter order; *total: the elements the copy needs.
  static std::vector<WeightCopy> weight_copies(const ModelSpec& spec, const std::vector<ParamInfo>& params,
                                               int64_t* total);

  // Generation, one token at a time: RACE layers carry their recurrent state (A, B), softmax layers a
  // key/value cache (window-sized for a sliding window). start_decoding resets to an empty sequence of at
  // most max_tokens; decode_step feeds the next token and returns the logits (V, on the device) of the
  // token after it, equal to what a full forward pass gives at that position.
  void start_decoding(int64_t max_tokens);
  const float* decode_step(int32_t token);

 private:
  struct Layer;
  void upload(const Batch& batch);
  void forward(bool training);
  void forward_layer(size_t layer, bool drop, bool normalise_input, float* mlp_out);
  LossSum head(bool backward, float loss_scale);
  void backward(const GradientsReady& gradients_ready);
  float* param(const std::string& name);
  float* grad(const std::string& name);
  // The product operand of the parameter at w (a pointer into parameters()): w itself for fp32 operands.
  Operand weight(const float* w) const;
  // Rounds the product weights into weight_operands_ unless nothing has written them since the last time.
  void update_weight_operands();
  // x (count) as a product operand: x itself when operands are fp32, else rounded into dy_operands_.
  Operand product_input(const float* x, int64_t count);

  Ops& ops_;
  ModelSpec spec_;
  int64_t batch_, seq_len_, rows_, head_dim_;
  std::vector<ParamInfo> params_, buffers_;
  int64_t param_count_ = 0, buffer_count_ = 0;
  // (layers + 1) offset of each layer's first parameter, then of the parameters after the last layer (lnf
  // and the head): the ranges GradientsReady reports.
  std::vector<int64_t> layer_param_begin_;
  float* params_data_ = nullptr;
  float* grads_data_ = nullptr;
  float* buffers_data_ = nullptr;
  // The product weights in the operand type (none for fp32: the products read params_data_), rounded before
  // each forward pass that follows a write through parameters().
  std::vector<WeightCopy> weight_copies_;
  OperandOut weight_operands_;
  bool weight_operands_current_ = false;
  std::vector<Layer> layers_;
  MemoryPlan plan_;
  // Batch on the device.
  int32_t *tokens_ = nullptr, *targets_ = nullptr, *positions_ = nullptr, *segments_ = nullptr,
          *labels_ = nullptr;
  float *pooled_ = nullptr, *d_pooled_ = nullptr, *class_logits_ = nullptr;  // (B, C), (B, C), (B, K)
  uint8_t* key_mask_ = nullptr;
  bool has_segments_ = false, has_key_mask_ = false;
  // Activations shared by all layers.
  float *embed_ = nullptr, *final_ = nullptr, *lnf_mean_ = nullptr, *lnf_rstd_ = nullptr;
  OperandOut lnf_;  // (B*T, C) the final LayerNorm's output, read by the head's products
  // Scratch.
  float *qkv_ = nullptr, *d_rows_ = nullptr, *d_hidden_a_ = nullptr, *d_hidden_b_ = nullptr, *d_qkv_ = nullptr,
        *residual_grad_ = nullptr, *logits_ = nullptr, *dbeta_ = nullptr;
  OperandOut dq_, dk_, dv_, d_heads_;  // (B, H, T, D) each, in the operand type
  // Operand views of the scratch above (see the constructor), and the logits block's gradient: logits_
  // itself for fp32 operands, else its own buffer.
  OperandOut d_qkv_operands_, dy_operands_, d_hidden_operands_, dlogits_;
  int64_t head_block_rows_ = 0;
  uint64_t dropout_seed_ = 0;
  // The seed of one dropout site: (call seed, layer, site) -> distinct masks.
  uint64_t dropout_site(int64_t layer, int site) const;
  struct Decoder;
  std::unique_ptr<Decoder> decoder_;
};

}  // namespace race::model
