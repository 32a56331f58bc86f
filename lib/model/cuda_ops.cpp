// CudaOps: memory, copies and argument checks on the host; every operation forwards to its kernel in
// lib/kernels/cuda, mapping model::ElementType to the kernels' DType (and rejecting, with race::Error naming
// them, tensors of one call that must share a type and do not). Checks that the CPU kernels make on
// their inputs are made here too, with race::Error, so both backends reject the same calls: integer inputs
// used as indices are range-checked on the device first.
#include "model/cuda_ops.h"

#include <cuda_runtime.h>

#include <cmath>

#include "core/error.h"
#include "kernels/cuda/adamw_cuda.h"
#include "kernels/cuda/attention_decode_cuda.h"
#include "kernels/cuda/cross_entropy_cuda.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise_cuda.h"
#include "kernels/cuda/embedding_cuda.h"
#include "kernels/cuda/index_check_cuda.h"
#include "kernels/cuda/layernorm_cuda.h"
#include "kernels/cuda/layout_cuda.h"
#include "kernels/cuda/linear_cuda.h"
#include "kernels/cuda/pooling_cuda.h"
#include "kernels/cuda/rope_cuda.h"
#include "kernels/cuda/softmax_attention_cuda.h"
#include "model/cpu_ops.h"

namespace race::model {

namespace kc = kernels::cuda;

std::string device_out_of_memory_message(int64_t requested_bytes, int64_t free_bytes, int64_t total_bytes) {
  const auto mib = [](int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); };
  return fmt::format(
      "CUDA out of memory: could not allocate {} bytes ({:.1f} MiB); the device has {:.1f} MiB free of {:.1f} "
      "MiB. Hint: reduce the batch size or the sequence length, or enable recompute",
      requested_bytes, mib(requested_bytes), mib(free_bytes), mib(total_bytes));
}

std::string mixed_operands_message(const char* function,
                                   std::initializer_list<std::pair<const char*, Operand>> operands,
                                   const char* subject) {
  std::string types;
  bool mixed = false;
  const Operand* first = nullptr;
  for (const auto& [name, operand] : operands) {
    if (operand.data == nullptr) continue;
    if (first == nullptr) first = &operand;
    mixed = mixed || operand.type != first->type;
    types += fmt::format("{}{} is {}", types.empty() ? "" : ", ", name, element_type_name(operand.type));
  }
  if (!mixed) return {};
  return fmt::format(
      "{} (CUDA): {} must all be fp32 or all bf16, but {}; hint: keep every one of them in operand_type() "
      "(to_operands rounds an fp32 tensor to it)",
      function, subject, types);
}

namespace {

kc::DType dtype(ElementType type) { return type == ElementType::bf16 ? kc::DType::bf16 : kc::DType::f32; }

// The one element type of a call's typed tensors (null ones aside), `subject` in the message; race::Error
// when they differ.
kc::DType operands_dtype(const char* function, std::initializer_list<std::pair<const char*, Operand>> operands,
                         const char* subject = "a product's operands") {
  if (const std::string message = mixed_operands_message(function, operands, subject); !message.empty())
    throw Error(message);
  for (const auto& named : operands)
    if (named.second.data != nullptr) return dtype(named.second.type);
  return kc::DType::f32;  // nothing is read
}

// race::Error when a bf16 output of `count` elements overlaps an fp32 input of `input_count`: the kernels
// write a bf16 element where another thread may still have to read an fp32 one. fp32 outputs may alias their
// inputs as ops.h allows, element for element.
void check_apart(const char* function, const char* out_name, OperandOut out, int64_t count, const char* in_name,
                 const float* in, int64_t input_count) {
  if (out.type != ElementType::bf16 || out.data == nullptr || in == nullptr || count <= 0 || input_count <= 0)
    return;
  const auto out_begin = reinterpret_cast<uintptr_t>(out.data), in_begin = reinterpret_cast<uintptr_t>(in);
  const auto out_end = out_begin + static_cast<uintptr_t>(count * element_bytes(out.type)),
             in_end = in_begin + static_cast<uintptr_t>(input_count) * sizeof(float);
  if (out_begin < in_end && in_begin < out_end)
    fail("{} (CUDA): the bf16 {} overlaps the fp32 {}; hint: only an fp32 {} may be computed in place, give a "
         "bf16 one its own buffer",
         function, out_name, in_name, out_name);
}

}  // namespace

CudaOps::CudaOps(int device, kc::GemmPrecision precision)
    : operand_type_(precision == kc::GemmPrecision::bf16 ? ElementType::bf16 : ElementType::fp32) {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    cudaGetLastError();
    fail("CudaOps: no usable CUDA device ({}); check nvidia-smi, or use the CPU backend",
         status != cudaSuccess ? cudaGetErrorString(status) : "no device found");
  }
  if (device < 0 || device >= devices)
    fail("CudaOps: there is no CUDA device {}: this process sees {} (CUDA_VISIBLE_DEVICES limits them)", device,
         devices);
  RACE_CUDA_CHECK(cudaSetDevice(device));
  // The kernels' per-call scratch comes from this pool (kernels/cuda/stream_scratch.h); keeping what it
  // takes, instead of trimming it at every synchronisation, makes the next step's scratch free.
  cudaMemPool_t pool = nullptr;
  RACE_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t keep_all = UINT64_MAX;
  RACE_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
  gemm_ = std::make_unique<kc::GemmContext>(precision);
}

int64_t CudaOps::free_device_bytes() const {
  size_t free_bytes = 0, total_bytes = 0;
  RACE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return static_cast<int64_t>(free_bytes);
}

CudaOps::~CudaOps() {
  // Errors are ignored: a destructor cannot throw, and a failed free after a fault changes nothing.
  for (void* buffer : buffers_) cudaFree(buffer);
}

void* CudaOps::allocate_device(int64_t bytes) {
  if (bytes < 0) fail("CudaOps: cannot allocate {} bytes", bytes);
  if (bytes == 0) return nullptr;  // nothing to own; cudaMemset would reject a null pointer
  void* data = nullptr;
  cudaError_t status = cudaMalloc(&data, static_cast<size_t>(bytes));
  if (status == cudaErrorMemoryAllocation) {
    // The kernels' scratch pool keeps what it took (the constructor's release threshold): hand it back to
    // the device and try once more before giving up.
    cudaGetLastError();
    int device = 0;
    cudaMemPool_t pool = nullptr;
    RACE_CUDA_CHECK(cudaDeviceSynchronize());
    RACE_CUDA_CHECK(cudaGetDevice(&device));
    RACE_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    RACE_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
    status = cudaMalloc(&data, static_cast<size_t>(bytes));
  }
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    throw Error(device_out_of_memory_message(bytes, static_cast<int64_t>(free_bytes),
                                             static_cast<int64_t>(total_bytes)));
  }
  RACE_CUDA_CHECK(status);
  buffers_.push_back(data);
  allocated_bytes_ += bytes;
  RACE_CUDA_CHECK(cudaMemset(data, 0, static_cast<size_t>(bytes)));
  return data;
}

float* CudaOps::allocate(int64_t count) {
  return static_cast<float*>(allocate_device(count * static_cast<int64_t>(sizeof(float))));
}
int32_t* CudaOps::allocate_ints(int64_t count) {
  return static_cast<int32_t*>(allocate_device(count * static_cast<int64_t>(sizeof(int32_t))));
}
uint8_t* CudaOps::allocate_bytes(int64_t count) { return static_cast<uint8_t*>(allocate_device(count)); }

void CudaOps::copy_from_host(float* device, const float* host, int64_t count) {
  RACE_CUDA_CHECK(cudaMemcpy(device, host, static_cast<size_t>(count) * sizeof(float), cudaMemcpyHostToDevice));
}
void CudaOps::copy_to_host(float* host, const float* device, int64_t count) {
  RACE_CUDA_CHECK(cudaMemcpy(host, device, static_cast<size_t>(count) * sizeof(float), cudaMemcpyDeviceToHost));
}
void CudaOps::copy_ints_from_host(int32_t* device, const int32_t* host, int64_t count) {
  RACE_CUDA_CHECK(
      cudaMemcpy(device, host, static_cast<size_t>(count) * sizeof(int32_t), cudaMemcpyHostToDevice));
}
void CudaOps::copy_bytes_from_host(uint8_t* device, const uint8_t* host, int64_t count) {
  RACE_CUDA_CHECK(cudaMemcpy(device, host, static_cast<size_t>(count), cudaMemcpyHostToDevice));
}

void CudaOps::synchronize() { RACE_CUDA_CHECK(cudaDeviceSynchronize()); }

void CudaOps::fill(float* x, float value, int64_t count) { kc::fill(x, value, count); }
void CudaOps::add(float* y, const float* x, int64_t count) { kc::add(y, x, count); }

OperandOut CudaOps::allocate_operands(int64_t count) {
  if (count < 0) fail("CudaOps: cannot allocate {} operands", count);
  return {allocate_device(element_bytes(operand_type_) * count), operand_type_};
}

void CudaOps::to_operands(OperandOut y, const float* x, int64_t count) {
  if (count < 0) fail("to_operands (CUDA): count = {} must be >= 0", count);
  if (count == 0) return;
  if (y.data == nullptr || x == nullptr) fail("to_operands (CUDA): y and x must not be null");
  if (y.type == ElementType::bf16) {
    check_apart("to_operands", "y", y, count, "x", x, count);
    kc::round_to_bf16(y.data, x, count);
  } else if (y.data != x) {
    RACE_CUDA_CHECK(cudaMemcpy(y.data, x, static_cast<size_t>(count) * sizeof(float), cudaMemcpyDeviceToDevice));
  }
}

void CudaOps::linear_forward(float* y, Operand x, Operand w, const float* b, int64_t rows, int64_t in,
                             int64_t out) {
  const kc::DType operands = operands_dtype("linear_forward", {{"x", x}, {"w", w}});
  gemm_->linear_forward(y, x.data, w.data, operands, b, rows, in, out);
}
void CudaOps::linear_backward(float* dx, float* dw, float* db, Operand dy, Operand x, Operand w, int64_t rows,
                              int64_t in, int64_t out) {
  const kc::DType operands = operands_dtype("linear_backward", {{"dy", dy}, {"x", x}, {"w", w}});
  gemm_->linear_backward(dx, dw, db, dy.data, x.data, w.data, operands, rows, in, out);
}

namespace {
// The CPU kernel's checks of a LayerNorm forward's sizes and eps, for `function`'s messages.
void check_layernorm_forward(const char* function, int64_t rows, int64_t channels, float eps) {
  if (channels < 1 || rows < 0)
    fail("{} (CUDA): rows = {}, channels = {} must be >= 0, >= 1", function, rows, channels);
  if (!(eps > 0.f)) fail("{} (CUDA): eps = {} must be > 0", function, eps);
}
}  // namespace

void CudaOps::layernorm_forward(OperandOut y, float* mean, float* rstd, const float* x, const float* w,
                                const float* b, int64_t rows, int64_t channels, float eps) {
  check_layernorm_forward("layernorm_forward", rows, channels, eps);
  check_apart("layernorm_forward", "y", y, rows * channels, "x", x, rows * channels);
  kc::layernorm_forward(y.data, dtype(y.type), mean, rstd, x, w, b, rows, channels, eps);
}
void CudaOps::residual_layernorm_forward(float* residual, OperandOut y, float* mean, float* rstd, const float* x,
                                         const float* r, const float* w, const float* b, int64_t rows,
                                         int64_t channels, float eps) {
  check_layernorm_forward("residual_layernorm_forward", rows, channels, eps);
  const int64_t n = rows * channels;
  check_apart("residual_layernorm_forward", "y", y, n, "x", x, n);
  check_apart("residual_layernorm_forward", "y", y, n, "r", r, n);
  check_apart("residual_layernorm_forward", "y", y, n, "residual", residual, n);
  kc::residual_layernorm_forward(residual, y.data, dtype(y.type), mean, rstd, x, r, w, b, rows, channels, eps);
}
void CudaOps::layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                                 const float* mean, const float* rstd, int64_t rows, int64_t channels) {
  if (channels < 1 || rows < 0) fail("layernorm_backward (CUDA): rows = {}, channels = {} must be >= 0, >= 1", rows, channels);
  kc::layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, rows, channels);
}

void CudaOps::gelu_forward(OperandOut y, const float* x, int64_t count) {
  check_apart("gelu_forward", "y", y, count, "x", x, count);
  kc::gelu_forward(y.data, dtype(y.type), x, count);
}
void CudaOps::gelu_backward(OperandOut dx, const float* dy, const float* x, int64_t count) {
  check_apart("gelu_backward", "dx", dx, count, "dy", dy, count);
  check_apart("gelu_backward", "dx", dx, count, "x", x, count);
  kc::gelu_backward(dx.data, dtype(dx.type), dy, x, count);
}

// race::Error naming the first value of `values` (n, on the device) outside [0, limit) (other than
// `allowed`) and where it is.
static void check_indices(const char* function, const char* what, const int32_t* values, int64_t n, int64_t limit,
                          int32_t allowed) {
  const int32_t hi = limit > INT32_MAX ? INT32_MAX : static_cast<int32_t>(limit);
  const kc::InvalidIndex bad = kc::first_invalid_index(values, n, 0, hi, allowed);
  if (bad.position >= 0) fail("{} (CUDA): {} {} at position {} is outside [0, {})", function, what, bad.value, bad.position, limit);
}

void CudaOps::embedding_forward(float* out, const int32_t* ids, const float* table, int64_t n, int64_t vocab,
                                int64_t channels, bool accumulate) {
  check_indices("embedding_forward", "id", ids, n, vocab, 0);
  kc::embedding_forward(out, ids, table, n, channels, accumulate);
}
void CudaOps::embedding_backward(float* dtable, const int32_t* ids, const float* dout, int64_t n, int64_t vocab,
                                 int64_t channels) {
  check_indices("embedding_backward", "id", ids, n, vocab, 0);
  kc::embedding_backward(dtable, ids, dout, n, vocab, channels);
}

double CudaOps::cross_entropy(OperandOut dlogits, const float* logits, const int32_t* targets, int64_t rows,
                              int64_t vocab, float grad_scale, int64_t* count) {
  check_indices("cross_entropy", "target", targets, rows, vocab, -1);
  check_apart("cross_entropy", "dlogits", dlogits, rows * vocab, "logits", logits, rows * vocab);
  const kc::CrossEntropySums sums =
      kc::cross_entropy(dlogits.data, dtype(dlogits.type), logits, targets, rows, vocab, grad_scale);
  *count = sums.count;
  return sums.loss_sum;
}

void CudaOps::split_heads(OperandOut q, OperandOut k, OperandOut v, const float* qkv, int64_t batch,
                          int64_t seq_len, int64_t heads, int64_t head_dim) {
  const kc::DType heads_type = operands_dtype("split_heads", {{"q", q}, {"k", k}, {"v", v}}, "q, k and v");
  kc::split_heads(q.data, k.data, v.data, heads_type, qkv, batch, seq_len, heads, head_dim);
}
void CudaOps::merge_heads(OperandOut qkv, Operand q, Operand k, Operand v, int64_t batch, int64_t seq_len,
                          int64_t heads, int64_t head_dim) {
  const kc::DType heads_type = operands_dtype("merge_heads", {{"q", q}, {"k", k}, {"v", v}}, "q, k and v");
  kc::merge_heads(qkv.data, dtype(qkv.type), q.data, k.data, v.data, heads_type, batch, seq_len, heads, head_dim);
}
void CudaOps::heads_to_rows(OperandOut rows, Operand heads, int64_t batch, int64_t seq_len, int64_t head_count,
                            int64_t head_dim) {
  kc::heads_to_rows(rows.data, dtype(rows.type), heads.data, dtype(heads.type), batch, seq_len, head_count,
                    head_dim);
}
void CudaOps::rows_to_heads(OperandOut heads, const float* rows, int64_t batch, int64_t seq_len,
                            int64_t head_count, int64_t head_dim) {
  kc::rows_to_heads(heads.data, dtype(heads.type), rows, batch, seq_len, head_count, head_dim);
}

static void check_rope(const char* function, const int32_t* positions, int64_t batch, int64_t seq_len,
                       int64_t head_dim, float base) {
  if (head_dim < 2 || head_dim % 2 != 0) fail("{} (CUDA): head_dim = {} must be even and >= 2", function, head_dim);
  if (!(base > 0.f && std::isfinite(base))) fail("{} (CUDA): base = {} must be finite and > 0", function, base);
  if (positions != nullptr) check_indices(function, "position", positions, batch * seq_len, INT32_MAX, INT32_MAX);
}

void CudaOps::rope_forward(OperandOut out, Operand x, const int32_t* positions, int64_t batch, int64_t heads,
                           int64_t seq_len, int64_t head_dim, float base) {
  const kc::DType type = operands_dtype("rope_forward", {{"out", out}, {"x", x}}, "out and x");
  check_rope("rope_forward", positions, batch, seq_len, head_dim, base);
  kc::rope_rotate(out.data, x.data, type, positions, batch, heads, seq_len, head_dim, base, 1.f);
}
void CudaOps::rope_backward(OperandOut dx, Operand dout, const int32_t* positions, int64_t batch, int64_t heads,
                            int64_t seq_len, int64_t head_dim, float base) {
  const kc::DType type = operands_dtype("rope_backward", {{"dx", dx}, {"dout", dout}}, "dx and dout");
  check_rope("rope_backward", positions, batch, seq_len, head_dim, base);
  kc::rope_rotate(dx.data, dout.data, type, positions, batch, heads, seq_len, head_dim, base, -1.f);
}

namespace {
constexpr const char* kAttentionTensors = "an attention call's q, k, v, out, dout and gradients";
}  // namespace

void CudaOps::race_attention_forward(const kernels::RaceAttentionShape& shape,
                                     const kernels::RaceAttentionOptions& options, const RaceOperands& inputs,
                                     OperandOut out) {
  const kc::DType type = operands_dtype(
      "race_attention_forward", {{"q", inputs.q}, {"k", inputs.k}, {"v", inputs.v}, {"out", out}}, kAttentionTensors);
  kc::race_attention_forward(shape, options,
                             {type, inputs.q.data, inputs.k.data, inputs.v.data, inputs.planes, inputs.beta,
                              inputs.key_mask, inputs.segment_ids},
                             out.data);
}
void CudaOps::race_attention_backward(const kernels::RaceAttentionShape& shape,
                                      const kernels::RaceAttentionOptions& options, const RaceOperands& inputs,
                                      Operand dout, const RaceGradientOperands& grads) {
  const kc::DType type = operands_dtype("race_attention_backward",
                                        {{"q", inputs.q},
                                         {"k", inputs.k},
                                         {"v", inputs.v},
                                         {"dout", dout},
                                         {"dq", grads.dq},
                                         {"dk", grads.dk},
                                         {"dv", grads.dv}},
                                        kAttentionTensors);
  kc::race_attention_backward(shape, options,
                              {type, inputs.q.data, inputs.k.data, inputs.v.data, inputs.planes, inputs.beta,
                               inputs.key_mask, inputs.segment_ids},
                              dout.data, {grads.dq.data, grads.dk.data, grads.dv.data, grads.dbeta});
}

void CudaOps::softmax_attention_forward(const kernels::SoftmaxAttentionShape& shape,
                                        const kernels::SoftmaxAttentionOptions& options,
                                        const SoftmaxOperands& inputs, OperandOut out, float* lse) {
  const kc::DType type =
      operands_dtype("softmax_attention_forward", {{"q", inputs.q}, {"k", inputs.k}, {"v", inputs.v}, {"out", out}},
                     kAttentionTensors);
  if (lse == nullptr) {  // ops.h lets the caller skip lse; the CUDA kernel always writes one
    const int64_t count = shape.batch * shape.heads * shape.seq_len;
    if (count > lse_scratch_count_) {
      lse_scratch_ = allocate(count);
      lse_scratch_count_ = count;
    }
    lse = lse_scratch_;
  }
  kc::softmax_attention_forward(
      shape, options, {type, inputs.q.data, inputs.k.data, inputs.v.data, inputs.key_mask, inputs.segment_ids},
      out.data, lse);
}
void CudaOps::softmax_attention_backward(const kernels::SoftmaxAttentionShape& shape,
                                         const kernels::SoftmaxAttentionOptions& options,
                                         const SoftmaxOperands& inputs, Operand out, const float* lse, Operand dout,
                                         const SoftmaxGradientOperands& grads) {
  const kc::DType type = operands_dtype("softmax_attention_backward",
                                        {{"q", inputs.q},
                                         {"k", inputs.k},
                                         {"v", inputs.v},
                                         {"out", out},
                                         {"dout", dout},
                                         {"dq", grads.dq},
                                         {"dk", grads.dk},
                                         {"dv", grads.dv}},
                                        kAttentionTensors);
  kc::softmax_attention_backward(
      shape, options, {type, inputs.q.data, inputs.k.data, inputs.v.data, inputs.key_mask, inputs.segment_ids},
      out.data, lse, dout.data, {grads.dq.data, grads.dk.data, grads.dv.data});
}

void CudaOps::race_attention_decode(const kernels::RaceAttentionShape& shape,
                                    const kernels::RaceAttentionOptions& options, const float* q, const float* k,
                                    const float* v, const float* planes, const float* beta, float* key_sums,
                                    float* value_sums, float* out) {
  kernels::validate(shape, options);
  if (!options.causal) fail("race attention decode (CUDA): only causal layers generate token by token");
  kc::race_attention_decode(shape, options, q, k, v, planes, beta, key_sums, value_sums, out);
}
void CudaOps::softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale,
                                       const float* q, const float* k, const float* v, float* keys, float* values,
                                       int64_t capacity, int64_t position, float* out) {
  if (window > 0 ? capacity < window : capacity <= position)
    fail("softmax attention decode (CUDA): a cache of {} positions cannot hold position {} (window {})", capacity,
         position, window);
  kc::softmax_attention_decode(heads, head_dim, window, scale, q, k, v, keys, values, capacity, position, out);
}

void CudaOps::pool_forward(float* pooled, Operand rows, const uint8_t* key_mask, int64_t batch, int64_t seq_len,
                           int64_t channels, bool cls) {
  kc::pool_forward(pooled, rows.data, dtype(rows.type), key_mask, batch, seq_len, channels, cls);
}
void CudaOps::pool_backward(float* drows, const float* dpooled, const uint8_t* key_mask, int64_t batch,
                            int64_t seq_len, int64_t channels, bool cls) {
  kc::pool_backward(drows, dpooled, key_mask, batch, seq_len, channels, cls);
}

void CudaOps::dropout(float* y, const float* x, int64_t count, float p, uint64_t seed) {
  kc::dropout(y, x, count, p, seed);
}
void CudaOps::exp_forward(float* y, const float* x, int64_t count) { kc::exp_forward(y, x, count); }
void CudaOps::exp_backward(float* dx, const float* dy, const float* y, int64_t count) {
  kc::exp_backward(dx, dy, y, count);
}

double CudaOps::grad_norm(const float* grads, int64_t count) { return kc::grad_norm(grads, count); }

void CudaOps::adamw(float* params, const float* grads, float* m, float* v, const std::vector<ParamRange>& ranges,
                    const AdamWStep& step) {
  check_param_ranges(ranges);
  // The CPU kernel's option checks, with its messages: on zero elements it checks and touches nothing.
  kernels::cpu::adamw_step(nullptr, nullptr, nullptr, nullptr, 0, adamw_options(step));
  std::vector<kc::AdamWRange> table;
  table.reserve(ranges.size());
  for (const ParamRange& r : ranges)
    table.push_back({r.offset, r.count, 0, r.decay ? 1 : 0, dtype(r.copy.type), r.copy.data});
  adam_table_.adamw(params, grads, m, v, table,
            kc::math::adamw_constants(step.lr, step.beta1, step.beta2, step.eps, step.weight_decay, step.step,
                                      step.grad_scale));
}

}  // namespace race::model
