// Softmax attention on CUDA devices: the kernels that run softmax_flash.h's block programs, and the host
// code that checks a call, allocates its scratch and launches them in order on one stream.
#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_block.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/stream_scratch.h"
#include "kernels/cuda/softmax_attention_cuda.h"
#include "kernels/cuda/softmax_flash.h"

namespace race::kernels::cuda {

namespace {

using flash::SoftmaxProblem;

using Block = CudaBlock<kThreads>;

template <class T>
__global__ void __launch_bounds__(kThreads) documents_kernel(SoftmaxProblem<T> p) {
  extern __shared__ __align__(16) char shared_memory[];
  flash::documents_row(Block{}, p, blockIdx.x, shared_memory);
}

template <class T>
__global__ void __launch_bounds__(kThreads) forward_kernel(SoftmaxProblem<T> p) {
  extern __shared__ __align__(16) char shared_memory[];
  flash::forward_tile(Block{}, p, blockIdx.x / p.tiles(), blockIdx.x % p.tiles(), shared_memory);
}

template <class T>
__global__ void __launch_bounds__(kThreads) backward_query_kernel(SoftmaxProblem<T> p) {
  extern __shared__ __align__(16) char shared_memory[];
  flash::backward_query_tile(Block{}, p, blockIdx.x / p.tiles(), blockIdx.x % p.tiles(), shared_memory);
}

template <class T>
__global__ void __launch_bounds__(kThreads) backward_key_kernel(SoftmaxProblem<T> p) {
  extern __shared__ __align__(16) char shared_memory[];
  flash::backward_key_tile(Block{}, p, blockIdx.x / p.tiles(), blockIdx.x % p.tiles(), shared_memory);
}

// Rejects shapes whose tiles do not fit this device's shared memory; sets the kernel's limit.
template <class Kernel>
void allow_shared_memory(Kernel kernel, int64_t bytes) {
  cuda::allow_shared_memory(kernel, bytes, "softmax attention (CUDA): head_dim", "");
}

template <class T>
SoftmaxProblem<T> make_problem(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                               const SoftmaxCudaInputs& in) {
  if (shape.batch < 1 || shape.heads < 1 || shape.seq_len < 1 || shape.head_dim < 1)
    throw std::invalid_argument("softmax attention (CUDA): B, H, T and D must all be >= 1");
  if (options.window < 0 || !(options.scale >= 0.f) || !std::isfinite(options.scale))
    throw std::invalid_argument("softmax attention (CUDA): window must be >= 0 and scale finite and >= 0");
  if (in.q == nullptr || in.k == nullptr || in.v == nullptr)
    throw std::invalid_argument("softmax attention (CUDA): q, k and v must all be given");
  SoftmaxProblem<T> p{};
  p.batch = shape.batch;
  p.heads = shape.heads;
  p.seq_len = shape.seq_len;
  p.head_dim = shape.head_dim;
  p.causal = options.causal;
  p.window = options.window;
  p.scale = options.scale > 0.f ? options.scale : 1.f / std::sqrt(static_cast<float>(shape.head_dim));
  if (p.rows() * p.tiles() > (int64_t{1} << 31) - 1)
    throw std::invalid_argument("softmax attention (CUDA): B * H * tiles exceeds the grid limit");
  p.q = static_cast<const T*>(in.q);
  p.k = static_cast<const T*>(in.k);
  p.v = static_cast<const T*>(in.v);
  p.key_mask = in.key_mask;
  p.segment_ids = in.segment_ids;
  return p;
}

int64_t shared_bytes(int64_t head_dim) {
  flash::FlashShared layout;
  return flash::carve_flash_shared(nullptr, head_dim, kThreads, &layout);
}

// Document numbers of every token, when there are segment ids.
template <class T>
void number_documents(SoftmaxProblem<T>& p, const StreamScratch& documents, int64_t smem, cudaStream_t stream) {
  if (p.segment_ids == nullptr) return;
  p.documents = reinterpret_cast<int32_t*>(documents.data());
  allow_shared_memory(documents_kernel<T>, smem);
  documents_kernel<T><<<static_cast<unsigned>(p.batch), kThreads, smem, stream>>>(p);
  RACE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void run_forward(SoftmaxProblem<T> p, void* out, float* lse, cudaStream_t stream) {
  if (out == nullptr || lse == nullptr) throw std::invalid_argument("softmax attention (CUDA): out and lse must be given");
  p.out = static_cast<T*>(out);
  p.lse = lse;
  const int64_t smem = shared_bytes(p.head_dim);
  StreamScratch documents(p.segment_ids != nullptr ? p.batch * p.seq_len * 4 : 0, stream);
  number_documents(p, documents, smem, stream);
  allow_shared_memory(forward_kernel<T>, smem);
  forward_kernel<T><<<static_cast<unsigned>(p.rows() * p.tiles()), kThreads, smem, stream>>>(p);
  RACE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void run_backward(SoftmaxProblem<T> p, const void* out, const float* lse, const void* dout,
                  const SoftmaxCudaGradients& grads, cudaStream_t stream) {
  if (out == nullptr || lse == nullptr || dout == nullptr)
    throw std::invalid_argument("softmax attention backward (CUDA): out, lse and dout must be given");
  p.out = static_cast<T*>(const_cast<void*>(out));  // read only in the backward programs
  p.lse = const_cast<float*>(lse);
  p.dout = static_cast<const T*>(dout);
  p.dq = static_cast<T*>(grads.dq);
  p.dk = static_cast<T*>(grads.dk);
  p.dv = static_cast<T*>(grads.dv);
  const int64_t smem = shared_bytes(p.head_dim);
  StreamScratch documents(p.segment_ids != nullptr ? p.batch * p.seq_len * 4 : 0, stream);
  StreamScratch delta(p.rows() * p.seq_len * 4, stream);
  p.delta = reinterpret_cast<float*>(delta.data());
  number_documents(p, documents, smem, stream);
  allow_shared_memory(backward_query_kernel<T>, smem);
  allow_shared_memory(backward_key_kernel<T>, smem);
  const unsigned blocks = static_cast<unsigned>(p.rows() * p.tiles());
  backward_query_kernel<T><<<blocks, kThreads, smem, stream>>>(p);
  RACE_CUDA_CHECK(cudaGetLastError());
  backward_key_kernel<T><<<blocks, kThreads, smem, stream>>>(p);
  RACE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void softmax_attention_forward(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                               const SoftmaxCudaInputs& inputs, void* out, float* lse, CUstream_st* stream) {
  if (inputs.dtype == DType::bf16)
    run_forward(make_problem<__nv_bfloat16>(shape, options, inputs), out, lse, stream);
  else
    run_forward(make_problem<float>(shape, options, inputs), out, lse, stream);
}

void softmax_attention_backward(const SoftmaxAttentionShape& shape, const SoftmaxAttentionOptions& options,
                                const SoftmaxCudaInputs& inputs, const void* out, const float* lse,
                                const void* dout, const SoftmaxCudaGradients& grads, CUstream_st* stream) {
  if (inputs.dtype == DType::bf16)
    run_backward(make_problem<__nv_bfloat16>(shape, options, inputs), out, lse, dout, grads, stream);
  else
    run_backward(make_problem<float>(shape, options, inputs), out, lse, dout, grads, stream);
}

}  // namespace race::kernels::cuda
