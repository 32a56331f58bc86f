// Softmax cross-entropy on CUDA devices with the semantics of kernels/cpu/cross_entropy_cpu.h: per row
// loss = logsumexp(logits) - logits[target], dlogits = grad_scale (softmax - onehot) (0 for a row whose
// target is -1, which also adds no loss and no count). No probabilities are stored beyond dlogits, which a
// matrix product reads next: fp32 (may be logits itself) or bf16 (computed in fp32, rounded to nearest even;
// must not overlap logits). The caller checks the targets (index_check_cuda.h) and the overlap first.
// Declared without CUDA headers; defined in cross_entropy_cuda.cu.
#pragma once

#include <cstdint>

#include "kernels/cuda/dtype.h"

namespace race::kernels::cuda {

struct CrossEntropySums {
  double loss_sum = 0.0;  // over counted rows: per-row fp64 losses added by a fixed tree
  int64_t count = 0;      // rows whose target is not -1
};

// logits (N, V), dlogits (N, V) of dlogits_type (may be null: loss only); targets (N). Synchronises (the sums
// come back).
CrossEntropySums cross_entropy(void* dlogits, DType dlogits_type, const float* logits, const int32_t* targets,
                               int64_t rows, int64_t vocab, float grad_scale);

}  // namespace race::kernels::cuda
