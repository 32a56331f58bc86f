// RACE attention on CUDA devices: forward and backward with the CPU kernel's feature set (causal and
// bidirectional, bucket and ratio, fixed and learned beta, shared and per-head planes, key mask, segment
// ids), fp32 or bf16 tensors, fp32 state and sums. race_span.h describes the decomposition.
// Declared without CUDA headers so that host-only code can include it; defined in race_attention_cuda.cu.
#pragma once

#include <cstdint>

#include "kernels/cuda/dtype.h"
#include "kernels/race_attention.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace race::kernels::cuda {

// Device pointers; q, k, v (and dout, out, dq, dk, dv) have the element type `dtype`.
struct RaceCudaInputs {
  DType dtype = DType::f32;
  const void* q = nullptr;               // (B, H, T, D)
  const void* k = nullptr;               // (B, H, T, D)
  const void* v = nullptr;               // (B, H, T, D)
  const float* planes = nullptr;         // (L, P, D), or (H, L, P, D) when planes_per_head
  const float* beta = nullptr;           // (H)
  const uint8_t* key_mask = nullptr;     // (B, T) or null
  const int32_t* segment_ids = nullptr;  // (B, T) or null
};

struct RaceCudaGradients {
  void* dq = nullptr;      // (B, H, T, D) or null
  void* dk = nullptr;      // (B, H, T, D) or null
  void* dv = nullptr;      // (B, H, T, D) or null
  float* dbeta = nullptr;  // (H) or null; overwritten, not accumulated
};

// In place: dq may be q, dk may be k and dv may be v (each block reads a chunk of q, or of k and v, into shared
// memory before it writes that chunk's gradient, and no later launch of the call reads them), so a layer
// that no longer needs its inputs can hold 4 tensors instead of 8. dout may be the forward's out.
// Device scratch (stream-ordered allocations, freed before return) beyond the arguments:
// forward 16 * B * H * spans * S * (D + 1) bytes; backward twice that plus 8 * B * H * T * S.
// Both throw race::Error from kernels::validate, std::invalid_argument for a missing tensor or a shape
// beyond the shared-memory limit below, and std::runtime_error naming file:line and a hint on a CUDA error.
// They do not synchronise the stream.
void race_attention_forward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                            const RaceCudaInputs& inputs, void* out, CUstream_st* stream = nullptr);
void race_attention_backward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                             const RaceCudaInputs& inputs, const void* dout, const RaceCudaGradients& grads,
                             CUstream_st* stream = nullptr);

// Device scratch bytes one forward (backward = false) or backward call allocates for this shape.
int64_t race_attention_scratch_bytes(const RaceAttentionShape& shape, bool backward);

// Shared memory one block needs for this shape (D and S set it: about 113 KB at D = 128, S = 24); shapes
// needing more than the device allows per block are rejected.
int64_t race_attention_shared_bytes(const RaceAttentionShape& shape);

}  // namespace race::kernels::cuda
