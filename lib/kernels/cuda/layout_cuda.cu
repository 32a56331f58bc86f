// Layout changes on CUDA: one thread per element of the row-major side (coalesced there), each moving its
// element with work_items.h's row_element_to_heads or heads_element_to_row (heads_place finds where it sits
// in the (B, H, T, D) side; race_tile.h's Element loads it as its source type and stores it as its
// destination type: fp32, or bf16 rounded to nearest even). The moves to heads read fp32 rows and write
// heads of type Hd; the moves to rows read heads of type Hd and write rows of type R; each kernel is
// instantiated for both types of each.
#include "kernels/cuda/layout_cuda.h"

#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/work_items.h"

namespace race::kernels::cuda {
namespace {

// Heads tensors h0, h1, h2 (B, H, T, D) of type Hd (h1, h2 null when parts is 1) <- rows (B*T, parts, H, D).
template <class Hd>
__global__ void to_heads_kernel(Hd* h0, Hd* h1, Hd* h2, const float* rows, int64_t seq_len, int64_t heads,
                                int64_t head_dim, int64_t parts, int64_t total) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride)
    items::row_element_to_heads(h0, h1, h2, rows, i, seq_len, heads, head_dim, parts);
}

// Rows (B*T, parts, H, D) of type R <- heads tensors h0, h1, h2 (B, H, T, D) of type Hd.
template <class R, class Hd>
__global__ void to_rows_kernel(R* rows, const Hd* h0, const Hd* h1, const Hd* h2, int64_t seq_len, int64_t heads,
                               int64_t head_dim, int64_t parts, int64_t total) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride)
    items::heads_element_to_row(rows, h0, h1, h2, i, seq_len, heads, head_dim, parts);
}

template <class Hd>
void to_heads(void* h0, void* h1, void* h2, const float* rows, int64_t batch, int64_t seq_len, int64_t heads,
              int64_t head_dim, int64_t parts) {
  const int64_t total = batch * seq_len * parts * heads * head_dim;
  if (total == 0) return;
  to_heads_kernel<<<grid_for(total), kThreads>>>(static_cast<Hd*>(h0), static_cast<Hd*>(h1), static_cast<Hd*>(h2),
                                                 rows, seq_len, heads, head_dim, parts, total);
  RACE_CUDA_CHECK(cudaGetLastError());
}

template <class R, class Hd>
void to_rows(void* rows, const void* h0, const void* h1, const void* h2, int64_t batch, int64_t seq_len,
             int64_t heads, int64_t head_dim, int64_t parts) {
  const int64_t total = batch * seq_len * parts * heads * head_dim;
  if (total == 0) return;
  to_rows_kernel<<<grid_for(total), kThreads>>>(static_cast<R*>(rows), static_cast<const Hd*>(h0),
                                                static_cast<const Hd*>(h1), static_cast<const Hd*>(h2), seq_len,
                                                heads, head_dim, parts, total);
  RACE_CUDA_CHECK(cudaGetLastError());
}

// Heads of heads_type <- fp32 rows.
void heads_from_rows(void* h0, void* h1, void* h2, DType heads_type, const float* rows, int64_t batch,
                     int64_t seq_len, int64_t heads, int64_t head_dim, int64_t parts) {
  if (heads_type == DType::bf16)
    to_heads<__nv_bfloat16>(h0, h1, h2, rows, batch, seq_len, heads, head_dim, parts);
  else
    to_heads<float>(h0, h1, h2, rows, batch, seq_len, heads, head_dim, parts);
}

// Rows of rows_type <- heads of heads_type.
void rows_from_heads(void* rows, DType rows_type, const void* h0, const void* h1, const void* h2, DType heads_type,
                     int64_t batch, int64_t seq_len, int64_t heads, int64_t head_dim, int64_t parts) {
  using bf16 = __nv_bfloat16;
  const bool bf16_rows = rows_type == DType::bf16, bf16_heads = heads_type == DType::bf16;
  if (bf16_rows && bf16_heads)
    to_rows<bf16, bf16>(rows, h0, h1, h2, batch, seq_len, heads, head_dim, parts);
  else if (bf16_rows)
    to_rows<bf16, float>(rows, h0, h1, h2, batch, seq_len, heads, head_dim, parts);
  else if (bf16_heads)
    to_rows<float, bf16>(rows, h0, h1, h2, batch, seq_len, heads, head_dim, parts);
  else
    to_rows<float, float>(rows, h0, h1, h2, batch, seq_len, heads, head_dim, parts);
}

}  // namespace

void split_heads(void* q, void* k, void* v, DType heads_type, const float* qkv, int64_t batch, int64_t seq_len,
                 int64_t heads, int64_t head_dim) {
  heads_from_rows(q, k, v, heads_type, qkv, batch, seq_len, heads, head_dim, 3);
}
void merge_heads(void* qkv, DType qkv_type, const void* q, const void* k, const void* v, DType heads_type,
                 int64_t batch, int64_t seq_len, int64_t heads, int64_t head_dim) {
  rows_from_heads(qkv, qkv_type, q, k, v, heads_type, batch, seq_len, heads, head_dim, 3);
}
void heads_to_rows(void* rows, DType rows_type, const void* heads, DType heads_type, int64_t batch,
                   int64_t seq_len, int64_t head_count, int64_t head_dim) {
  rows_from_heads(rows, rows_type, heads, nullptr, nullptr, heads_type, batch, seq_len, head_count, head_dim, 1);
}
void rows_to_heads(void* heads, DType heads_type, const float* rows, int64_t batch, int64_t seq_len,
                   int64_t head_count, int64_t head_dim) {
  heads_from_rows(heads, nullptr, nullptr, heads_type, rows, batch, seq_len, head_count, head_dim, 1);
}

}  // namespace race::kernels::cuda
