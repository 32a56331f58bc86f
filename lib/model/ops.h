// The operations a model is written against: memory and every kernel it calls, on one device. The model
// holds an Ops& and never knows which device it runs on; CpuOps (cpu_ops.h) implements it with the kernels
// in lib/kernels/cpu, and a CUDA implementation will do the same with lib/kernels/cuda. Pointers returned by
// allocate() and passed to the kernels are device pointers; host data crosses only through copy_*.
// Shapes follow the kernels: rows of C channels are (N, C), heads are (B, H, T, D).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/race_attention.h"
#include "kernels/softmax_attention.h"

namespace race::model {

struct AdamWStep {
  float lr = 0.f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.f;
  int64_t step = 1;
  float grad_scale = 1.f;
};

// One tensor of the flat parameter buffers: its place and whether AdamWStep::weight_decay applies to it.
struct ParamRange {
  int64_t offset = 0, count = 0;
  bool decay = false;
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

  // y (N, out) = x (N, in) W^T + b; backward: dx overwritten, dW and db accumulated; any may be null.
  virtual void linear_forward(float* y, const float* x, const float* w, const float* b, int64_t rows,
                              int64_t in, int64_t out) = 0;
  virtual void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                               const float* w, int64_t rows, int64_t in, int64_t out) = 0;
  // LayerNorm over C; backward accumulates dx, dw, db.
  virtual void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                                 const float* b, int64_t rows, int64_t channels, float eps) = 0;
  // The residual add fused with the LayerNorm after it: residual (N, C) = x + r, then y, mean, rstd as
  // layernorm_forward of residual, in one pass. residual may be x or r. The backward needs no fused twin:
  // layernorm_backward accumulates dx into the residual stream's gradient.
  virtual void residual_layernorm_forward(float* residual, float* y, float* mean, float* rstd, const float* x,
                                          const float* r, const float* w, const float* b, int64_t rows,
                                          int64_t channels, float eps) = 0;
  virtual void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                                  const float* w, const float* mean, const float* rstd, int64_t rows,
                                  int64_t channels) = 0;
  virtual void gelu_forward(float* y, const float* x, int64_t count) = 0;
  virtual void gelu_backward(float* dx, const float* dy, const float* x, int64_t count) = 0;
  // out (N, C) (+)= table[ids]; backward accumulates into dtable.
  virtual void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t n,
                                 int64_t vocab, int64_t channels, bool accumulate) = 0;
  virtual void embedding_backward(float* dtable, const int32_t* ids, const float* dout, int64_t n,
                                  int64_t vocab, int64_t channels) = 0;
  // Softmax cross-entropy over rows with targets (-1: ignored); writes dlogits * grad_scale when not null.
  // Returns the sum of the counted rows' losses (fp64) and sets *count.
  virtual double cross_entropy(float* dlogits, const float* logits, const int32_t* targets, int64_t rows,
                               int64_t vocab, float grad_scale, int64_t* count) = 0;
  // (rows, 3, H, D) of a fused qkv projection <-> q, k, v (B, H, T, D).
  virtual void split_heads(float* q, float* k, float* v, const float* qkv, int64_t batch, int64_t seq_len,
                           int64_t heads, int64_t head_dim) = 0;
  virtual void merge_heads(float* qkv, const float* q, const float* k, const float* v, int64_t batch,
                           int64_t seq_len, int64_t heads, int64_t head_dim) = 0;
  // (B, H, T, D) <-> (B, T, H * D)
  virtual void heads_to_rows(float* rows, const float* heads, int64_t batch, int64_t seq_len,
                             int64_t head_count, int64_t head_dim) = 0;
  virtual void rows_to_heads(float* heads, const float* rows, int64_t batch, int64_t seq_len,
                             int64_t head_count, int64_t head_dim) = 0;
  virtual void rope_forward(float* out, const float* x, const int32_t* positions, int64_t batch,
                            int64_t heads, int64_t seq_len, int64_t head_dim, float base) = 0;
  virtual void rope_backward(float* dx, const float* dout, const int32_t* positions, int64_t batch,
                             int64_t heads, int64_t seq_len, int64_t head_dim, float base) = 0;
  virtual void race_attention_forward(const kernels::RaceAttentionShape& shape,
                                      const kernels::RaceAttentionOptions& options,
                                      const kernels::RaceAttentionInputs& inputs, float* out) = 0;
  virtual void race_attention_backward(const kernels::RaceAttentionShape& shape,
                                       const kernels::RaceAttentionOptions& options,
                                       const kernels::RaceAttentionInputs& inputs, const float* dout,
                                       const kernels::RaceAttentionGradients& grads) = 0;
  virtual void softmax_attention_forward(const kernels::SoftmaxAttentionShape& shape,
                                         const kernels::SoftmaxAttentionOptions& options,
                                         const kernels::SoftmaxAttentionInputs& inputs, float* out,
                                         float* lse) = 0;
  virtual void softmax_attention_backward(const kernels::SoftmaxAttentionShape& shape,
                                          const kernels::SoftmaxAttentionOptions& options,
                                          const kernels::SoftmaxAttentionInputs& inputs, const float* out,
                                          const float* lse, const float* dout,
                                          const kernels::SoftmaxAttentionGradients& grads) = 0;
  // Generation, one token (q, k, v, out: (H, D)). RACE updates its recurrent state (key_sums (H, S),
  // value_sums (H, S, D)); softmax appends to its key/value cache (H, capacity, D) at `position`.
  virtual void race_attention_decode(const kernels::RaceAttentionShape& shape,
                                     const kernels::RaceAttentionOptions& options, const float* q,
                                     const float* k, const float* v, const float* planes, const float* beta,
                                     float* key_sums, float* value_sums, float* out) = 0;
  virtual void softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale,
                                        const float* q, const float* k, const float* v, float* keys,
                                        float* values, int64_t capacity, int64_t position, float* out) = 0;

  // Pooling of rows (B, T, C) into (B, C): the mean over real tokens (key_mask, null: all), or token 0
  // (cls). Backward writes drows (overwritten; zero where the pool does not look).
  virtual void pool_forward(float* pooled, const float* rows, const uint8_t* key_mask, int64_t batch,
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
  // buffers (params, grads, m, v indexed alike) in one call; elements outside the ranges are untouched.
  virtual double grad_norm(const float* grads, int64_t count) = 0;
  virtual void adamw(float* params, const float* grads, float* m, float* v, const std::vector<ParamRange>& ranges,
                     const AdamWStep& step) = 0;
};

}  // namespace race::model
