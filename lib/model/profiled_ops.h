// An Ops that runs every call on another Ops and, while enabled, times each one: the profile behind
// race-bench model --profile. A timed call is bracketed by two synchronize() calls, so a device's queued work
// counts in the call that queued it, and the totals are summed per operation, with the FLOPs of the linear
// layers' products. Disabled (the default), it only forwards. Device-agnostic, like the model.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "model/ops.h"

namespace race::model {

class ProfiledOps final : public Ops {
 public:
  struct OpTotal {
    std::string op;  // the Ops method
    int64_t calls = 0;
    double seconds = 0.0;
    double flops = 0.0;  // linear_forward and linear_backward's matrix products; 0 for the others
  };

  explicit ProfiledOps(Ops& inner) : inner_(inner) {}
  void set_enabled(bool enabled) { enabled_ = enabled; }
  const std::vector<OpTotal>& totals() const { return totals_; }  // in the order of each op's first call
  void clear() { totals_.clear(); }

  void synchronize() override { inner_.synchronize(); }
  int64_t allocated_bytes() const override { return inner_.allocated_bytes(); }
  float* allocate(int64_t count) override;
  int32_t* allocate_ints(int64_t count) override;
  uint8_t* allocate_bytes(int64_t count) override;
  void copy_from_host(float* device, const float* host, int64_t count) override;
  void copy_to_host(float* host, const float* device, int64_t count) override;
  void copy_ints_from_host(int32_t* device, const int32_t* host, int64_t count) override;
  void copy_bytes_from_host(uint8_t* device, const uint8_t* host, int64_t count) override;
  void fill(float* x, float value, int64_t count) override;
  void add(float* y, const float* x, int64_t count) override;
  ElementType operand_type() const override { return inner_.operand_type(); }
  OperandOut allocate_operands(int64_t count) override;
  void to_operands(OperandOut y, const float* x, int64_t count) override;
  void linear_forward(float* y, Operand x, Operand w, const float* b, int64_t rows, int64_t in,
                      int64_t out) override;
  void linear_backward(float* dx, float* dw, float* db, Operand dy, Operand x, Operand w, int64_t rows,
                       int64_t in, int64_t out) override;
  void layernorm_forward(OperandOut y, float* mean, float* rstd, const float* x, const float* w,
                         const float* b, int64_t rows, int64_t channels, float eps) override;
  void residual_layernorm_forward(float* residual, OperandOut y, float* mean, float* rstd, const float* x,
                                  const float* r, const float* w, const float* b, int64_t rows,
                                  int64_t channels, float eps) override;
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
                              const kernels::RaceAttentionOptions& options, const RaceOperands& inputs,
                              OperandOut out) override;
  void race_attention_backward(const kernels::RaceAttentionShape& shape,
                               const kernels::RaceAttentionOptions& options, const RaceOperands& inputs,
                               Operand dout, const RaceGradientOperands& grads) override;
  void softmax_attention_forward(const kernels::SoftmaxAttentionShape& shape,
                                 const kernels::SoftmaxAttentionOptions& options,
                                 const SoftmaxOperands& inputs, OperandOut out, float* lse) override;
  void softmax_attention_backward(const kernels::SoftmaxAttentionShape& shape,
                                  const kernels::SoftmaxAttentionOptions& options,
                                  const SoftmaxOperands& inputs, Operand out, const float* lse, Operand dout,
                                  const SoftmaxGradientOperands& grads) override;
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
  using Clock = std::chrono::steady_clock;

  // 2 * rows * in * out: one of the linear layer's three products.
  static double linear_flops(int64_t rows, int64_t in, int64_t out) {
    return 2.0 * static_cast<double>(rows) * static_cast<double>(in) * static_cast<double>(out);
  }
  void add(const char* op, Clock::time_point start, double flops);
  template <class Call>
  auto timed(const char* op, double flops, Call&& call) {
    if (!enabled_) return call();
    inner_.synchronize();
    const Clock::time_point start = Clock::now();
    if constexpr (std::is_void_v<decltype(call())>) {
      call();
      inner_.synchronize();
      add(op, start, flops);
    } else {
      auto result = call();
      inner_.synchronize();
      add(op, start, flops);
      return result;
    }
  }

  Ops& inner_;
  bool enabled_ = false;
  std::vector<OpTotal> totals_;
};

}  // namespace race::model
