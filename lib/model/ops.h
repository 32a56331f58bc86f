// The operations a model is written against: memory and every kernel it calls, on one device. The model
// holds an Ops& and never knows which device it runs on; CpuOps (cpu_ops.h) implements it with the kernels
// in lib/kernels/cpu, and a CUDA implementation will do the same with lib/kernels/cuda. Pointers returned by
// allocate() and passed to the kernels are device pointers; host data crosses only through copy_*.
// Shapes follow the kernels: rows of C channels are (N, C), heads are (B, H, T, D).
// Matrix products and attention read Operands: fp32, or bf16 where the device multiplies bf16 on tensor
// cores (operand_type()). The model stores what only they read (LayerNorm outputs, GELU outputs, q, k, v
// and the attention output, the gradients fed back through them, a copy of the weights) in that type;
// everything else, the parameters, their gradients and optimizer moments, the residual stream, and every
// reduction, stays fp32.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/race_attention.h"
#include "kernels/softmax_attention.h"

namespace race::model {

// How a product's operand is stored: fp32, or bf16 (fp32's top 16 bits, rounded to nearest even).
enum class ElementType : uint8_t { fp32, bf16 };
int64_t element_bytes(ElementType type);
const char* element_type_name(ElementType type);

// A matrix a product reads (x, dy, a weight), on the device, with its element type. A float pointer
// converts to an fp32 Operand, so fp32 callers pass plain pointers.
struct Operand {
  const void* data = nullptr;
  ElementType type = ElementType::fp32;
  Operand() = default;
  Operand(const float* fp32) : data(fp32) {}  // NOLINT(google-explicit-constructor): fp32 is the plain case
  Operand(const void* data_, ElementType type_) : data(data_), type(type_) {}
};

// A matrix a kernel writes for a product to read: as Operand, writable.
struct OperandOut {
  void* data = nullptr;
  ElementType type = ElementType::fp32;
  OperandOut() = default;
  OperandOut(float* fp32) : data(fp32) {}  // NOLINT(google-explicit-constructor)
  OperandOut(void* data_, ElementType type_) : data(data_), type(type_) {}
  operator Operand() const { return {data, type}; }  // NOLINT(google-explicit-constructor)
  OperandOut at(int64_t index) const;  // the element `index` further on
};

// The tensors of one attention call, (B, H, T, D) each and all of one element type (fp32 or operand_type());
// planes and beta are fp32, as kernels/race_attention.h describes. The kernels' fp32 structs convert to these.
struct RaceOperands {
  Operand q, k, v;
  const float* planes = nullptr;
  const float* beta = nullptr;
  const uint8_t* key_mask = nullptr;
  const int32_t* segment_ids = nullptr;
  RaceOperands() = default;
  RaceOperands(Operand q_, Operand k_, Operand v_, const float* planes_, const float* beta_,
               const uint8_t* key_mask_ = nullptr, const int32_t* segment_ids_ = nullptr)
      : q(q_), k(k_), v(v_), planes(planes_), beta(beta_), key_mask(key_mask_), segment_ids(segment_ids_) {}
  RaceOperands(const kernels::RaceAttentionInputs& in)  // NOLINT(google-explicit-constructor): fp32
      : RaceOperands(in.q, in.k, in.v, in.planes, in.beta, in.key_mask, in.segment_ids) {}
};
struct RaceGradientOperands {
  OperandOut dq, dk, dv;
  float* dbeta = nullptr;  // (H) fp32, or null
  RaceGradientOperands() = default;
  RaceGradientOperands(OperandOut dq_, OperandOut dk_, OperandOut dv_, float* dbeta_ = nullptr)
      : dq(dq_), dk(dk_), dv(dv_), dbeta(dbeta_) {}
  RaceGradientOperands(const kernels::RaceAttentionGradients& g)  // NOLINT(google-explicit-constructor)
      : RaceGradientOperands(g.dq, g.dk, g.dv, g.dbeta) {}
};
struct SoftmaxOperands {
  Operand q, k, v;
  const uint8_t* key_mask = nullptr;
  const int32_t* segment_ids = nullptr;
  SoftmaxOperands() = default;
  SoftmaxOperands(Operand q_, Operand k_, Operand v_, const uint8_t* key_mask_ = nullptr,
                  const int32_t* segment_ids_ = nullptr)
      : q(q_), k(k_), v(v_), key_mask(key_mask_), segment_ids(segment_ids_) {}
  SoftmaxOperands(const kernels::SoftmaxAttentionInputs& in)  // NOLINT(google-explicit-constructor)
      : SoftmaxOperands(in.q, in.k, in.v, in.key_mask, in.segment_ids) {}
};
struct SoftmaxGradientOperands {
  OperandOut dq, dk, dv;
  SoftmaxGradientOperands() = default;
  SoftmaxGradientOperands(OperandOut dq_, OperandOut dk_, OperandOut dv_) : dq(dq_), dk(dk_), dv(dv_) {}
  SoftmaxGradientOperands(const kernels::SoftmaxAttentionGradients& g)  // NOLINT(google-explicit-constructor)
      : SoftmaxGradientOperands(g.dq, g.dk, g.dv) {}
};

// The fp32 data of an operand; race::Error naming `what` when it is stored in another type (for backends
// that compute in fp32 only).
const float* fp32_data(Operand x, const char* what);
float* fp32_data(OperandOut x, const char* what);
kernels::RaceAttentionInputs fp32_data(const RaceOperands& x, const char* what);
kernels::RaceAttentionGradients fp32_data(const RaceGradientOperands& x, const char* what);
kernels::SoftmaxAttentionInputs fp32_data(const SoftmaxOperands& x, const char* what);
kernels::SoftmaxAttentionGradients fp32_data(const SoftmaxGradientOperands& x, const char* what);

struct AdamWStep {
  float lr = 0.f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.f;
  int64_t step = 1;
  float grad_scale = 1.f;
};

// One tensor of the flat parameter buffers: its place, whether AdamWStep::weight_decay applies to it, and
// where the update also writes its new values rounded to copy.type (the product weights' operand copy),
// in the same pass; copy.data null: nowhere.
struct ParamRange {
  int64_t offset = 0, count = 0;
  bool decay = false;
  OperandOut copy = {};
};

// race::Error unless the ranges have offsets and counts >= 0, are in increasing order and do not overlap
// (an element in two ranges would be updated twice).
void check_param_ranges(const std::vector<ParamRange>& ranges);

class Ops {
 public:
  virtual ~Ops() = default;

  // Memory: zero-filled device buffers owned by the Ops object until it is destroyed.
  virtual float* allocate(int64_t count) = 0;
  virtual int32_t* allocate_ints(int64_t count) = 0;
  virtual uint8_t* allocate_bytes(int64_t count) = 0;
  virtual int64_t allocated_bytes() const = 0;  // held by the allocate calls so far
  virtual void copy_from_host(float* device, const float* host, int64_t count) = 0;
  virtual void copy_to_host(float* host, const float* device, int64_t count) = 0;
  virtual void copy_ints_from_host(int32_t* device, const int32_t* host, int64_t count) = 0;
  virtual void copy_bytes_from_host(uint8_t* device, const uint8_t* host, int64_t count) = 0;
  // Returns once every operation called so far has finished: CUDA queues its kernels, the CPU runs each
  // call to the end before returning (so there it returns at once). For timing; results never need it.
  virtual void synchronize() = 0;
  virtual void fill(float* x, float value, int64_t count) = 0;
  virtual void add(float* y, const float* x, int64_t count) = 0;  // y += x

  // The element type of the model's product operands on this device: fp32 where the products multiply fp32
  // (or round fp32 operands themselves), bf16 where they multiply stored bf16 operands.
  virtual ElementType operand_type() const = 0;
  // Zero-filled operand_type() buffer, owned like allocate()'s.
  virtual OperandOut allocate_operands(int64_t count) = 0;
  // y = x rounded to y.type (a copy when fp32).
  virtual void to_operands(OperandOut y, const float* x, int64_t count) = 0;

  // y (N, out) = x (N, in) W^T + b; backward: dx overwritten, dW and db accumulated; any may be null.
  // x, w and dy are all fp32 or all operand_type(); the bias, y and the gradients are fp32.
  virtual void linear_forward(float* y, Operand x, Operand w, const float* b, int64_t rows, int64_t in,
                              int64_t out) = 0;
  virtual void linear_backward(float* dx, float* dw, float* db, Operand dy, Operand x, Operand w, int64_t rows,
                               int64_t in, int64_t out) = 0;
  // LayerNorm over C; y in fp32 or operand_type(); backward accumulates dx, dw, db.
  virtual void layernorm_forward(OperandOut y, float* mean, float* rstd, const float* x, const float* w,
                                 const float* b, int64_t rows, int64_t channels, float eps) = 0;
  // The residual add fused with the LayerNorm after it: residual (N, C) = x + r, then y, mean, rstd as
  // layernorm_forward of residual, in one pass. residual may be x or r. The backward needs no fused twin:
  // layernorm_backward accumulates dx into the residual stream's gradient.
  virtual void residual_layernorm_forward(float* residual, OperandOut y, float* mean, float* rstd,
                                          const float* x, const float* r, const float* w, const float* b,
                                          int64_t rows, int64_t channels, float eps) = 0;
  virtual void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                                  const float* w, const float* mean, const float* rstd, int64_t rows,
                                  int64_t channels) = 0;
  // y and dx in fp32 or operand_type().
  virtual void gelu_forward(OperandOut y, const float* x, int64_t count) = 0;
  virtual void gelu_backward(OperandOut dx, const float* dy, const float* x, int64_t count) = 0;
  // out (N, C) (+)= table[ids]; backward accumulates into dtable.
  virtual void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t n,
                                 int64_t vocab, int64_t channels, bool accumulate) = 0;
  virtual void embedding_backward(float* dtable, const int32_t* ids, const float* dout, int64_t n,
                                  int64_t vocab, int64_t channels) = 0;
  // Softmax cross-entropy over rows with targets (-1: ignored); writes dlogits * grad_scale (fp32 or
  // operand_type()) when dlogits.data is not null; an fp32 dlogits may be logits itself.
  // Returns the sum of the counted rows' losses (fp64) and sets *count.
  virtual double cross_entropy(OperandOut dlogits, const float* logits, const int32_t* targets, int64_t rows,
                               int64_t vocab, float grad_scale, int64_t* count) = 0;
  // (rows, 3, H, D) of a fused qkv projection <-> q, k, v (B, H, T, D). The heads and the merged qkv in fp32
  // or operand_type() (q, k, v of one call alike); the split's input is fp32.
  virtual void split_heads(OperandOut q, OperandOut k, OperandOut v, const float* qkv, int64_t batch,
                           int64_t seq_len, int64_t heads, int64_t head_dim) = 0;
  virtual void merge_heads(OperandOut qkv, Operand q, Operand k, Operand v, int64_t batch, int64_t seq_len,
                           int64_t heads, int64_t head_dim) = 0;
  // (B, H, T, D) <-> (B, T, H * D); the heads, and the rows heads_to_rows writes, in fp32 or operand_type();
  // rows_to_heads reads fp32 rows.
  virtual void heads_to_rows(OperandOut rows, Operand heads, int64_t batch, int64_t seq_len, int64_t head_count,
                             int64_t head_dim) = 0;
  virtual void rows_to_heads(OperandOut heads, const float* rows, int64_t batch, int64_t seq_len,
                             int64_t head_count, int64_t head_dim) = 0;
  // out and x (dx and dout) of one type, fp32 or operand_type(); in place is allowed.
  virtual void rope_forward(OperandOut out, Operand x, const int32_t* positions, int64_t batch, int64_t heads,
                            int64_t seq_len, int64_t head_dim, float base) = 0;
  virtual void rope_backward(OperandOut dx, Operand dout, const int32_t* positions, int64_t batch,
                             int64_t heads, int64_t seq_len, int64_t head_dim, float base) = 0;
  // q, k, v, out, dout and dq, dk, dv of one call all fp32 or all operand_type(); planes, beta, dbeta and lse
  // fp32. Computation in fp32 either way.
  virtual void race_attention_forward(const kernels::RaceAttentionShape& shape,
                                      const kernels::RaceAttentionOptions& options, const RaceOperands& inputs,
                                      OperandOut out) = 0;
  virtual void race_attention_backward(const kernels::RaceAttentionShape& shape,
                                       const kernels::RaceAttentionOptions& options, const RaceOperands& inputs,
                                       Operand dout, const RaceGradientOperands& grads) = 0;
  virtual void softmax_attention_forward(const kernels::SoftmaxAttentionShape& shape,
                                         const kernels::SoftmaxAttentionOptions& options,
                                         const SoftmaxOperands& inputs, OperandOut out, float* lse) = 0;
  virtual void softmax_attention_backward(const kernels::SoftmaxAttentionShape& shape,
                                          const kernels::SoftmaxAttentionOptions& options,
                                          const SoftmaxOperands& inputs, Operand out, const float* lse,
                                          Operand dout, const SoftmaxGradientOperands& grads) = 0;
  // Generation, one token (q, k, v, out: (H, D)). RACE updates its recurrent state (key_sums (H, S),
  // value_sums (H, S, D)); softmax appends to its key/value cache (H, capacity, D) at `position`.
  virtual void race_attention_decode(const kernels::RaceAttentionShape& shape,
                                     const kernels::RaceAttentionOptions& options, const float* q,
                                     const float* k, const float* v, const float* planes, const float* beta,
                                     float* key_sums, float* value_sums, float* out) = 0;
  virtual void softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale,
                                        const float* q, const float* k, const float* v, float* keys,
                                        float* values, int64_t capacity, int64_t position, float* out) = 0;

  // Pooling of rows (B, T, C) (fp32 or operand_type()) into fp32 (B, C): the mean over real tokens
  // (key_mask, null: all), or token 0 (cls). Backward writes drows (overwritten; zero where the pool does not
  // look).
  virtual void pool_forward(float* pooled, Operand rows, const uint8_t* key_mask, int64_t batch,
                            int64_t seq_len, int64_t channels, bool cls) = 0;
  virtual void pool_backward(float* drows, const float* dpooled, const uint8_t* key_mask, int64_t batch,
                             int64_t seq_len, int64_t channels, bool cls) = 0;

  // Inverted dropout with probability p: y = x * keep / (1 - p), keep drawn from a counter-based hash of
  // (seed, index), so the backward regenerates the same mask and any device draws the same one.
  // In place is allowed.
  virtual void dropout(float* y, const float* x, int64_t count, float p, uint64_t seed) = 0;

  // Elementwise helpers for learned temperatures: y = exp(x); dx += dy * y.
  virtual void exp_forward(float* y, const float* x, int64_t count) = 0;
  virtual void exp_backward(float* dx, const float* dy, const float* y, int64_t count) = 0;

  // Optimizer: global gradient norm (fp64, fixed order), and one AdamW update of every range of the flat
  // buffers (params, grads, m, v indexed alike) in one call, each range's copy written as it goes; elements
  // outside the ranges are untouched.
  virtual double grad_norm(const float* grads, int64_t count) = 0;
  virtual void adamw(float* params, const float* grads, float* m, float* v, const std::vector<ParamRange>& ranges,
                     const AdamWStep& step) = 0;
};

}  // namespace race::model
