// Layout changes on CUDA: one thread per element of the row-major side (coalesced there), each finding
// where its element sits in the (B, H, T, D) side with work_items.h's heads_place. The kernel is
// instantiated for fp32 rows (both directions) and bf16 rows (written only).
#include "kernels/cuda/layout_cuda.h"

#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/work_items.h"

namespace race::kernels::cuda {
namespace {

// to_heads: the heads tensors get the rows' elements; otherwise the rows (of type R) get the heads'.
template <class R>
__global__ void move_kernel(R* rows, float* h0, float* h1, float* h2, int64_t seq_len, int64_t heads,
                            int64_t head_dim, int64_t parts, int64_t total, bool to_heads) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const items::HeadsPlace place = items::heads_place(i, seq_len, heads, head_dim, parts);
    float* tensor = place.part == 0 ? h0 : (place.part == 1 ? h1 : h2);
    if (to_heads)
      tensor[place.offset] = tile::Element<R>::load(rows + i);
    else
      tile::Element<R>::store(rows + i, tensor[place.offset]);
  }
}

template <class R>
void move(R* rows, float* h0, float* h1, float* h2, int64_t batch, int64_t seq_len, int64_t heads,
          int64_t head_dim, int64_t parts, bool to_heads) {
  const int64_t total = batch * seq_len * parts * heads * head_dim;
  if (total == 0) return;
  move_kernel<<<grid_for(total), kThreads>>>(rows, h0, h1, h2, seq_len, heads, head_dim, parts, total,
                                                   to_heads);
  RACE_CUDA_CHECK(cudaGetLastError());
}

// Rows (B*T, parts, H, D) of rows_type <- the heads tensors.
void to_rows(void* rows, DType rows_type, float* h0, float* h1, float* h2, int64_t batch, int64_t seq_len,
             int64_t heads, int64_t head_dim, int64_t parts) {
  if (rows_type == DType::bf16)
    move(static_cast<__nv_bfloat16*>(rows), h0, h1, h2, batch, seq_len, heads, head_dim, parts, false);
  else
    move(static_cast<float*>(rows), h0, h1, h2, batch, seq_len, heads, head_dim, parts, false);
}

}  // namespace

// The const casts below only serve the shared kernel: a tensor is written only in the direction that writes it.
void split_heads(float* q, float* k, float* v, const float* qkv, int64_t batch, int64_t seq_len, int64_t heads,
                 int64_t head_dim) {
  move(const_cast<float*>(qkv), q, k, v, batch, seq_len, heads, head_dim, 3, true);
}
void merge_heads(void* qkv, DType qkv_type, const float* q, const float* k, const float* v, int64_t batch,
                 int64_t seq_len, int64_t heads, int64_t head_dim) {
  to_rows(qkv, qkv_type, const_cast<float*>(q), const_cast<float*>(k), const_cast<float*>(v), batch, seq_len,
          heads, head_dim, 3);
}
void heads_to_rows(void* rows, DType rows_type, const float* heads, int64_t batch, int64_t seq_len,
                   int64_t head_count, int64_t head_dim) {
  to_rows(rows, rows_type, const_cast<float*>(heads), nullptr, nullptr, batch, seq_len, head_count, head_dim, 1);
}
void rows_to_heads(float* heads, const float* rows, int64_t batch, int64_t seq_len, int64_t head_count,
                   int64_t head_dim) {
  move(const_cast<float*>(rows), heads, nullptr, nullptr, batch, seq_len, head_count, head_dim, 1, true);
}

}  // namespace race::kernels::cuda
