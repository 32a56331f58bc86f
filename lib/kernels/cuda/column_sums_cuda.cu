// Column sums over rows on CUDA (column_sums_cuda.h): stage 1 gives each block a tile of kThreads columns
// over one chunk of rows, a thread a column, so a warp's loads of a row are 32 consecutive elements (fp32, or
// the linear layer's bf16 dy); stage 2 gives each column a thread. The work of both is work_items.h's, which
// the host tests run item by item.
#include "kernels/cuda/column_sums_cuda.h"
#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/stream_scratch.h"
#include "kernels/cuda/work_items.h"

namespace race::kernels::cuda {
namespace {

constexpr int64_t kMaxGridY = 65535;  // CUDA's limit on gridDim.y

// Chunks along x, column tiles along y, both grid-stride so any size fits the grid's limits.
template <class Terms>
__global__ void chunk_sums_kernel(double* partial, Terms terms, int64_t rows, int64_t cols) {
  const int64_t chunks = items::column_chunks(rows);
  for (int64_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x)
    for (int64_t c = static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x; c < cols;
         c += static_cast<int64_t>(gridDim.y) * kThreads)
      items::column_chunk_sums(partial, terms, rows, cols, chunk, c);
}

template <int kSums>
struct Outputs {
  float* out[kSums];  // (cols) each; null: not wanted
};

template <int kSums>
__global__ void totals_kernel(Outputs<kSums> outputs, const double* partial, int64_t chunks, int64_t cols) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; c < cols; c += stride)
    for (int k = 0; k < kSums; ++k)
      if (outputs.out[k] != nullptr)
        items::column_total(outputs.out[k], partial + k * chunks * cols, chunks, cols, c);
}

template <class Terms>
void sum_columns(const Outputs<Terms::kSums>& outputs, const Terms& terms, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;  // nothing to add
  const int64_t chunks = items::column_chunks(rows);
  const StreamScratch scratch(Terms::kSums * chunks * cols * static_cast<int64_t>(sizeof(double)));
  auto* partial = reinterpret_cast<double*>(scratch.data());  // (kSums, chunks, cols)
  const int64_t tiles = (cols + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(chunks < kMaxBlocks ? chunks : kMaxBlocks),
                  static_cast<unsigned>(tiles < kMaxGridY ? tiles : kMaxGridY));
  chunk_sums_kernel<<<grid, kThreads>>>(partial, terms, rows, cols);
  RACE_CUDA_CHECK(cudaGetLastError());
  totals_kernel<<<grid_for(cols), kThreads>>>(outputs, partial, chunks, cols);
  RACE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void column_sums(float* out, const void* dy, DType dy_type, int64_t rows, int64_t cols) {
  if (dy_type == DType::bf16)
    sum_columns(Outputs<1>{{out}}, items::ColumnTerms<__nv_bfloat16>{static_cast<const __nv_bfloat16*>(dy)}, rows,
                cols);
  else
    sum_columns(Outputs<1>{{out}}, items::ColumnTerms<float>{static_cast<const float*>(dy)}, rows, cols);
}

void layernorm_param_sums(float* dweight, float* dbias, const float* dy, const float* x, const float* mean,
                          const float* rstd, int64_t rows, int64_t channels) {
  if (dweight == nullptr && dbias == nullptr) return;
  if (dweight == nullptr)  // dbias alone is dy's column sum: no need to read x
    sum_columns(Outputs<1>{{dbias}}, items::ColumnTerms<float>{dy}, rows, channels);
  else
    sum_columns(Outputs<2>{{dweight, dbias}}, items::LayerNormParamTerms{dy, x, mean, rstd}, rows, channels);
}

}  // namespace race::kernels::cuda
