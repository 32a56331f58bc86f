// EmulatedBf16Ops: the CPU kernels behind an Ops whose product operands are stored in bf16, as CudaOps stores
// them with --precision bf16. Every operand a model writes for a product is rounded to bf16 (nearest even)
// into 2-byte storage, and every product widens its bf16 operands back to fp32 before the fp32 CPU kernel
// runs, so the result is what a device that multiplies the stored bf16 values exactly with fp32 sums gives.
// Lets the host test a model's bf16 plumbing (which buffers are operands, when the weight copy is rounded,
// the memory plan) without a GPU. Test code: it copies every operand it touches, so it cannot see a bf16
// output that overlaps an input of the same call (CudaOps checks that on the device side).
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "core/error.h"
#include "model/cpu_ops.h"
#include "model/ops.h"

namespace race::test {

using model::AdamWStep;
using model::ElementType;
using model::Operand;
using model::OperandOut;
using model::ParamRange;

// Round to nearest even, written independently of the kernels' conversions.
inline uint16_t round_to_bf16(float x) {
  uint32_t bits = 0;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) return 0x7fc0;  // NaN stays NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float x = 0.f;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

class EmulatedBf16Ops final : public model::Ops {
 public:
  int64_t bf16_products = 0, fp32_products = 0;  // linear calls by operand type
  int64_t to_operands_elements = 0;              // rounded by to_operands

  int64_t allocated_bytes() const override { return inner_.allocated_bytes(); }
  ElementType operand_type() const override { return ElementType::bf16; }
  OperandOut allocate_operands(int64_t count) override {
    return {inner_.allocate_bytes(2 * count), ElementType::bf16};
  }
  void to_operands(OperandOut y, const float* x, int64_t count) override {
    to_operands_elements += count;
    store(y, std::vector<float>(x, x + count));
  }

  void linear_forward(float* y, Operand x, Operand w, const float* b, int64_t rows, int64_t in,
                      int64_t out) override {
    count_product({x, w});
    const std::vector<float> x32 = widen(x, rows * in), w32 = widen(w, out * in);
    inner_.linear_forward(y, x32.data(), w32.data(), b, rows, in, out);
  }
  void linear_backward(float* dx, float* dw, float* db, Operand dy, Operand x, Operand w, int64_t rows,
                       int64_t in, int64_t out) override {
    count_product({dy, x, w});
    const std::vector<float> dy32 = widen(dy, rows * out), x32 = widen(x, rows * in),
                             w32 = widen(w, out * in);
    inner_.linear_backward(dx, dw, db, dy32.data(), x.data != nullptr ? x32.data() : nullptr,
                           w.data != nullptr ? w32.data() : nullptr, rows, in, out);
  }
  void layernorm_forward(OperandOut y, float* mean, float* rstd, const float* x, const float* w,
                         const float* b, int64_t rows, int64_t channels, float eps) override {
    std::vector<float> y32(static_cast<size_t>(rows * channels));
    inner_.layernorm_forward(y32.data(), mean, rstd, x, w, b, rows, channels, eps);
    store(y, y32);
  }
  void residual_layernorm_forward(float* residual, OperandOut y, float* mean, float* rstd, const float* x,
                                  const float* r, const float* w, const float* b, int64_t rows,
                                  int64_t channels, float eps) override {
    std::vector<float> y32(static_cast<size_t>(rows * channels));
    inner_.residual_layernorm_forward(residual, y32.data(), mean, rstd, x, r, w, b, rows, channels, eps);
    store(y, y32);
  }
  void gelu_forward(OperandOut y, const float* x, int64_t count) override {
    std::vector<float> y32(static_cast<size_t>(count));
    inner_.gelu_forward(y32.data(), x, count);
    store(y, y32);
  }
  void gelu_backward(OperandOut dx, const float* dy, const float* x, int64_t count) override {
    std::vector<float> dx32(static_cast<size_t>(count));
    inner_.gelu_backward(dx32.data(), dy, x, count);
    store(dx, dx32);
  }
  double cross_entropy(OperandOut dlogits, const float* logits, const int32_t* targets, int64_t rows,
                       int64_t vocab, float grad_scale, int64_t* count) override {
    if (dlogits.data == nullptr || dlogits.type == ElementType::fp32)
      return inner_.cross_entropy(dlogits, logits, targets, rows, vocab, grad_scale, count);
    std::vector<float> d32(static_cast<size_t>(rows * vocab));
    const double loss = inner_.cross_entropy(d32.data(), logits, targets, rows, vocab, grad_scale, count);
    store(dlogits, d32);
    return loss;
  }
  void split_heads(OperandOut q, OperandOut k, OperandOut v, const float* qkv, int64_t batch, int64_t seq_len,
                   int64_t heads, int64_t head_dim) override {
    const int64_t n = batch * heads * seq_len * head_dim;
    std::vector<float> q32(static_cast<size_t>(n)), k32(q32.size()), v32(q32.size());
    inner_.split_heads(q32.data(), k32.data(), v32.data(), qkv, batch, seq_len, heads, head_dim);
    store(q, q32), store(k, k32), store(v, v32);
  }
  void merge_heads(OperandOut qkv, Operand q, Operand k, Operand v, int64_t batch, int64_t seq_len,
                   int64_t heads, int64_t head_dim) override {
    const int64_t n = batch * heads * seq_len * head_dim;
    const std::vector<float> q32 = widen(q, n), k32 = widen(k, n), v32 = widen(v, n);
    std::vector<float> qkv32(static_cast<size_t>(3 * n));
    inner_.merge_heads(qkv32.data(), q32.data(), k32.data(), v32.data(), batch, seq_len, heads, head_dim);
    store(qkv, qkv32);
  }
  void heads_to_rows(OperandOut rows, Operand heads, int64_t batch, int64_t seq_len, int64_t head_count,
                     int64_t head_dim) override {
    const int64_t n = batch * seq_len * head_count * head_dim;
    const std::vector<float> heads32 = widen(heads, n);
    std::vector<float> rows32(static_cast<size_t>(n));
    inner_.heads_to_rows(rows32.data(), heads32.data(), batch, seq_len, head_count, head_dim);
    store(rows, rows32);
  }
  void rows_to_heads(OperandOut heads, const float* rows, int64_t batch, int64_t seq_len, int64_t head_count,
                     int64_t head_dim) override {
    std::vector<float> heads32(static_cast<size_t>(batch * seq_len * head_count * head_dim));
    inner_.rows_to_heads(heads32.data(), rows, batch, seq_len, head_count, head_dim);
    store(heads, heads32);
  }
  void rope_forward(OperandOut out, Operand x, const int32_t* positions, int64_t batch, int64_t heads,
                    int64_t seq_len, int64_t head_dim, float base) override {
    const std::vector<float> x32 = widen(x, batch * heads * seq_len * head_dim);
    std::vector<float> out32(x32.size());
    inner_.rope_forward(out32.data(), x32.data(), positions, batch, heads, seq_len, head_dim, base);
    store(out, out32);
  }
  void rope_backward(OperandOut dx, Operand dout, const int32_t* positions, int64_t batch, int64_t heads,
                     int64_t seq_len, int64_t head_dim, float base) override {
    const std::vector<float> dout32 = widen(dout, batch * heads * seq_len * head_dim);
    std::vector<float> dx32(dout32.size());
    inner_.rope_backward(dx32.data(), dout32.data(), positions, batch, heads, seq_len, head_dim, base);
    store(dx, dx32);
  }
  void race_attention_forward(const kernels::RaceAttentionShape& shape,
                              const kernels::RaceAttentionOptions& options, const model::RaceOperands& inputs,
                              OperandOut out) override {
    const int64_t n = shape.batch * shape.heads * shape.seq_len * shape.head_dim;
    const std::vector<float> q = widen(inputs.q, n), k = widen(inputs.k, n), v = widen(inputs.v, n);
    std::vector<float> out32(static_cast<size_t>(n));
    inner_.race_attention_forward(
        shape, options,
        kernels::RaceAttentionInputs{q.data(), k.data(), v.data(), inputs.planes, inputs.beta,
                                     inputs.key_mask, inputs.segment_ids},
        out32.data());
    store(out, out32);
  }
  void race_attention_backward(const kernels::RaceAttentionShape& shape,
                               const kernels::RaceAttentionOptions& options,
                               const model::RaceOperands& inputs, Operand dout,
                               const model::RaceGradientOperands& grads) override {
    const int64_t n = shape.batch * shape.heads * shape.seq_len * shape.head_dim;
    const std::vector<float> q = widen(inputs.q, n), k = widen(inputs.k, n), v = widen(inputs.v, n),
                             dout32 = widen(dout, n);
    std::vector<float> dq(static_cast<size_t>(n)), dk(dq.size()), dv(dq.size());
    inner_.race_attention_backward(
        shape, options,
        kernels::RaceAttentionInputs{q.data(), k.data(), v.data(), inputs.planes, inputs.beta,
                                     inputs.key_mask, inputs.segment_ids},
        dout32.data(),
        kernels::RaceAttentionGradients{grads.dq.data != nullptr ? dq.data() : nullptr,
                                        grads.dk.data != nullptr ? dk.data() : nullptr,
                                        grads.dv.data != nullptr ? dv.data() : nullptr, grads.dbeta});
    store_if(grads.dq, dq), store_if(grads.dk, dk), store_if(grads.dv, dv);
  }
  void softmax_attention_forward(const kernels::SoftmaxAttentionShape& shape,
                                 const kernels::SoftmaxAttentionOptions& options,
                                 const model::SoftmaxOperands& inputs, OperandOut out, float* lse) override {
    const int64_t n = shape.batch * shape.heads * shape.seq_len * shape.head_dim;
    const std::vector<float> q = widen(inputs.q, n), k = widen(inputs.k, n), v = widen(inputs.v, n);
    std::vector<float> out32(static_cast<size_t>(n));
    inner_.softmax_attention_forward(
        shape, options,
        kernels::SoftmaxAttentionInputs{q.data(), k.data(), v.data(), inputs.key_mask, inputs.segment_ids},
        out32.data(), lse);
    store(out, out32);
  }
  void softmax_attention_backward(const kernels::SoftmaxAttentionShape& shape,
                                  const kernels::SoftmaxAttentionOptions& options,
                                  const model::SoftmaxOperands& inputs, Operand out, const float* lse,
                                  Operand dout, const model::SoftmaxGradientOperands& grads) override {
    const int64_t n = shape.batch * shape.heads * shape.seq_len * shape.head_dim;
    const std::vector<float> q = widen(inputs.q, n), k = widen(inputs.k, n), v = widen(inputs.v, n),
                             out32 = widen(out, n), dout32 = widen(dout, n);
    std::vector<float> dq(static_cast<size_t>(n)), dk(dq.size()), dv(dq.size());
    inner_.softmax_attention_backward(
        shape, options,
        kernels::SoftmaxAttentionInputs{q.data(), k.data(), v.data(), inputs.key_mask, inputs.segment_ids},
        out32.data(), lse, dout32.data(),
        kernels::SoftmaxAttentionGradients{grads.dq.data != nullptr ? dq.data() : nullptr,
                                           grads.dk.data != nullptr ? dk.data() : nullptr,
                                           grads.dv.data != nullptr ? dv.data() : nullptr});
    store_if(grads.dq, dq), store_if(grads.dk, dk), store_if(grads.dv, dv);
  }
  void pool_forward(float* pooled, Operand rows, const uint8_t* key_mask, int64_t batch, int64_t seq_len,
                    int64_t channels, bool cls) override {
    const std::vector<float> rows32 = widen(rows, batch * seq_len * channels);
    inner_.pool_forward(pooled, rows32.data(), key_mask, batch, seq_len, channels, cls);
  }

  // Everything else is the CPU's, unchanged.
  float* allocate(int64_t count) override { return inner_.allocate(count); }
  int32_t* allocate_ints(int64_t count) override { return inner_.allocate_ints(count); }
  uint8_t* allocate_bytes(int64_t count) override { return inner_.allocate_bytes(count); }
  void copy_from_host(float* device, const float* host, int64_t count) override {
    inner_.copy_from_host(device, host, count);
  }
  void copy_to_host(float* host, const float* device, int64_t count) override {
    inner_.copy_to_host(host, device, count);
  }
  void copy_ints_from_host(int32_t* device, const int32_t* host, int64_t count) override {
    inner_.copy_ints_from_host(device, host, count);
  }
  void copy_bytes_from_host(uint8_t* device, const uint8_t* host, int64_t count) override {
    inner_.copy_bytes_from_host(device, host, count);
  }
  void synchronize() override { inner_.synchronize(); }
  void fill(float* x, float value, int64_t count) override { inner_.fill(x, value, count); }
  void add(float* y, const float* x, int64_t count) override { inner_.add(y, x, count); }
  void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                          const float* mean, const float* rstd, int64_t rows, int64_t channels) override {
    inner_.layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, rows, channels);
  }
  void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t n, int64_t vocab,
                         int64_t channels, bool accumulate) override {
    inner_.embedding_forward(out, ids, table, n, vocab, channels, accumulate);
  }
  void embedding_backward(float* dtable, const int32_t* ids, const float* dout, int64_t n, int64_t vocab,
                          int64_t channels) override {
    inner_.embedding_backward(dtable, ids, dout, n, vocab, channels);
  }
  void race_attention_decode(const kernels::RaceAttentionShape& shape,
                             const kernels::RaceAttentionOptions& options, const float* q, const float* k,
                             const float* v, const float* planes, const float* beta, float* key_sums,
                             float* value_sums, float* out) override {
    inner_.race_attention_decode(shape, options, q, k, v, planes, beta, key_sums, value_sums, out);
  }
  void softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale, const float* q,
                                const float* k, const float* v, float* keys, float* values, int64_t capacity,
                                int64_t position, float* out) override {
    inner_.softmax_attention_decode(heads, head_dim, window, scale, q, k, v, keys, values, capacity, position,
                                    out);
  }
  void pool_backward(float* drows, const float* dpooled, const uint8_t* key_mask, int64_t batch,
                     int64_t seq_len, int64_t channels, bool cls) override {
    inner_.pool_backward(drows, dpooled, key_mask, batch, seq_len, channels, cls);
  }
  void dropout(float* y, const float* x, int64_t count, float p, uint64_t seed) override {
    inner_.dropout(y, x, count, p, seed);
  }
  void exp_forward(float* y, const float* x, int64_t count) override { inner_.exp_forward(y, x, count); }
  void exp_backward(float* dx, const float* dy, const float* y, int64_t count) override {
    inner_.exp_backward(dx, dy, y, count);
  }
  double grad_norm(const float* grads, int64_t count) override { return inner_.grad_norm(grads, count); }
  // The CPU's update, then each range's copy rounded from the updated values.
  void adamw(float* params, const float* grads, float* m, float* v, const std::vector<ParamRange>& ranges,
             const AdamWStep& step) override {
    std::vector<ParamRange> plain = ranges;
    for (ParamRange& r : plain) r.copy = {};
    inner_.adamw(params, grads, m, v, plain, step);
    for (const ParamRange& r : ranges)
      if (r.copy.data != nullptr)
        store(r.copy, std::vector<float>(params + r.offset, params + r.offset + r.count));
  }

 private:
  // The operands of one product must share a type, as on a GPU.
  void count_product(std::initializer_list<Operand> operands) {
    ElementType type = ElementType::fp32;
    bool first = true;
    for (const Operand& o : operands) {
      if (o.data == nullptr) continue;
      if (!first && o.type != type) fail("EmulatedBf16Ops: a product mixes fp32 and bf16 operands");
      type = o.type, first = false;
    }
    ++(type == ElementType::bf16 ? bf16_products : fp32_products);
  }
  static std::vector<float> widen(Operand x, int64_t count) {
    std::vector<float> out(static_cast<size_t>(count));
    if (x.data == nullptr) return out;
    if (x.type == ElementType::fp32) {
      std::memcpy(out.data(), x.data, out.size() * sizeof(float));
    } else {
      const auto* h = static_cast<const uint16_t*>(x.data);
      for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_float(h[i]);
    }
    return out;
  }
  static void store_if(OperandOut y, const std::vector<float>& values) {
    if (y.data != nullptr) store(y, values);
  }
  static void store(OperandOut y, const std::vector<float>& values) {
    if (y.type == ElementType::fp32) {
      std::memcpy(y.data, values.data(), values.size() * sizeof(float));
    } else {
      auto* h = static_cast<uint16_t*>(y.data);
      for (size_t i = 0; i < values.size(); ++i) h[i] = round_to_bf16(values[i]);
    }
  }

  model::CpuOps inner_;
};

}  // namespace race::test
