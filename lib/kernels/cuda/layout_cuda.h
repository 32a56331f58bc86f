// Data movement between the model's layouts on CUDA devices, as CpuOps does it on the host:
//   split_heads / merge_heads: fused qkv rows (B*T, 3, H, D) <-> q, k, v (B, H, T, D);
//   heads_to_rows / rows_to_heads: (B, H, T, D) <-> (B, T, H*D).
// The heads (q, k, v of one call alike) and the rows that a matrix product reads next (merge_heads' qkv,
// heads_to_rows' rows) are fp32 or bf16, each of its own DType; the rows that split_heads and rows_to_heads
// read are fp32. An element moves unchanged, or rounded to nearest even where it goes from fp32 to bf16.
// Outputs must not overlap inputs. Declared without CUDA headers; defined in layout_cuda.cu. Does not
// synchronise.
#pragma once

#include <cstdint>

#include "kernels/cuda/dtype.h"

namespace race::kernels::cuda {

void split_heads(void* q, void* k, void* v, DType heads_type, const float* qkv, int64_t batch, int64_t seq_len,
                 int64_t heads, int64_t head_dim);
void merge_heads(void* qkv, DType qkv_type, const void* q, const void* k, const void* v, DType heads_type,
                 int64_t batch, int64_t seq_len, int64_t heads, int64_t head_dim);
void heads_to_rows(void* rows, DType rows_type, const void* heads, DType heads_type, int64_t batch,
                   int64_t seq_len, int64_t head_count, int64_t head_dim);
void rows_to_heads(void* heads, DType heads_type, const float* rows, int64_t batch, int64_t seq_len,
                   int64_t head_count, int64_t head_dim);

}  // namespace race::kernels::cuda
