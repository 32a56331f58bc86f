// Ops on the CPU: host memory and the kernels of lib/kernels/cpu (OpenMP + OpenBLAS).
#pragma once

#include <memory>
#include <vector>

#include "kernels/cpu/adamw_cpu.h"
#include "model/ops.h"

namespace race::model {

// model/ops.h's AdamWStep as the AdamW kernels' options (both backends check and apply these).
kernels::cpu::AdamWOptions adamw_options(const AdamWStep& step);

class CpuOps final : public Ops {
 public:
  float* allocate(int64_t count) override;
  int32_t* allocate_ints(int64_t count) override;
  uint8_t* allocate_bytes(int64_t count) override;
  int64_t allocated_bytes() const override { return allocated_bytes_; }
  void copy_from_host(float* device, const float* host, int64_t count) override;
  void copy_to_host(float* host, const float* device, int64_t count) override;
  void copy_ints_from_host(int32_t* device, const int32_t* host, int64_t count) override;
  void copy_bytes_from_host(uint8_t* device, const uint8_t* host, int64_t count) override;
  void synchronize() override {}
  void fill(float* x, float value, int64_t count) override;
  void add(float* y, const float* x, int64_t count) override;
  // fp32: the CPU kernels compute in fp32 throughout.
  ElementType operand_type() const override { return ElementType::fp32; }
  OperandOut allocate_operands(int64_t count) override { return allocate(count); }
  void to_operands(OperandOut y, const float* x, int64_t count) override;

  void linear_forward(float* y, Operand x, Operand w, const float* b, int64_t rows, int64_t in,
                      int64_t out) override;
  void linear_backward(float* dx, float* dw, float* db, Operand dy, Operand x, Operand w, int64_t rows,
                       int64_t in, int64_t out) override;
  void layernorm_forward(OperandOut y, float* mean, float* rstd, const float* x, const float* w, const float* b,
                         int64_t rows, int64_t channels, float eps) override;
  void residual_layernorm_forward(float* residual, OperandOut y, float* mean, float* rstd, const float* x,
                                  const float* r, const float* w, const float* b, int64_t rows, int64_t channels,
                                  float eps) override;
  void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                          const float* mean, const float* rstd, int64_t rows, int64_t channels) override;
  void gelu_forward(OperandOut y, const float* x, int64_t count) override;
  void gelu_backward(OperandOut dx, const float* dy, const float* x, int64_t count) override;
  void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t n, int64_t vocab,
                         int64_t channels, bool accumulate) override;
  void embedding_backward(float* dtable, const int32_t* ids, const float* dout, int64_t n, int64_t vocab,
                          int64_t channels) override;
  double cross_entropy(OperandOut dlogits, const float* logits, const int32_t* targets, int64_t rows,
                       int64_t vocab, float grad_scale, int64_t* count) override;
  void split_heads(OperandOut q, OperandOut k, OperandOut v, const float* qkv, int64_t batch, int64_t seq_len,
                   int64_t heads, int64_t head_dim) override;
  void merge_heads(OperandOut qkv, Operand q, Operand k, Operand v, int64_t batch, int64_t seq_len,
                   int64_t heads, int64_t head_dim) override;
  void heads_to_rows(OperandOut rows, Operand heads, int64_t batch, int64_t seq_len, int64_t head_count,
                     int64_t head_dim) override;
  void rows_to_heads(OperandOut heads, const float* rows, int64_t batch, int64_t seq_len, int64_t head_count,
                     int64_t head_dim) override;
  void rope_forward(OperandOut out, Operand x, const int32_t* positions, int64_t batch, int64_t heads,
                    int64_t seq_len, int64_t head_dim, float base) override;
  void rope_backward(OperandOut dx, Operand dout, const int32_t* positions, int64_t batch, int64_t heads,
                     int64_t seq_len, int64_t head_dim, float base) override;
  void race_attention_forward(const kernels::RaceAttentionShape& shape,
                              const kernels::RaceAttentionOptions& options,
                              const RaceOperands& inputs, OperandOut out) override;
  void race_attention_backward(const kernels::RaceAttentionShape& shape,
                               const kernels::RaceAttentionOptions& options,
                               const RaceOperands& inputs, Operand dout,
                               const RaceGradientOperands& grads) override;
  void softmax_attention_forward(const kernels::SoftmaxAttentionShape& shape,
                                 const kernels::SoftmaxAttentionOptions& options,
                                 const SoftmaxOperands& inputs, OperandOut out, float* lse) override;
  void softmax_attention_backward(const kernels::SoftmaxAttentionShape& shape,
                                  const kernels::SoftmaxAttentionOptions& options,
                                  const SoftmaxOperands& inputs, Operand out, const float* lse,
                                  Operand dout, const SoftmaxGradientOperands& grads) override;
  void race_attention_decode(const kernels::RaceAttentionShape& shape,
                             const kernels::RaceAttentionOptions& options, const float* q, const float* k,
                             const float* v, const float* planes, const float* beta, float* key_sums,
                             float* value_sums, float* out) override;
  void softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale, const float* q,
                                const float* k, const float* v, float* keys, float* values, int64_t capacity,
                                int64_t position, float* out) override;
  void pool_forward(float* pooled, Operand rows, const uint8_t* key_mask, int64_t batch, int64_t seq_len,
                    int64_t channels, bool cls) override;
  void pool_backward(float* drows, const float* dpooled, const uint8_t* key_mask, int64_t batch,
                     int64_t seq_len, int64_t channels, bool cls) override;
  void dropout(float* y, const float* x, int64_t count, float p, uint64_t seed) override;
  void exp_forward(float* y, const float* x, int64_t count) override;
  void exp_backward(float* dx, const float* dy, const float* y, int64_t count) override;
  double grad_norm(const float* grads, int64_t count) override;
  void adamw(float* params, const float* grads, float* m, float* v, const std::vector<ParamRange>& ranges,
             const AdamWStep& step) override;

 private:
  std::vector<std::unique_ptr<float[]>> float_buffers_;
  std::vector<std::unique_ptr<int32_t[]>> int_buffers_;
  std::vector<std::unique_ptr<uint8_t[]>> byte_buffers_;
  int64_t allocated_bytes_ = 0;
  std::vector<float> race_scratch_;  // the RACE backward's per-token storage, kept across calls
};

}  // namespace race::model
