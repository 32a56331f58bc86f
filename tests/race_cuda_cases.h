// Cases for the CUDA RACE attention tests (test_race_tile.cpp runs the kernels' block programs on the
// host, test_race_attention_cuda.cpp runs them on a GPU): random inputs per case, the fp64 reference's
// output and gradients, and the relative RMS errors of a result against it.
//
// Inputs as in test_race_attention_cpu.cpp: q, k ~ N(0, 1.2^2 / D), v, planes, dout ~ N(0, 1); key masks
// ~30% pads; documents of 1 to T/4 tokens with distinct ids. T is never a multiple of the chunk (32).
// When no query sees more than one real key, dq, dk and dbeta are O(eps) by cancellation (phi sums to 1 per
// table), below fp32 resolution, so only out and dv are compared in such cases (one_key_per_document).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/race_attention.h"
#include "reference/race_reference.h"
#include "test_support.h"

namespace race::test {

struct RaceCase {
  int64_t B = 1, H = 1, T = 100, D = 16;
  int L = 3, P = 3;
  kernels::RaceEstimator estimator = kernels::RaceEstimator::bucket;
  bool causal = true;
  bool mask = false;      // ~30% pad keys
  bool segments = false;  // several documents per row
  bool per_head = false;  // planes (H, L, P, D)
  bool learned = false;   // beta per head {1, 1/sqrt(D), 0.5, 2}[h % 4] instead of 1

  std::string name() const {
    // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive) on "literal" + std::string.
    std::string n = "T";
    n += std::to_string(T);
    n += "_D";
    n += std::to_string(D);
    n += "_L";
    n += std::to_string(L);
    n += "P";
    n += std::to_string(P);
    n += estimator == kernels::RaceEstimator::bucket ? "_bucket" : "_ratio";
    n += causal ? "_causal" : "_bidir";
    if (mask) n += "_mask";
    if (segments) n += "_seg";
    if (per_head) n += "_perhead";
    if (learned) n += "_learned";
    n += "_B";
    n += std::to_string(B);
    n += "H";
    n += std::to_string(H);
    return n;
  }
};

inline void PrintTo(const RaceCase& c, std::ostream* os) { *os << c.name(); }

struct RaceCaseData {
  kernels::RaceAttentionShape shape;
  kernels::RaceAttentionOptions options;
  std::vector<float> q, k, v, planes, beta, dout;
  std::vector<uint8_t> key_mask;     // empty: none
  std::vector<int32_t> segment_ids;  // empty: none

  int64_t size() const { return shape.batch * shape.heads * shape.seq_len * shape.head_dim; }
  kernels::RaceAttentionInputs inputs() const {
    return {.q = q.data(),
            .k = k.data(),
            .v = v.data(),
            .planes = planes.data(),
            .beta = beta.data(),
            .key_mask = key_mask.empty() ? nullptr : key_mask.data(),
            .segment_ids = segment_ids.empty() ? nullptr : segment_ids.data()};
  }
};

inline RaceCaseData make_race_case(const RaceCase& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  RaceCaseData d;
  d.shape = {.batch = c.B,
             .heads = c.H,
             .seq_len = c.T,
             .head_dim = c.D,
             .tables = c.L,
             .bits = c.P,
             .planes_per_head = c.per_head};
  d.options = {.causal = c.causal, .estimator = c.estimator, .eps = 1e-6f};
  const int64_t n = d.size();
  d.q = normal(rng, n, 1.2 / std::sqrt(static_cast<double>(c.D)));
  d.k = normal(rng, n, 1.2 / std::sqrt(static_cast<double>(c.D)));
  d.v = normal(rng, n);
  d.planes = normal(rng, (c.per_head ? c.H : 1) * c.L * c.P * c.D);
  d.dout = normal(rng, n);
  const double learned[] = {1.0, 1.0 / std::sqrt(static_cast<double>(c.D)), 0.5, 2.0};
  for (int64_t h = 0; h < c.H; ++h) d.beta.push_back(static_cast<float>(c.learned ? learned[h % 4] : 1.0));
  if (c.mask) {
    d.key_mask.resize(static_cast<size_t>(c.B * c.T));
    for (auto& m : d.key_mask) m = rng() % 10 < 3 ? 0 : 1;
  }
  if (c.segments) {
    int32_t id = 7;
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t t = 0; t < c.T;) {
        const int64_t len = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(std::max<int64_t>(2, c.T / 4)));
        for (int64_t i = 0; i < len && t < c.T; ++i, ++t) d.segment_ids.push_back(id);
        id += 3;
      }
  }
  return d;
}

// The reference's output and gradients (pairwise form up to 3000 tokens, scan form beyond).
struct RaceReferenceResult {
  std::vector<double> out;
  reference::RaceGradients grads;
};

inline RaceReferenceResult race_reference(const RaceCaseData& d) {
  const auto in = reference::to_fp64(d.shape, d.inputs());
  const std::vector<double> dout(d.dout.begin(), d.dout.end());
  if (d.shape.seq_len <= 3000)
    return {reference::race_attention_forward(d.shape, d.options, in),
            reference::race_attention_backward(d.shape, d.options, in, dout)};
  return {reference::race_attention_forward_scan(d.shape, d.options, in),
          reference::race_attention_backward_scan(d.shape, d.options, in, dout)};
}

// Whether every document of every row holds at most one real key (see the header comment).
inline bool one_key_per_document(const RaceCaseData& d) {
  const int64_t T = d.shape.seq_len;
  for (int64_t b = 0; b < d.shape.batch; ++b) {
    int64_t real = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (t == 0 || (!d.segment_ids.empty() && d.segment_ids[b * T + t] != d.segment_ids[b * T + t - 1])) real = 0;
      real += d.key_mask.empty() || d.key_mask[b * T + t] != 0 ? 1 : 0;
      if (real > 1) return false;
    }
  }
  return true;
}

struct RaceResult {
  std::vector<float> out, dq, dk, dv, dbeta;
};

// Checks every tensor of `got` against the reference within `tolerance` (relative RMS) and prints them.
inline void expect_matches_reference(const std::string& label, const RaceCaseData& d, const RaceResult& got,
                                     const RaceReferenceResult& ref, double tolerance) {
  const bool degenerate = one_key_per_document(d);
  const double e_out = relative_rms(got.out, ref.out), e_dv = relative_rms(got.dv, ref.grads.dv);
  const double e_dq = relative_rms(got.dq, ref.grads.dq), e_dk = relative_rms(got.dk, ref.grads.dk);
  const double e_db = relative_rms(got.dbeta, ref.grads.dbeta);
  std::printf("[ cmp ] %-60s out %.1e dq %.1e dk %.1e dv %.1e dbeta %.1e%s\n", label.c_str(), e_out, e_dq, e_dk,
              e_dv, e_db, degenerate ? " (1 key/doc: dq, dk, dbeta not compared)" : "");
  EXPECT_LE(e_out, tolerance) << label;
  EXPECT_LE(e_dv, tolerance) << label;
  if (!degenerate) {
    EXPECT_LE(e_dq, tolerance) << label;
    EXPECT_LE(e_dk, tolerance) << label;
    EXPECT_LE(e_db, tolerance) << label;
  }
}

// Every feature over a few lengths, none a multiple of 32; small D keeps the host emulation quick.
inline std::vector<RaceCase> race_cuda_cases() {
  using kernels::RaceEstimator;
  std::vector<RaceCase> cases;
  for (RaceEstimator estimator : {RaceEstimator::bucket, RaceEstimator::ratio})
    for (bool causal : {true, false}) {
      cases.push_back({.T = 1, .estimator = estimator, .causal = causal});
      cases.push_back({.T = 7, .D = 8, .L = 2, .P = 2, .estimator = estimator, .causal = causal});
      cases.push_back({.T = 333, .estimator = estimator, .causal = causal});
      cases.push_back({.B = 2, .H = 2, .T = 201, .estimator = estimator, .causal = causal, .mask = true});
      cases.push_back({.T = 257, .estimator = estimator, .causal = causal, .segments = true});
      cases.push_back({.B = 2, .H = 3, .T = 150, .D = 24, .L = 2, .P = 4, .estimator = estimator,
                       .causal = causal, .mask = true, .segments = true, .per_head = true, .learned = true});
    }
  cases.push_back({.H = 2, .T = 97, .D = 128, .learned = true});
  cases.push_back({.T = 1000, .D = 32, .L = 1, .P = 1, .causal = true, .segments = true});
  return cases;
}

}  // namespace race::test
