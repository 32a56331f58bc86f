// Ops on one CUDA device: device memory owned by this object (cudaMalloc, freed in the destructor) and the
// kernels of lib/kernels/cuda (the linear layer's products through cuBLASLt), with the semantics model/ops.h
// and the CPU kernels' headers document. Tensors are fp32 except the product operands and the attention
// tensors (q, k, v, the attention output and their gradients), which every typed method takes in fp32 or
// bf16: with GemmPrecision::bf16 the model keeps them in bf16 (operand_type()), cuBLASLt multiplies them as
// stored and the attention kernels read and write them so (computing in fp32); with fp32 it keeps them in
// fp32 and everything runs in fp32.
// Everything runs on the default stream in call order; the calls that return values to the host
// (cross_entropy, grad_norm, copy_to_host) and the index checks synchronise.
// Built only when the CUDA toolkit is found (RACE_HAVE_CUDA).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/adamw_cuda.h"
#include "kernels/cuda/linear_cuda.h"
#include "model/ops.h"

namespace race::model {

// The race::Error message for an allocation the device could not satisfy.
std::string device_out_of_memory_message(int64_t requested_bytes, int64_t free_bytes, int64_t total_bytes);

// The race::Error message for a call of `function` whose typed tensors (named; `subject` says what they are)
// are not all of one element type, or empty when they are; tensors with null data are not read and do not
// count.
std::string mixed_operands_message(const char* function,
                                   std::initializer_list<std::pair<const char*, Operand>> operands,
                                   const char* subject = "a product's operands");

class CudaOps final : public Ops {
 public:
  // Makes `device` the current CUDA device of this thread and uses it, with the linear layers' products in
  // `precision` (bf16: operand_type() is bf16); race::Error (with the reason) when there is no such device.
  explicit CudaOps(int device = 0, kernels::cuda::GemmPrecision precision = kernels::cuda::GemmPrecision::fp32);
  ~CudaOps() override;
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  float* allocate(int64_t count) override;
  int32_t* allocate_ints(int64_t count) override;
  uint8_t* allocate_bytes(int64_t count) override;
  int64_t allocated_bytes() const override { return allocated_bytes_; }
  int64_t free_device_bytes() const;  // cudaMemGetInfo: what other allocations can still take
  void copy_from_host(float* device, const float* host, int64_t count) override;
  void copy_to_host(float* host, const float* device, int64_t count) override;
  void copy_ints_from_host(int32_t* device, const int32_t* host, int64_t count) override;
  void copy_bytes_from_host(uint8_t* device, const uint8_t* host, int64_t count) override;
  void synchronize() override;
  void fill(float* x, float value, int64_t count) override;
  void add(float* y, const float* x, int64_t count) override;

  ElementType operand_type() const override { return operand_type_; }
  OperandOut allocate_operands(int64_t count) override;
  void to_operands(OperandOut y, const float* x, int64_t count) override;

  // A product's operands must all be fp32 or all bf16 (race::Error naming them otherwise), whatever
  // operand_type() is.
  void linear_forward(float* y, Operand x, Operand w, const float* b, int64_t rows, int64_t in,
                      int64_t out) override;
  void linear_backward(float* dx, float* dw, float* db, Operand dy, Operand x, Operand w, int64_t rows, int64_t in,
                       int64_t out) override;
  // A bf16 output must not overlap the fp32 inputs (race::Error): its 2-byte stores would overwrite inputs
  // that other threads have yet to read. fp32 outputs may alias as ops.h allows.
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
  // q, k, v of one call (and the tensors of one attention call, rope's out and x) must share a type:
  // race::Error naming them otherwise. The layouts' rows may differ in type from the heads.
  void split_heads(OperandOut q, OperandOut k, OperandOut v, const float* qkv, int64_t batch, int64_t seq_len,
                   int64_t heads, int64_t head_dim) override;
  void merge_heads(OperandOut qkv, Operand q, Operand k, Operand v, int64_t batch, int64_t seq_len, int64_t heads,
                   int64_t head_dim) override;
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
                                 const kernels::SoftmaxAttentionOptions& options, const SoftmaxOperands& inputs,
                                 OperandOut out, float* lse) override;
  void softmax_attention_backward(const kernels::SoftmaxAttentionShape& shape,
                                  const kernels::SoftmaxAttentionOptions& options, const SoftmaxOperands& inputs,
                                  Operand out, const float* lse, Operand dout,
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
  // Zero-filled device memory, kept in buffers_ until destruction; OOM becomes race::Error.
  void* allocate_device(int64_t bytes);

  std::vector<void*> buffers_;
  int64_t allocated_bytes_ = 0;
  ElementType operand_type_ = ElementType::fp32;  // bf16 with GemmPrecision::bf16
  kernels::cuda::AdamWTable adam_table_;  // the parameter ranges on the device, uploaded once
  // cuBLASLt's handle, workspace and chosen algorithms for the linear layer; created once a device is known.
  std::unique_ptr<kernels::cuda::GemmContext> gemm_;
  float* lse_scratch_ = nullptr;  // (B, H, T) for a softmax forward called without lse (the kernel needs one)
  int64_t lse_scratch_count_ = 0;
};

}  // namespace race::model
