// Decoding on CUDA: one block per head. Every sum over buckets or cached positions is done by one thread in
// index order (the CPU's order), every other step is one thread per element, so results do not depend on
// scheduling.
#include "kernels/cuda/attention_decode_cuda.h"

#include <cfloat>

#include "kernels/cuda/block_reduce.h"
#include "kernels/cuda/cuda_check.h"

namespace race::kernels::cuda {
namespace {

struct RaceDecodeShape {
  int64_t head_dim, buckets, corners;
  int tables, bits;
  bool planes_per_head, ratio;
  float eps;
};

// Dynamic shared memory: sig_q, sig_k (L*P), phi_q, phi_k (S) floats.
__global__ void race_decode_kernel(RaceDecodeShape shape, const float* q, const float* k, const float* v,
                                   const float* planes, const float* beta, float* key_sums, float* value_sums,
                                   float* out) {
  extern __shared__ float shared[];
  const int64_t h = blockIdx.x, D = shape.head_dim, S = shape.buckets, R = shape.corners;
  const int64_t lp = int64_t{shape.tables} * shape.bits;
  float* sig_q = shared;      // (L*P) sigmoid(2 beta tanh(planes . q))
  float* sig_k = sig_q + lp;  // (L*P)
  float* phi_q = sig_k + lp;  // (S)
  float* phi_k = phi_q + S;   // (S)
  const float* head_planes = planes + (shape.planes_per_head ? h * lp * D : 0);  // (L*P, D)
  const float two_beta = 2.f * beta[h];
  for (int64_t j = threadIdx.x; j < 2 * lp; j += blockDim.x) {
    const float* x = (j < lp ? q : k) + h * D;
    const float* plane = head_planes + (j % lp) * D;
    float dot = 0.f;
    for (int64_t d = 0; d < D; ++d) dot += plane[d] * x[d];
    sig_q[j] = 1.f / (1.f + expf(-two_beta * tanhf(dot)));  // sig_k[j - lp] for j >= lp
  }
  __syncthreads();
  // phi_r = prod_b (bit P-1-b of r set ? sig_b : 1 - sig_b) per table
  for (int64_t j = threadIdx.x; j < 2 * S; j += blockDim.x) {
    const int64_t s = j % S, l = s / R, r = s % R;
    const float* sig = (j < S ? sig_q : sig_k) + l * shape.bits;
    float phi = 1.f;
    for (int b = 0; b < shape.bits; ++b) phi *= (r >> (shape.bits - 1 - b)) & 1 ? sig[b] : 1.f - sig[b];
    phi_q[j] = phi;  // phi_k[s] for j >= S
  }
  __syncthreads();
  float* a = key_sums + h * S;        // (S)
  float* bsum = value_sums + h * S * D;  // (S, D)
  for (int64_t s = threadIdx.x; s < S; s += blockDim.x) a[s] += phi_k[s];
  for (int64_t i = threadIdx.x; i < S * D; i += blockDim.x) bsum[i] += phi_k[i / D] * v[h * D + i % D];
  __syncthreads();
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    double den = shape.eps;
    if (shape.ratio)
      for (int64_t s = 0; s < S; ++s) den += static_cast<double>(phi_q[s]) * a[s];
    float o = 0.f;
    for (int64_t s = 0; s < S; ++s) {
      const double w = shape.ratio ? phi_q[s] / den : phi_q[s] / (static_cast<double>(a[s]) + shape.eps);
      o += static_cast<float>(w) * bsum[s * D + d];
    }
    out[h * D + d] = o;
  }
}

// scores: (H, position - first + 1) fp64 scratch.
__global__ void softmax_decode_kernel(int64_t head_dim, int64_t first, int64_t position, float scale,
                                      const float* q, const float* k, const float* v, float* keys, float* values,
                                      int64_t capacity, double* scores, float* out) {
  __shared__ double shared[kThreads];
  const int64_t h = blockIdx.x, D = head_dim, count = position - first + 1;
  float* head_keys = keys + h * capacity * D;      // (capacity, D)
  float* head_values = values + h * capacity * D;  // (capacity, D)
  double* head_scores = scores + h * count;        // (count)
  const int64_t slot = position % capacity;
  for (int64_t d = threadIdx.x; d < D; d += kThreads) {
    head_keys[slot * D + d] = k[h * D + d];
    head_values[slot * D + d] = v[h * D + d];
  }
  __syncthreads();
  double local_max = -DBL_MAX;
  for (int64_t j = threadIdx.x; j < count; j += kThreads) {
    const float* key = head_keys + ((first + j) % capacity) * D;
    double dot = 0.0;
    for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(q[h * D + d]) * key[d];
    head_scores[j] = dot * scale;
    local_max = fmax(local_max, dot * scale);
  }
  const double max_score = block_max<kThreads>(local_max, shared);
  double local_total = 0.0;
  for (int64_t j = threadIdx.x; j < count; j += kThreads) local_total += (head_scores[j] = exp(head_scores[j] - max_score));
  const double total = block_sum<kThreads>(local_total, shared);  // its barriers publish head_scores
  for (int64_t d = threadIdx.x; d < D; d += kThreads) {
    float o = 0.f;
    for (int64_t j = 0; j < count; ++j)
      o += static_cast<float>(head_scores[j] / total) * head_values[((first + j) % capacity) * D + d];
    out[h * D + d] = o;
  }
}

}  // namespace

void race_attention_decode(const RaceAttentionShape& shape, const RaceAttentionOptions& options, const float* q,
                           const float* k, const float* v, const float* planes, const float* beta, float* key_sums,
                           float* value_sums, float* out) {
  if (shape.heads == 0) return;
  const RaceDecodeShape s{shape.head_dim,        shape.buckets(), shape.buckets_per_table(),
                          shape.tables,          shape.bits,      shape.planes_per_head,
                          options.estimator == RaceEstimator::ratio, options.eps};
  const size_t shared_bytes = static_cast<size_t>(2 * int64_t{shape.tables} * shape.bits + 2 * shape.buckets()) * sizeof(float);
  race_decode_kernel<<<static_cast<unsigned>(shape.heads), 128, shared_bytes>>>(s, q, k, v, planes, beta, key_sums,
                                                                               value_sums, out);
  RACE_CUDA_CHECK(cudaGetLastError());
}

void softmax_attention_decode(int64_t heads, int64_t head_dim, int64_t window, float scale, const float* q,
                              const float* k, const float* v, float* keys, float* values, int64_t capacity,
                              int64_t position, float* out) {
  if (heads == 0) return;
  const int64_t first = window > 0 && position - window + 1 > 0 ? position - window + 1 : 0;
  double* scores = nullptr;  // (H, position - first + 1)
  RACE_CUDA_CHECK(cudaMalloc(&scores, static_cast<size_t>(heads * (position - first + 1)) * sizeof(double)));
  try {
    softmax_decode_kernel<<<static_cast<unsigned>(heads), kThreads>>>(head_dim, first, position, scale, q, k, v, keys,
                                                                     values, capacity, scores, out);
    RACE_CUDA_CHECK(cudaGetLastError());
    RACE_CUDA_CHECK(cudaDeviceSynchronize());
  } catch (...) {
    cudaFree(scores);
    throw;
  }
  RACE_CUDA_CHECK(cudaFree(scores));
}

}  // namespace race::kernels::cuda
