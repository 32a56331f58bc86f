// race-bench check: one attention layer run on tensors from an HDF5 file, with the results written to
// another, so that an outside implementation (PyTorch, JAX, ...) can be compared with ours number for number.
//
// IN.h5 (float datasets may be float32 or float64; integer datasets any integer type):
//   q, k, v       [B,H,T,D]   required
//   dout          [B,H,T,D]   optional: when present, the backward runs too
//   planes        [L,P,D] or [H,L,P,D]   race only, required; 1 <= P <= 12
//   beta          [H]         race only, optional: per-head temperature (a learned one)
//   key_mask      [B,T]       optional integer, nonzero = real token, 0 = pad key
//   segment_ids   [B,T]       optional integer, documents of a packed row
//   attributes on "/": impl ("race" | "softmax", required), causal (integer 0/1, required),
//     estimator ("bucket" | "ratio", race, default "bucket"), beta (number, race, default 1; used when there
//     is no beta dataset), eps (number > 0, race, default 1e-6), window (integer >= 0, softmax, default 0 =
//     full), scale (number >= 0, softmax, default 0 = 1/sqrt(D)).
//   Datasets and attributes of the other impl are ignored, so one file can drive both.
// OUT.h5, all float32:
//   out [B,H,T,D]; with dout: dq, dk, dv [B,H,T,D], and for race dbeta [H] (the gradient of sum(dout*out)
//   with respect to each head's beta; written whether beta came as a dataset or as the scalar attribute,
//   since it costs nothing extra); for softmax lse [B,H,T] (natural-log log-sum-exp of the scaled scores,
//   -inf for a query that sees no key), as flash-attention implementations return it.
//   Attributes: seconds (forward + backward kernel time), forward_seconds, backward_seconds (0 without dout),
//   impl, causal, device.
// device "cuda" runs the RACE kernels on the GPU (fp32; softmax has no CUDA kernel yet); the kernel time is
// then CUDA-event time, without the copies.
// OUT.h5 is written to a temporary file and renamed onto its name only when complete.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace race::bench {

struct CheckSummary {
  std::string impl;
  std::string device;
  bool causal = true;
  std::int64_t batch = 0, heads = 0, seq_len = 0, head_dim = 0;
  std::vector<std::string> written;  // dataset names in OUT.h5
  double forward_seconds = 0, backward_seconds = 0;
};

// Validates IN.h5 completely before any kernel runs; every problem is a race::Error naming the file, the
// dataset or attribute and what was expected.
CheckSummary run_check(const std::filesystem::path& in_path, const std::filesystem::path& out_path,
                       const std::string& device = "cpu");

}  // namespace race::bench
