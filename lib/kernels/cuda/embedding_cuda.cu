// Embedding on CUDA: a gather per output element; the backward's ownership scheme is in the header.
#include "kernels/cuda/embedding_cuda.h"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/work_items.h"

namespace race::kernels::cuda {
namespace {

constexpr int64_t kVocabSlices = 64;  // times the columns: the backward's threads

__global__ void forward_kernel(float* out, const int32_t* ids, const float* table, int64_t n, int64_t channels,
                               bool accumulate) {
  const int64_t total = n * channels, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const float value = table[static_cast<int64_t>(ids[i / channels]) * channels + i % channels];
    out[i] = accumulate ? out[i] + value : value;
  }
}

// grid (column blocks, slices): slice y owns vocabulary rows [y * rows_per_slice, (y + 1) * rows_per_slice).
__global__ void backward_kernel(float* dtable, const int32_t* ids, const float* dout, int64_t n, int64_t channels,
                                int64_t rows_per_slice) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * rows_per_slice;
  items::embedding_backward_column(dtable, ids, dout, n, channels, c, first, first + rows_per_slice);
}

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t n, int64_t channels,
                       bool accumulate) {
  if (n * channels == 0) return;
  forward_kernel<<<grid_for(n * channels), kThreads>>>(out, ids, table, n, channels, accumulate);
  RACE_CUDA_CHECK(cudaGetLastError());
}

void embedding_backward(float* dtable, const int32_t* ids, const float* dout, int64_t n, int64_t vocab,
                        int64_t channels) {
  if (n * channels == 0 || vocab == 0) return;
  const int64_t slices = vocab < kVocabSlices ? vocab : kVocabSlices;
  const int64_t rows_per_slice = (vocab + slices - 1) / slices;
  const dim3 grid(static_cast<unsigned>((channels + kThreads - 1) / kThreads), static_cast<unsigned>(slices));
  backward_kernel<<<grid, kThreads>>>(dtable, ids, dout, n, channels, rows_per_slice);
  RACE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace race::kernels::cuda
