// Softmax attention on CUDA devices, flash style (the in-house baseline RACE is compared with): causal or
// bidirectional, full or sliding window, key mask and segment ids, fp32 or bf16 tensors, fp32 scores, sums
// and lse. softmax_flash.h describes the tiling. Declared without CUDA headers; defined in
// softmax_attention_cuda.cu.
#pragma once

#include <cstdint>

#include "kernels/cuda/race_attention_cuda.h"
#include "kernels/softmax_attention.h"

namespace race::kernels::cuda {

// Device pointers; q, k, v (and out, dout, dq, dk, dv) have the element type `dtype`.
struct SoftmaxCudaInputs {
  DType dtype = DType::f32;
  const void* q = nullptr;               // (B, H, T, D)
  const void* k = nullptr;               // (B, H, T, D)
  const void* v = nullptr;               // (B, H, T, D)
  const uint8_t* key_mask = nullptr;     // (B, T) or null
  const int32_t* segment_ids = nullptr;  // (B, T) or null
};

struct SoftmaxCudaGradients {
  void* dq = nullptr;  // (B, H, T, D) or null
  void* dk = nullptr;  // (B, H, T, D) or null
  void* dv = nullptr;  // (B, H, T, D) or null
};

// out (B, H, T, D); lse (B, H, T) fp32, natural log, -inf for a query that sees no key.
// Throws std::invalid_argument for a bad shape or a missing tensor, std::runtime_error (file:line, hint) on
// a CUDA error. Scratch: 4 * B * T bytes with segment ids. Does not synchronise the stream.
void softmax_attention_forward(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                               const SoftmaxCudaInputs& inputs, void* out, float* lse,
                               CUstream_st* stream = nullptr);

// out, lse as written by the forward for the same inputs; dout (B, H, T, D). Writes every gradient that is
// not null. Scratch: 4 * B * H * T bytes (dout . out per query), plus 4 * B * T with segment ids.
void softmax_attention_backward(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                                const SoftmaxCudaInputs& inputs, const void* out, const float* lse,
                                const void* dout, const SoftmaxCudaGradients& grads, CUstream_st* stream = nullptr);

}  // namespace race::kernels::cuda
