// ProfiledOps: each method forwards to the wrapped Ops, timed while profiling is enabled.
#include "model/profiled_ops.h"

namespace race::model {

void ProfiledOps::add(const char* op, Clock::time_point start, double flops) {
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (OpTotal& total : totals_)
    if (total.op == op) {
      ++total.calls;
      total.seconds += seconds;
      total.flops += flops;
      return;
    }
  totals_.push_back({op, 1, seconds, flops});
}

float* ProfiledOps::allocate(int64_t count) { return inner_.allocate(count); }

int32_t* ProfiledOps::allocate_ints(int64_t count) { return inner_.allocate_ints(count); }

uint8_t* ProfiledOps::allocate_bytes(int64_t count) { return inner_.allocate_bytes(count); }

void ProfiledOps::copy_from_host(float* device, const float* host, int64_t count) {
  timed("copy_from_host", 0.0, [&] { return inner_.copy_from_host(device, host, count); });
}

void ProfiledOps::copy_to_host(float* host, const float* device, int64_t count) {
  timed("copy_to_host", 0.0, [&] { return inner_.copy_to_host(host, device, count); });
}

void ProfiledOps::copy_ints_from_host(int32_t* device, const int32_t* host, int64_t count) {
  timed("copy_ints_from_host", 0.0, [&] { return inner_.copy_ints_from_host(device, host, count); });
}

void ProfiledOps::copy_bytes_from_host(uint8_t* device, const uint8_t* host, int64_t count) {
  timed("copy_bytes_from_host", 0.0, [&] { return inner_.copy_bytes_from_host(device, host, count); });
}

void ProfiledOps::fill(float* x, float value, int64_t count) {
  timed("fill", 0.0, [&] { return inner_.fill(x, value, count); });
}

OperandOut ProfiledOps::allocate_operands(int64_t count) { return inner_.allocate_operands(count); }

void ProfiledOps::to_operands(OperandOut y, const float* x, int64_t count) {
  timed("to_operands", 0.0, [&] { return inner_.to_operands(y, x, count); });
}

void ProfiledOps::add(float* y, const float* x, int64_t count) {
  timed("add", 0.0, [&] { return inner_.add(y, x, count); });
}

void ProfiledOps::linear_forward(float* y, Operand x, Operand w, const float* b, int64_t rows, int64_t in,
                                 int64_t out) {
  timed("linear_forward", linear_flops(rows, in, out),
        [&] { return inner_.linear_forward(y, x, w, b, rows, in, out); });
}

void ProfiledOps::linear_backward(float* dx, float* dw, float* db, Operand dy, Operand x, Operand w,
                                  int64_t rows, int64_t in, int64_t out) {
  timed("linear_backward", linear_flops(rows, in, out) * ((dx != nullptr) + (dw != nullptr)),
        [&] { return inner_.linear_backward(dx, dw, db, dy, x, w, rows, in, out); });
}

void ProfiledOps::layernorm_forward(OperandOut y, float* mean, float* rstd, const float* x, const float* w,
                                    const float* b, int64_t rows, int64_t channels, float eps) {
  timed("layernorm_forward", 0.0,
        [&] { return inner_.layernorm_forward(y, mean, rstd, x, w, b, rows, channels, eps); });
}

void ProfiledOps::residual_layernorm_forward(float* residual, OperandOut y, float* mean, float* rstd,
                                             const float* x, const float* r, const float* w, const float* b,
                                             int64_t rows, int64_t channels, float eps) {
  timed("residual_layernorm_forward", 0.0, [&] {
    return inner_.residual_layernorm_forward(residual, y, mean, rstd, x, r, w, b, rows, channels, eps);
  });
}

void ProfiledOps::layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                                     const float* w, const float* mean, const float* rstd, int64_t rows,
                                     int64_t channels) {
  timed("layernorm_backward", 0.0,
        [&] { return inner_.layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, rows, channels); });
}

void ProfiledOps::gelu_forward(OperandOut y, const float* x, int64_t count) {
  timed("gelu_forward", 0.0, [&] { return inner_.gelu_forward(y, x, count); });
}

void ProfiledOps::gelu_backward(OperandOut dx, const float* dy, const float* x, int64_t count) {
  timed("gelu_backward", 0.0, [&] { return inner_.gelu_backward(dx, dy, x, count); });
}

void ProfiledOps::embedding_forward(float* out, const int32_t* ids, const float* table, int64_t n,
                                    int64_t vocab, int64_t channels, bool accumulate) {
  timed("embedding_forward", 0.0,
        [&] { return inner_.embedding_forward(out, ids, table, n, vocab, channels, accumulate); });
}

void ProfiledOps::embedding_backward(float* dtable, const int32_t* ids, const float* dout, int64_t n,
                                     int64_t vocab, int64_t channels) {
  timed("embedding_backward", 0.0,
        [&] { return inner_.embedding_backward(dtable, ids, dout, n, vocab, channels); });
}

double ProfiledOps::cross_entropy(OperandOut dlogits, const float* logits, const int32_t* targets,
                                  int64_t rows, int64_t vocab, float grad_scale, int64_t* count) {
  return timed("cross_entropy", 0.0, [&] {
    return inner_.cross_entropy(dlogits, logits, targets, rows, vocab, grad_scale, count);
  });
}

void ProfiledOps::split_heads(OperandOut q, OperandOut k, OperandOut v, const float* qkv, int64_t batch,
                              int64_t seq_len, int64_t heads, int64_t head_dim) {
  timed("split_heads", 0.0,
        [&] { return inner_.split_heads(q, k, v, qkv, batch, seq_len, heads, head_dim); });
}

void ProfiledOps::merge_heads(OperandOut qkv, Operand q, Operand k, Operand v, int64_t batch, int64_t seq_len,
                              int64_t heads, int64_t head_dim) {
  timed("merge_heads", 0.0,
        [&] { return inner_.merge_heads(qkv, q, k, v, batch, seq_len, heads, head_dim); });
}

void ProfiledOps::heads_to_rows(OperandOut rows, Operand heads, int64_t batch, int64_t seq_len,
                                int64_t head_count, int64_t head_dim) {
  timed("heads_to_rows", 0.0,
        [&] { return inner_.heads_to_rows(rows, heads, batch, seq_len, head_count, head_dim); });
}

void ProfiledOps::rows_to_heads(OperandOut heads, const float* rows, int64_t batch, int64_t seq_len,
                                int64_t head_count, int64_t head_dim) {
  timed("rows_to_heads", 0.0,
        [&] { return inner_.rows_to_heads(heads, rows, batch, seq_len, head_count, head_dim); });
}

void ProfiledOps::rope_forward(OperandOut out, Operand x, const int32_t* positions, int64_t batch,
                               int64_t heads, int64_t seq_len, int64_t head_dim, float base) {
  timed("rope_forward", 0.0,
        [&] { return inner_.rope_forward(out, x, positions, batch, heads, seq_len, head_dim, base); });
}

void ProfiledOps::rope_backward(OperandOut dx, Operand dout, const int32_t* positions, int64_t batch,
                                int64_t heads, int64_t seq_len, int64_t head_dim, float base) {
  timed("rope_backward", 0.0,
        [&] { return inner_.rope_backward(dx, dout, positions, batch, heads, seq_len, head_dim, base); });
}

void ProfiledOps::race_attention_forward(const kernels::RaceAttentionShape& shape,
                                         const kernels::RaceAttentionOptions& options,
                                         const RaceOperands& inputs, OperandOut out) {
  timed("race_attention_forward", 0.0,
        [&] { return inner_.race_attention_forward(shape, options, inputs, out); });
}

void ProfiledOps::race_attention_backward(const kernels::RaceAttentionShape& shape,
                                          const kernels::RaceAttentionOptions& options,
                                          const RaceOperands& inputs, Operand dout,
                                          const RaceGradientOperands& grads) {
  timed("race_attention_backward", 0.0,
        [&] { return inner_.race_attention_backward(shape, options, inputs, dout, grads); });
}

void ProfiledOps::softmax_attention_forward(const kernels::SoftmaxAttentionShape& shape,
                                            const kernels::SoftmaxAttentionOptions& options,
                                            const SoftmaxOperands& inputs, OperandOut out, float* lse) {
  timed("softmax_attention_forward", 0.0,
        [&] { return inner_.softmax_attention_forward(shape, options, inputs, out, lse); });
}

void ProfiledOps::softmax_attention_backward(const kernels::SoftmaxAttentionShape& shape,
                                             const kernels::SoftmaxAttentionOptions& options,
                                             const SoftmaxOperands& inputs, Operand out, const float* lse,
                                             Operand dout, const SoftmaxGradientOperands& grads) {
  timed("softmax_attention_backward", 0.0,
        [&] { return inner_.softmax_attention_backward(shape, options, inputs, out, lse, dout, grads); });
}

void ProfiledOps::race_attention_decode(const kernels::RaceAttentionShape& shape,
                                        const kernels::RaceAttentionOptions& options, const float* q,
                                        const float* k, const float* v, const float* planes,
                                        const float* beta, float* key_sums, float* value_sums, float* out) {
  timed("race_attention_decode", 0.0, [&] {
    return inner_.race_attention_decode(shape, options, q, k, v, planes, beta, key_sums, value_sums, out);
  });
}

void ProfiledOps::softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale,
                                           const float* q, const float* k, const float* v, float* keys,
                                           float* values, int64_t capacity, int64_t position, float* out) {
  timed("softmax_attention_decode", 0.0, [&] {
    return inner_.softmax_attention_decode(heads, head_dim, window, scale, q, k, v, keys, values, capacity,
                                           position, out);
  });
}

void ProfiledOps::pool_forward(float* pooled, Operand rows, const uint8_t* key_mask, int64_t batch,
                               int64_t seq_len, int64_t channels, bool cls) {
  timed("pool_forward", 0.0,
        [&] { return inner_.pool_forward(pooled, rows, key_mask, batch, seq_len, channels, cls); });
}

void ProfiledOps::pool_backward(float* drows, const float* dpooled, const uint8_t* key_mask, int64_t batch,
                                int64_t seq_len, int64_t channels, bool cls) {
  timed("pool_backward", 0.0,
        [&] { return inner_.pool_backward(drows, dpooled, key_mask, batch, seq_len, channels, cls); });
}

void ProfiledOps::dropout(float* y, const float* x, int64_t count, float p, uint64_t seed) {
  timed("dropout", 0.0, [&] { return inner_.dropout(y, x, count, p, seed); });
}

void ProfiledOps::exp_forward(float* y, const float* x, int64_t count) {
  timed("exp_forward", 0.0, [&] { return inner_.exp_forward(y, x, count); });
}

void ProfiledOps::exp_backward(float* dx, const float* dy, const float* y, int64_t count) {
  timed("exp_backward", 0.0, [&] { return inner_.exp_backward(dx, dy, y, count); });
}

double ProfiledOps::grad_norm(const float* grads, int64_t count) {
  return timed("grad_norm", 0.0, [&] { return inner_.grad_norm(grads, count); });
}

void ProfiledOps::adamw(float* params, const float* grads, float* m, float* v,
                        const std::vector<ParamRange>& ranges, const AdamWStep& step) {
  timed("adamw", 0.0, [&] { return inner_.adamw(params, grads, m, v, ranges, step); });
}

}  // namespace race::model
