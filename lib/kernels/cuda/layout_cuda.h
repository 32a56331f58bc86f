// Data movement between the model's layouts on CUDA devices, as CpuOps does it on the host:
//   split_heads / merge_heads: fused qkv rows (B*T, 3, H, D) <-> q, k, v (B, H, T, D);
//   heads_to_rows / rows_to_heads: (B, H, T, D) <-> (B, T, H*D).
// The rows that a matrix product reads next (merge_heads' qkv, heads_to_rows' rows) are written as rows_type,
// fp32 or bf16 (rounded to nearest even); every other tensor is fp32.
// Declared without CUDA headers; defined in layout_cuda.cu. Does not synchronise.
#pragma once

#include <cstdint>

#include "kernels/cuda/dtype.h"

namespace race::kernels::cuda {

void split_heads(float* q, float* k, float* v, const float* qkv, int64_t batch, int64_t seq_len, int64_t heads,
                 int64_t head_dim);
void merge_heads(void* qkv, DType qkv_type, const float* q, const float* k, const float* v, int64_t batch,
                 int64_t seq_len, int64_t heads, int64_t head_dim);
void heads_to_rows(void* rows, DType rows_type, const float* heads, int64_t batch, int64_t seq_len,
                   int64_t head_count, int64_t head_dim);
void rows_to_heads(float* heads, const float* rows, int64_t batch, int64_t seq_len, int64_t head_count,
                   int64_t head_dim);

}  // namespace race::kernels::cuda
