// race-bench check --device cuda: the RACE layer of a check run on the GPU (fp32), from and to host memory.
// Built only with the CUDA toolkit (RACE_HAVE_CUDA).
#pragma once

#include "kernels/race_attention.h"

namespace race::bench {

struct CudaCheckTimes {
  double forward_seconds = 0, backward_seconds = 0;  // CUDA-event time of each call
};

// Host pointers in, host pointers out (the kernels' layouts). dout null: forward only, grads unused.
CudaCheckTimes race_check_cuda(const kernels::RaceAttentionShape& shape, const kernels::RaceAttentionOptions& options,
                               const kernels::RaceAttentionInputs& inputs, const float* dout, float* out,
                               const kernels::RaceAttentionGradients& grads);

}  // namespace race::bench
