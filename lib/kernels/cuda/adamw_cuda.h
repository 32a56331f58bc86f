// The optimizer on CUDA devices: the global gradient norm and one fused AdamW update of every parameter
// tensor in a single launch (the clipping scale applied to the gradients on the fly, as
// kernels/cpu/adamw_cpu.h), per element elementwise_math.h's adamw_update. Declared without CUDA headers;
// defined in adamw_cuda.cu. The chunk plan below is host code too, tested without a GPU.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cuda/dtype.h"
#include "kernels/cuda/elementwise_math.h"

namespace race::kernels::cuda {

// sqrt(sum grads^2): fp64 partial sums of a fixed grid (each block its grid-stride share), added by a fixed
// tree, so the result is the same bits on every run. Synchronises (the norm comes back).
double grad_norm(const float* grads, int64_t n);

// Elements per chunk: one block updates one chunk of one range at a time.
constexpr int64_t kAdamWChunk = 4096;

// One range of the flat buffers and its place in the launch: the chunks of all ranges are numbered in order,
// this range's from first_chunk. decay: 1 when weight decay applies. copy (count elements, fp32 or bf16 as
// copy_dtype; null: none) receives the updated values, rounded, in the same pass.
struct AdamWRange {
  int64_t offset = 0, count = 0, first_chunk = 0;
  int32_t decay = 0;
  DType copy_dtype = DType::f32;
  void* copy = nullptr;
};

// Numbers the chunks of `ranges` (sets first_chunk) and returns how many there are in all.
inline int64_t number_adamw_chunks(std::vector<AdamWRange>& ranges) {
  int64_t chunks = 0;
  for (AdamWRange& r : ranges) {
    r.first_chunk = chunks;
    chunks += (r.count + kAdamWChunk - 1) / kAdamWChunk;
  }
  return chunks;
}

// The range that holds `chunk` (0 <= chunk < the total): the last range whose first_chunk <= chunk, by binary
// search over the `count` ranges. An empty range shares its first_chunk with a later range that has
// elements, or has first_chunk = the total, so it is never the answer.
RACE_HD int64_t adamw_range_of_chunk(const AdamWRange* ranges, int64_t count, int64_t chunk) {
  int64_t lo = 0, hi = count - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (ranges[mid].first_chunk <= chunk) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// The ranges of the last update, numbered, and their device copy: a model's parameter ranges do not change
// between steps, so the table is uploaded once, not every step. Owns its device memory; one per CudaOps.
class AdamWTable {
 public:
  AdamWTable() = default;
  ~AdamWTable();
  AdamWTable(const AdamWTable&) = delete;
  AdamWTable& operator=(const AdamWTable&) = delete;

  // params, m, v updated in place from grads over every range, in one launch, and each range's copy
  // written; weight decay (constants.lr_wd) only where a range's decay is set. Uploads the table only when
  // `ranges` (offset, count, decay, copy) differ from the last call's. Does not synchronise.
  void adamw(float* params, const float* grads, float* m, float* v, const std::vector<AdamWRange>& ranges,
             const math::AdamWConstants& constants);

 private:
  std::vector<AdamWRange> ranges_;  // numbered
  int64_t chunks_ = 0;
  AdamWRange* device_ = nullptr;    // (ranges_.size())
};

}  // namespace race::kernels::cuda
