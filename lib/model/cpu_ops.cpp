// CpuOps: forwards each operation to its CPU kernel; the layout helpers (head split and merge) are here
// because they are pure data movement with no numerics to test apart from the model.
#include "model/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/adamw_cpu.h"
#include "kernels/cpu/attention_decode_cpu.h"
#include "kernels/cpu/cross_entropy_cpu.h"
#include "kernels/cpu/embedding_cpu.h"
#include "kernels/cpu/gelu_cpu.h"
#include "kernels/cpu/layernorm_cpu.h"
#include "kernels/cpu/linear_cpu.h"
#include "kernels/cpu/race_attention_cpu.h"
#include "kernels/cpu/rope_cpu.h"
#include "kernels/cpu/softmax_attention_cpu.h"

namespace race::model {

namespace cpu = kernels::cpu;

float* CpuOps::allocate(int64_t count) {
  allocated_bytes_ += count * static_cast<int64_t>(sizeof(float));
  float_buffers_.push_back(std::make_unique<float[]>(static_cast<size_t>(count)));
  return float_buffers_.back().get();
}

int32_t* CpuOps::allocate_ints(int64_t count) {
  allocated_bytes_ += count * static_cast<int64_t>(sizeof(int32_t));
  int_buffers_.push_back(std::make_unique<int32_t[]>(static_cast<size_t>(count)));
  return int_buffers_.back().get();
}

uint8_t* CpuOps::allocate_bytes(int64_t count) {
  allocated_bytes_ += count;
  byte_buffers_.push_back(std::make_unique<uint8_t[]>(static_cast<size_t>(count)));
  return byte_buffers_.back().get();
}

void CpuOps::copy_bytes_from_host(uint8_t* device, const uint8_t* host, int64_t count) {
  std::memcpy(device, host, static_cast<size_t>(count));
}

void CpuOps::copy_from_host(float* device, const float* host, int64_t count) {
  std::memcpy(device, host, static_cast<size_t>(count) * sizeof(float));
}
void CpuOps::copy_to_host(float* host, const float* device, int64_t count) {
  std::memcpy(host, device, static_cast<size_t>(count) * sizeof(float));
}
void CpuOps::copy_ints_from_host(int32_t* device, const int32_t* host, int64_t count) {
  std::memcpy(device, host, static_cast<size_t>(count) * sizeof(int32_t));
}

void CpuOps::fill(float* x, float value, int64_t count) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) x[i] = value;
}

void CpuOps::add(float* y, const float* x, int64_t count) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) y[i] += x[i];
}

void CpuOps::to_operands(OperandOut y, const float* x, int64_t count) {
  std::copy_n(x, count, fp32_data(y, "to_operands: y"));
}

void CpuOps::linear_forward(float* y, Operand x, Operand w, const float* b, int64_t rows, int64_t in,
                            int64_t out) {
  cpu::linear_forward(y, fp32_data(x, "linear_forward: x"), fp32_data(w, "linear_forward: w"), b, rows, in,
                      out);
}
void CpuOps::linear_backward(float* dx, float* dw, float* db, Operand dy, Operand x, Operand w, int64_t rows,
                             int64_t in, int64_t out) {
  cpu::linear_backward(dx, dw, db, fp32_data(dy, "linear_backward: dy"), fp32_data(x, "linear_backward: x"),
                       fp32_data(w, "linear_backward: w"), rows, in, out);
}
void CpuOps::layernorm_forward(OperandOut y, float* mean, float* rstd, const float* x, const float* w,
                               const float* b, int64_t rows, int64_t channels, float eps) {
  cpu::layernorm_forward(fp32_data(y, "layernorm_forward: y"), mean, rstd, x, w, b, rows, channels, eps);
}
void CpuOps::residual_layernorm_forward(float* residual, OperandOut y, float* mean, float* rstd, const float* x,
                                        const float* r, const float* w, const float* b, int64_t rows,
                                        int64_t channels, float eps) {
  cpu::residual_layernorm_forward(residual, fp32_data(y, "residual_layernorm_forward: y"), mean, rstd, x, r, w, b,
                                  rows, channels, eps);
}
void CpuOps::layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                                const float* w, const float* mean, const float* rstd, int64_t rows,
                                int64_t channels) {
  cpu::layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, rows, channels);
}
void CpuOps::gelu_forward(OperandOut y, const float* x, int64_t count) {
  cpu::gelu_forward(fp32_data(y, "gelu_forward: y"), x, count);
}
void CpuOps::gelu_backward(OperandOut dx, const float* dy, const float* x, int64_t count) {
  cpu::gelu_backward(fp32_data(dx, "gelu_backward: dx"), dy, x, count);
}
void CpuOps::embedding_forward(float* out, const int32_t* ids, const float* table, int64_t n, int64_t vocab,
                               int64_t channels, bool accumulate) {
  cpu::embedding_forward(out, ids, table, n, vocab, channels, accumulate);
}
void CpuOps::embedding_backward(float* dtable, const int32_t* ids, const float* dout, int64_t n,
                                int64_t vocab, int64_t channels) {
  cpu::embedding_backward(dtable, ids, dout, n, vocab, channels);
}
double CpuOps::cross_entropy(OperandOut dlogits, const float* logits, const int32_t* targets, int64_t rows,
                             int64_t vocab, float grad_scale, int64_t* count) {
  float* gradient = dlogits.data != nullptr ? fp32_data(dlogits, "cross_entropy: dlogits") : nullptr;
  const auto stats = cpu::softmax_cross_entropy(gradient, nullptr, logits, targets, rows, vocab, grad_scale);
  *count = stats.count;
  return stats.loss_sum;
}

void CpuOps::split_heads(OperandOut q_out, OperandOut k_out, OperandOut v_out, const float* qkv, int64_t batch,
                         int64_t seq_len, int64_t heads, int64_t head_dim) {
  float *q = fp32_data(q_out, "split_heads: q"), *k = fp32_data(k_out, "split_heads: k"),
        *v = fp32_data(v_out, "split_heads: v");
  const int64_t C = heads * head_dim;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq_len; ++t) {
      const float* row = qkv + (b * seq_len + t) * 3 * C;  // (3, H, D)
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t dst = ((b * heads + h) * seq_len + t) * head_dim;
        std::copy_n(row + h * head_dim, head_dim, q + dst);
        std::copy_n(row + C + h * head_dim, head_dim, k + dst);
        std::copy_n(row + 2 * C + h * head_dim, head_dim, v + dst);
      }
    }
}

void CpuOps::merge_heads(OperandOut merged, Operand q_in, Operand k_in, Operand v_in, int64_t batch,
                         int64_t seq_len, int64_t heads, int64_t head_dim) {
  float* qkv = fp32_data(merged, "merge_heads: qkv");
  const float *q = fp32_data(q_in, "merge_heads: q"), *k = fp32_data(k_in, "merge_heads: k"),
              *v = fp32_data(v_in, "merge_heads: v");
  const int64_t C = heads * head_dim;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq_len; ++t) {
      float* row = qkv + (b * seq_len + t) * 3 * C;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t src = ((b * heads + h) * seq_len + t) * head_dim;
        std::copy_n(q + src, head_dim, row + h * head_dim);
        std::copy_n(k + src, head_dim, row + C + h * head_dim);
        std::copy_n(v + src, head_dim, row + 2 * C + h * head_dim);
      }
    }
}

void CpuOps::heads_to_rows(OperandOut rows_out, Operand heads_in, int64_t batch, int64_t seq_len,
                           int64_t head_count, int64_t head_dim) {
  float* rows = fp32_data(rows_out, "heads_to_rows: rows");
  const float* heads = fp32_data(heads_in, "heads_to_rows: heads");
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq_len; ++t)
      for (int64_t h = 0; h < head_count; ++h)
        std::copy_n(heads + ((b * head_count + h) * seq_len + t) * head_dim, head_dim,
                    rows + ((b * seq_len + t) * head_count + h) * head_dim);
}

void CpuOps::rows_to_heads(OperandOut heads_out, const float* rows, int64_t batch, int64_t seq_len,
                           int64_t head_count, int64_t head_dim) {
  float* heads = fp32_data(heads_out, "rows_to_heads: heads");
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq_len; ++t)
      for (int64_t h = 0; h < head_count; ++h)
        std::copy_n(rows + ((b * seq_len + t) * head_count + h) * head_dim, head_dim,
                    heads + ((b * head_count + h) * seq_len + t) * head_dim);
}

void CpuOps::rope_forward(OperandOut out, Operand x, const int32_t* positions, int64_t batch, int64_t heads,
                          int64_t seq_len, int64_t head_dim, float base) {
  cpu::rope_forward(fp32_data(out, "rope_forward: out"), fp32_data(x, "rope_forward: x"), positions, batch, heads,
                    seq_len, head_dim, base);
}
void CpuOps::rope_backward(OperandOut dx, Operand dout, const int32_t* positions, int64_t batch,
                           int64_t heads, int64_t seq_len, int64_t head_dim, float base) {
  cpu::rope_backward(fp32_data(dx, "rope_backward: dx"), fp32_data(dout, "rope_backward: dout"), positions, batch,
                     heads, seq_len, head_dim, base);
}

void CpuOps::race_attention_forward(const kernels::RaceAttentionShape& shape,
                                    const kernels::RaceAttentionOptions& options,
                                    const RaceOperands& inputs, OperandOut out) {
  cpu::race_attention_forward(shape, options, fp32_data(inputs, "race_attention_forward: q, k, v"),
                              fp32_data(out, "race_attention_forward: out"));
}

void CpuOps::race_attention_backward(const kernels::RaceAttentionShape& shape,
                                     const kernels::RaceAttentionOptions& options,
                                     const RaceOperands& inputs, Operand dout, const RaceGradientOperands& grads) {
  const int64_t bytes = cpu::race_attention_backward_scratch_bytes(shape, options);
  const auto floats = static_cast<size_t>(bytes) / sizeof(float);
  if (race_scratch_.size() < floats) race_scratch_.resize(floats);
  cpu::race_attention_backward(shape, options, fp32_data(inputs, "race_attention_backward: q, k, v"),
                               fp32_data(dout, "race_attention_backward: dout"),
                               fp32_data(grads, "race_attention_backward: dq, dk, dv"),
                               {race_scratch_.data(), bytes});
}

void CpuOps::softmax_attention_forward(const kernels::SoftmaxAttentionShape& shape,
                                       const kernels::SoftmaxAttentionOptions& options,
                                       const SoftmaxOperands& inputs, OperandOut out, float* lse) {
  cpu::softmax_attention_forward(shape, options, fp32_data(inputs, "softmax_attention_forward: q, k, v"),
                                 fp32_data(out, "softmax_attention_forward: out"), lse);
}
void CpuOps::softmax_attention_backward(const kernels::SoftmaxAttentionShape& shape,
                                        const kernels::SoftmaxAttentionOptions& options,
                                        const SoftmaxOperands& inputs, Operand out, const float* lse,
                                        Operand dout, const SoftmaxGradientOperands& grads) {
  cpu::softmax_attention_backward(shape, options, fp32_data(inputs, "softmax_attention_backward: q, k, v"),
                                  fp32_data(out, "softmax_attention_backward: out"), lse,
                                  fp32_data(dout, "softmax_attention_backward: dout"),
                                  fp32_data(grads, "softmax_attention_backward: dq, dk, dv"));
}

void CpuOps::race_attention_decode(const kernels::RaceAttentionShape& shape,
                                   const kernels::RaceAttentionOptions& options, const float* q, const float* k,
                                   const float* v, const float* planes, const float* beta, float* key_sums,
                                   float* value_sums, float* out) {
  cpu::race_attention_decode(shape, options, q, k, v, planes, beta, key_sums, value_sums, out);
}
void CpuOps::softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale,
                                      const float* q, const float* k, const float* v, float* keys,
                                      float* values, int64_t capacity, int64_t position, float* out) {
  cpu::softmax_attention_decode(heads, head_dim, window, scale, q, k, v, keys, values, capacity, position, out);
}

// Real tokens of row b (all T without a mask); a row with none pools to zero.
static int64_t real_tokens(const uint8_t* key_mask, int64_t b, int64_t seq_len) {
  if (key_mask == nullptr) return seq_len;
  int64_t count = 0;
  for (int64_t t = 0; t < seq_len; ++t) count += key_mask[b * seq_len + t] != 0;
  return count;
}

void CpuOps::pool_forward(float* pooled, Operand rows_in, const uint8_t* key_mask, int64_t batch, int64_t seq_len,
                          int64_t channels, bool cls) {
  const float* rows = fp32_data(rows_in, "pool_forward: rows");
  for (int64_t b = 0; b < batch; ++b) {
    float* out = pooled + b * channels;
    if (cls) {
      std::copy_n(rows + b * seq_len * channels, channels, out);
      continue;
    }
    std::vector<double> sum(static_cast<size_t>(channels), 0.0);
    for (int64_t t = 0; t < seq_len; ++t)
      if (key_mask == nullptr || key_mask[b * seq_len + t] != 0)
        for (int64_t c = 0; c < channels; ++c) sum[c] += rows[(b * seq_len + t) * channels + c];
    const int64_t count = real_tokens(key_mask, b, seq_len);
    for (int64_t c = 0; c < channels; ++c) out[c] = count > 0 ? static_cast<float>(sum[c] / static_cast<double>(count)) : 0.f;
  }
}

void CpuOps::pool_backward(float* drows, const float* dpooled, const uint8_t* key_mask, int64_t batch,
                           int64_t seq_len, int64_t channels, bool cls) {
  std::fill_n(drows, batch * seq_len * channels, 0.f);
  for (int64_t b = 0; b < batch; ++b) {
    const float* g = dpooled + b * channels;
    if (cls) {
      std::copy_n(g, channels, drows + b * seq_len * channels);
      continue;
    }
    const int64_t count = real_tokens(key_mask, b, seq_len);
    for (int64_t t = 0; t < seq_len; ++t)
      if (count > 0 && (key_mask == nullptr || key_mask[b * seq_len + t] != 0))
        for (int64_t c = 0; c < channels; ++c)
          drows[(b * seq_len + t) * channels + c] = g[c] / static_cast<float>(count);
  }
}

void CpuOps::dropout(float* y, const float* x, int64_t count, float p, uint64_t seed) {
  const float scale = 1.f / (1.f - p);
  // keep when the top 24 bits of splitmix64(seed + index) fall at or above p * 2^24
  const auto threshold = static_cast<uint64_t>(static_cast<double>(p) * 16777216.0);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    y[i] = (z >> 40) >= threshold ? x[i] * scale : 0.f;
  }
}

void CpuOps::exp_forward(float* y, const float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = std::exp(x[i]);
}
void CpuOps::exp_backward(float* dx, const float* dy, const float* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dx[i] += dy[i] * y[i];
}

double CpuOps::grad_norm(const float* grads, int64_t count) { return cpu::grad_norm(grads, count); }

cpu::AdamWOptions adamw_options(const AdamWStep& step) {
  cpu::AdamWOptions options;
  options.lr = step.lr;
  options.beta1 = step.beta1;
  options.beta2 = step.beta2;
  options.eps = step.eps;
  options.weight_decay = step.weight_decay;
  options.step = step.step;
  options.grad_scale = step.grad_scale;
  return options;
}

void CpuOps::adamw(float* params, const float* grads, float* m, float* v, const std::vector<ParamRange>& ranges,
                   const AdamWStep& step) {
  check_param_ranges(ranges);
  cpu::AdamWOptions options = adamw_options(step);
  cpu::adamw_step(nullptr, nullptr, nullptr, nullptr, 0, options);  // checks the options, touches nothing
  for (const ParamRange& r : ranges) {
    options.weight_decay = r.decay ? step.weight_decay : 0.f;
    cpu::adamw_step(params + r.offset, grads + r.offset, m + r.offset, v + r.offset, r.count, options);
    if (r.copy.data != nullptr) std::copy_n(params + r.offset, r.count, fp32_data(r.copy, "adamw: a range's copy"));
  }
}

}  // namespace race::model
