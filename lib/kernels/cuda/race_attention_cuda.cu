// RACE attention on CUDA devices: the kernels that run race_span.h's block programs, and the host code that
// validates a call, allocates its scratch and launches them in order on one stream.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/stream_scratch.h"
#include "kernels/cuda/race_attention_cuda.h"
#include "kernels/cuda/race_span.h"

namespace race::kernels::cuda {

namespace {

using Block = CudaBlock<kThreads>;

template <class T>
__global__ void __launch_bounds__(kThreads) key_span_sums_kernel(Problem<T> p) {
  extern __shared__ __align__(16) char shared_memory[];
  key_span_sums(Block{}, p, blockIdx.x / p.spans, blockIdx.x % p.spans, shared_memory);
}

template <class T>
__global__ void __launch_bounds__(kThreads) forward_span_kernel(Problem<T> p) {
  extern __shared__ __align__(16) char shared_memory[];
  forward_span(Block{}, p, blockIdx.x / p.spans, blockIdx.x % p.spans, shared_memory);
}

template <class T>
__global__ void __launch_bounds__(kThreads) backward_queries_kernel(Problem<T> p) {
  extern __shared__ __align__(16) char shared_memory[];
  backward_queries_span(Block{}, p, blockIdx.x / p.spans, blockIdx.x % p.spans, shared_memory);
}

template <class T>
__global__ void __launch_bounds__(kThreads) backward_keys_kernel(Problem<T> p) {
  extern __shared__ __align__(16) char shared_memory[];
  backward_keys_span(Block{}, p, blockIdx.x / p.spans, blockIdx.x % p.spans, shared_memory);
}

// One thread per (row, state element).
__global__ void scan_spans_kernel(SpanSums sums, int64_t rows, int64_t spans, int64_t state_size) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < rows * state_size; i += stride)
    scan_spans(sums, spans, state_size, i / state_size, i % state_size);
}

template <class T>
__global__ void reduce_dbeta_kernel(Problem<T> p, float* dbeta) {
  const int64_t h = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (h < p.heads) reduce_dbeta(p, h, dbeta);
}

tile::Dims dims_of(const RaceAttentionShape& shape) {
  return tile::Dims{shape.seq_len, shape.head_dim, shape.tables, shape.bits};
}

int64_t shared_bytes(const tile::Dims& dims) {
  Shared layout;
  return carve_shared(nullptr, dims, kThreads, &layout);
}

// Rejects shapes whose block working set does not fit this device's shared memory; sets the kernel's limit.
template <class Kernel>
void allow_shared_memory(Kernel kernel, int64_t bytes) {
  cuda::allow_shared_memory(kernel, bytes, "race attention (CUDA): this shape",
                            "; use a smaller head_dim D or fewer buckets (tables L * 2^bits P)");
}

// Sizes, options and the span plan of a call, without tensors.
template <class T>
Problem<T> plan_problem(const RaceAttentionShape& shape, const RaceAttentionOptions& options) {
  validate(shape, options);
  Problem<T> p{};
  p.dims = dims_of(shape);
  p.batch = shape.batch;
  p.heads = shape.heads;
  p.planes_per_head = shape.planes_per_head;
  p.causal = options.causal;
  p.ratio = options.estimator == RaceEstimator::ratio;
  p.eps = options.eps;
  p.span_chunks = plan_span_chunks(p.rows(), shape.seq_len);
  p.spans = plan_spans(shape.seq_len, p.span_chunks);
  if (p.rows() * p.spans > (int64_t{1} << 31) - 1)
    throw std::invalid_argument("race attention (CUDA): B * H * spans = " + std::to_string(p.rows() * p.spans) +
                                " blocks exceeds the grid limit; reduce B or H");
  return p;
}

template <class T>
Problem<T> make_problem(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                        const RaceCudaInputs& in) {
  Problem<T> p = plan_problem<T>(shape, options);
  if (in.q == nullptr || in.k == nullptr || in.v == nullptr || in.planes == nullptr || in.beta == nullptr)
    throw std::invalid_argument("race attention (CUDA): q, k, v, planes and beta must all be given");
  p.q = static_cast<const T*>(in.q);
  p.k = static_cast<const T*>(in.k);
  p.v = static_cast<const T*>(in.v);
  p.planes = in.planes;
  p.beta = in.beta;
  p.key_mask = in.key_mask;
  p.segment_ids = in.segment_ids;
  return p;
}

template <class T>
void scan(const Problem<T>& p, const SpanSums& sums, cudaStream_t stream) {
  const int64_t size = p.dims.state_size();
  scan_spans_kernel<<<grid_for(p.rows() * size, 256), 256, 0, stream>>>(sums, p.rows(), p.spans, size);
  RACE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void run_forward(Problem<T> p, void* out, cudaStream_t stream) {
  if (out == nullptr) throw std::invalid_argument("race attention (CUDA): out must be given");
  p.out = static_cast<T*>(out);
  const int64_t smem = shared_bytes(p.dims);
  allow_shared_memory(key_span_sums_kernel<T>, smem);
  allow_shared_memory(forward_span_kernel<T>, smem);
  StreamScratch scratch(carve_scratch<T>(nullptr, false, &p), stream);
  carve_scratch<T>(scratch.data(), false, &p);
  const unsigned blocks = static_cast<unsigned>(p.rows() * p.spans);
  key_span_sums_kernel<T><<<blocks, kThreads, smem, stream>>>(p);
  RACE_CUDA_CHECK(cudaGetLastError());
  scan(p, p.keys, stream);
  forward_span_kernel<T><<<blocks, kThreads, smem, stream>>>(p);
  RACE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void run_backward(Problem<T> p, const void* dout, const RaceCudaGradients& grads, cudaStream_t stream) {
  if (dout == nullptr) throw std::invalid_argument("race attention backward (CUDA): dout must be given");
  p.dout = static_cast<const T*>(dout);
  p.dq = static_cast<T*>(grads.dq);
  p.dk = static_cast<T*>(grads.dk);
  p.dv = static_cast<T*>(grads.dv);
  const int64_t smem = shared_bytes(p.dims);
  allow_shared_memory(key_span_sums_kernel<T>, smem);
  allow_shared_memory(backward_queries_kernel<T>, smem);
  allow_shared_memory(backward_keys_kernel<T>, smem);
  StreamScratch scratch(carve_scratch<T>(nullptr, true, &p), stream);
  carve_scratch<T>(scratch.data(), true, &p);
  const unsigned blocks = static_cast<unsigned>(p.rows() * p.spans);
  key_span_sums_kernel<T><<<blocks, kThreads, smem, stream>>>(p);
  RACE_CUDA_CHECK(cudaGetLastError());
  scan(p, p.keys, stream);
  backward_queries_kernel<T><<<blocks, kThreads, smem, stream>>>(p);
  RACE_CUDA_CHECK(cudaGetLastError());
  scan(p, p.queries, stream);
  backward_keys_kernel<T><<<blocks, kThreads, smem, stream>>>(p);
  RACE_CUDA_CHECK(cudaGetLastError());
  if (grads.dbeta != nullptr) {
    reduce_dbeta_kernel<T><<<grid_for(p.heads, 128), 128, 0, stream>>>(p, grads.dbeta);
    RACE_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace

int64_t race_attention_shared_bytes(const RaceAttentionShape& shape) { return shared_bytes(dims_of(shape)); }

int64_t race_attention_scratch_bytes(const RaceAttentionShape& shape, bool backward) {
  Problem<float> p = plan_problem<float>(shape, RaceAttentionOptions{});
  return carve_scratch<float>(nullptr, backward, &p);
}

void race_attention_forward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                            const RaceCudaInputs& inputs, void* out, CUstream_st* stream) {
  if (inputs.dtype == DType::bf16)
    run_forward(make_problem<__nv_bfloat16>(shape, options, inputs), out, stream);
  else
    run_forward(make_problem<float>(shape, options, inputs), out, stream);
}

void race_attention_backward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                             const RaceCudaInputs& inputs, const void* dout, const RaceCudaGradients& grads,
                             CUstream_st* stream) {
  if (inputs.dtype == DType::bf16)
    run_backward(make_problem<__nv_bfloat16>(shape, options, inputs), dout, grads, stream);
  else
    run_backward(make_problem<float>(shape, options, inputs), dout, grads, stream);
}

}  // namespace race::kernels::cuda
