// Decoding on CUDA: one block per head running block_programs.h's race_decode_head or softmax_decode_head.
// Every sum over buckets or cached positions is one thread in index order (the CPU's order) or a fixed tree,
// so results do not depend on scheduling.
#include "kernels/cuda/attention_decode_cuda.h"

#include "kernels/cuda/block_programs.h"
#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/stream_scratch.h"
#include "kernels/cuda/launch.h"

namespace race::kernels::cuda {
namespace {

constexpr int kDecodeThreads = 128;

// Dynamic shared memory: programs::race_decode_shared_floats.
__global__ void race_decode_kernel(RaceAttentionShape shape, RaceAttentionOptions options, const float* q,
                                   const float* k, const float* v, const float* planes, const float* beta,
                                   float* key_sums, float* value_sums, float* out) {
  extern __shared__ float shared[];
  const int64_t h = blockIdx.x, D = shape.head_dim, lp = int64_t{shape.tables} * shape.bits;
  const int64_t S = int64_t{shape.tables} << shape.bits;  // buckets() is host-only
  const programs::RaceDecodeHead head{q + h * D,
                                      k + h * D,
                                      v + h * D,
                                      planes + (shape.planes_per_head ? h * lp * D : 0),
                                      beta[h],
                                      key_sums + h * S,
                                      value_sums + h * S * D,
                                      out + h * D,
                                      D,
                                      shape.tables,
                                      shape.bits,
                                      options.estimator == RaceEstimator::ratio,
                                      options.eps};
  programs::race_decode_head(CudaBlock<kDecodeThreads>{}, shared, head);
}

// scores: (H, position - first + 1) fp64 scratch.
__global__ void softmax_decode_kernel(int64_t head_dim, int64_t first, int64_t position, float scale,
                                      const float* q, const float* k, const float* v, float* keys, float* values,
                                      int64_t capacity, double* scores, float* out) {
  __shared__ double shared[kThreads];
  const int64_t h = blockIdx.x, D = head_dim;
  const programs::SoftmaxDecodeHead head{q + h * D,
                                         k + h * D,
                                         v + h * D,
                                         keys + h * capacity * D,
                                         values + h * capacity * D,
                                         scores + h * (position - first + 1),
                                         out + h * D,
                                         D,
                                         capacity,
                                         first,
                                         position,
                                         scale};
  programs::softmax_decode_head(CudaBlock<kThreads>{}, shared, head);
}

}  // namespace

void race_attention_decode(const RaceAttentionShape& shape, const RaceAttentionOptions& options, const float* q,
                           const float* k, const float* v, const float* planes, const float* beta, float* key_sums,
                           float* value_sums, float* out) {
  if (shape.heads == 0) return;
  const auto shared_bytes =
      static_cast<size_t>(programs::race_decode_shared_floats(shape.tables, shape.bits)) * sizeof(float);
  race_decode_kernel<<<static_cast<unsigned>(shape.heads), kDecodeThreads, shared_bytes>>>(
      shape, options, q, k, v, planes, beta, key_sums, value_sums, out);
  RACE_CUDA_CHECK(cudaGetLastError());
}

void softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale, const float* q,
                              const float* k, const float* v, float* keys, float* values, int64_t capacity,
                              int64_t position, float* out) {
  if (heads == 0) return;
  const int64_t first = window > 0 && position - window + 1 > 0 ? position - window + 1 : 0;
  const StreamScratch scratch(heads * (position - first + 1) * static_cast<int64_t>(sizeof(double)));
  auto* scores = reinterpret_cast<double*>(scratch.data());  // (H, position - first + 1)
  softmax_decode_kernel<<<static_cast<unsigned>(heads), kThreads>>>(head_dim, first, position, scale, q, k, v, keys,
                                                                   values, capacity, scores, out);
  RACE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace race::kernels::cuda
