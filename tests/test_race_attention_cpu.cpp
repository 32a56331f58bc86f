// The fast CPU RACE attention kernel (kernels/cpu/race_attention_cpu.h) held to the fp64 reference
// (reference/race_reference.h): relative RMS error ||ours - ref|| / ||ref|| at most 1e-5 on out and 1e-4 on
// dq, dk, dv, dbeta, over sequence lengths, head dims, table shapes, both estimators, causal and
// bidirectional, key masks (including fully padded rows), packed documents (including length-1 documents),
// shared and per-head planes, fixed and learned beta, one and several (batch, head) pairs, and single rows
// long enough (10000, 17000 tokens) for the kernel to split them into spans across threads (those are checked
// against the reference's O(T S D) scan form; up to 3000 tokens, against its pairwise form). Also: the
// bidirectional output equals the causal output at the last position, runs are bit-identical, gradients
// are overwritten (not accumulated) and may be requested one at a time, and validate() rejects bad input.
// Each comparison prints one "[ cmp ]" line with its errors and timings.
//
// Inputs: q, k ~ N(0, 1.2^2 / D) so that W x ~ N(0, 1.44) keeps tanh responsive (not saturated); v, planes,
// dout ~ N(0, 1); std::mt19937_64 with a fixed seed per case.
//
// One key per document: when no query sees more than one real key (T = 1, every document of length 1 or
// holding one real key), dq, dk and dbeta are O(eps) (sum_r phi_r = 1 makes the exact gradient vanish), a
// cancellation that fp32 cannot resolve. In those cases only, their errors are measured against
// max(||ref||, 1e-2 * natural scale), the natural scale being the size these gradients have when nothing
// cancels (gradient_scales below; non-degenerate cases measure 5e-4 to 0.5 of it). Everywhere else the bound
// is the plain relative one.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/race_attention_cpu.h"
#include "kernels/race_attention.h"
#include "reference/race_reference.h"

namespace {

using race::kernels::RaceAttentionGradients;
using race::kernels::RaceAttentionInputs;
using race::kernels::RaceAttentionOptions;
using race::kernels::RaceAttentionShape;
using race::kernels::RaceEstimator;

constexpr double kOutTolerance = 1e-5;
constexpr double kGradTolerance = 1e-4;
constexpr int64_t kPairwiseMaxT = 3000;  // longer cases use the reference's O(T S D) scan form

enum class Mask {
  none,
  random,
  random_empty_row
};                                             // random: ~30% pads per row; empty_row: last row all pads
enum class Beta { one, inv_sqrt_d, learned };  // learned: per head {1, 1/sqrt(D), 0.5, 2}[h % 4], dbeta asked

struct Case {
  int64_t B = 1, H = 1, T = 1, D = 16;
  int L = 3, P = 3;
  RaceEstimator estimator = RaceEstimator::bucket;
  bool causal = true;
  Mask mask = Mask::none;
  bool segments = false;  // several documents per row, including length-1 documents
  bool per_head = false;  // planes (H, L, P, D)
  Beta beta = Beta::one;
};

std::string name(const Case& c) {
  std::string n = "T" + std::to_string(c.T) + "_D" + std::to_string(c.D) + "_L" + std::to_string(c.L) + "P" +
                  std::to_string(c.P) + (c.estimator == RaceEstimator::bucket ? "_bucket" : "_ratio") +
                  (c.causal ? "_causal" : "_bidir");
  if (c.mask == Mask::random) n += "_mask";
  if (c.mask == Mask::random_empty_row) n += "_maskemptyrow";
  if (c.segments) n += "_seg";
  n += c.per_head ? "_perhead" : "_shared";
  n += c.beta == Beta::one ? "_beta1" : c.beta == Beta::inv_sqrt_d ? "_betainvsqrtd" : "_learned";
  return n + "_B" + std::to_string(c.B) + "H" + std::to_string(c.H);
}

void PrintTo(const Case& c, std::ostream* os) { *os << name(c); }

struct Data {
  RaceAttentionShape shape;
  RaceAttentionOptions options;
  bool learned_beta = false;
  std::vector<float> q, k, v, planes, beta, dout;
  std::vector<uint8_t> key_mask;
  std::vector<int32_t> segment_ids;

  RaceAttentionInputs inputs() const {
    return {.q = q.data(),
            .k = k.data(),
            .v = v.data(),
            .planes = planes.data(),
            .beta = beta.data(),
            .key_mask = key_mask.empty() ? nullptr : key_mask.data(),
            .segment_ids = segment_ids.empty() ? nullptr : segment_ids.data()};
  }
  int64_t size() const { return shape.batch * shape.heads * shape.seq_len * shape.head_dim; }
};

std::vector<float> normal(std::mt19937_64& rng, int64_t n, double scale) {
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<float> out(static_cast<size_t>(n));
  for (auto& x : out) x = static_cast<float>(scale * dist(rng));
  return out;
}

// One row's segment ids: distinct ids per document (not monotonic), a length-1 document second, more
// length-1 documents at random, the rest up to max(3, T / 4) long.
std::vector<int32_t> random_segments(std::mt19937_64& rng, int64_t T) {
  std::vector<int32_t> ids(static_cast<size_t>(T));
  int32_t id = 500;
  int64_t t = 0, doc = 0;
  while (t < T) {
    int64_t len = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(std::max<int64_t>(3, T / 4)));
    if (doc == 1 || rng() % 5 == 0) len = 1;
    for (int64_t i = 0; i < len && t < T; ++i, ++t) ids[t] = id;
    id = (doc % 2 == 0) ? id + 17 : id - 5;  // distinct: +17, -5, +17, -5, ... climbs by 12 every two
    ++doc;
  }
  return ids;
}

Data make_data(const Case& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Data data;
  data.shape = {.batch = c.B,
                .heads = c.H,
                .seq_len = c.T,
                .head_dim = c.D,
                .tables = c.L,
                .bits = c.P,
                .planes_per_head = c.per_head};
  data.options = {.causal = c.causal, .estimator = c.estimator, .eps = 1e-6f};
  const int64_t n = data.size();
  const double qk_scale = 1.2 / std::sqrt(static_cast<double>(c.D));
  data.q = normal(rng, n, qk_scale);
  data.k = normal(rng, n, qk_scale);
  data.v = normal(rng, n, 1.0);
  data.planes = normal(rng, (c.per_head ? c.H : 1) * c.L * c.P * c.D, 1.0);
  data.dout = normal(rng, n, 1.0);
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(c.D));
  const double learned[] = {1.0, inv_sqrt_d, 0.5, 2.0};
  for (int64_t h = 0; h < c.H; ++h) {
    const double b = c.beta == Beta::one ? 1.0 : c.beta == Beta::inv_sqrt_d ? inv_sqrt_d : learned[h % 4];
    data.beta.push_back(static_cast<float>(b));
  }
  data.learned_beta = c.beta == Beta::learned;
  if (c.mask != Mask::none) {
    data.key_mask.assign(static_cast<size_t>(c.B * c.T), 1);
    for (int64_t b = 0; b < c.B; ++b) {
      const bool empty = c.mask == Mask::random_empty_row && b == c.B - 1;
      for (int64_t t = 0; t < c.T; ++t) data.key_mask[b * c.T + t] = (empty || rng() % 10 < 3) ? 0 : 1;
    }
  }
  if (c.segments) {
    for (int64_t b = 0; b < c.B; ++b) {
      const auto ids = random_segments(rng, c.T);
      data.segment_ids.insert(data.segment_ids.end(), ids.begin(), ids.end());
    }
  }
  return data;
}

double norm(const std::vector<double>& x) {
  double s = 0.0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}

double rms(const std::vector<float>& x) {
  double s = 0.0;
  for (float v : x) s += static_cast<double>(v) * static_cast<double>(v);
  return std::sqrt(s / static_cast<double>(std::max<size_t>(1, x.size())));
}

// ||ours - ref|| / max(||ref||, floor); a NaN anywhere gives NaN (which fails every bound).
double relative_error(const std::vector<float>& ours, const std::vector<double>& ref, double floor = 0.0) {
  EXPECT_EQ(ours.size(), ref.size());
  double diff = 0.0;
  for (size_t i = 0; i < ours.size() && i < ref.size(); ++i) {
    const double e = static_cast<double>(ours[i]) - ref[i];
    diff += e * e;
  }
  const double den = std::max(norm(ref), floor);
  if (den == 0.0) return std::sqrt(diff) == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(diff) / den;
}

// The size dq, dk (norm over the whole tensor) and dbeta (norm over H) have when nothing cancels:
//   dq_t = sum_{l,b} du_b (1 - u_b^2) w_b with du_b ~ 2 beta sum_r dphi_r phi_r (1 - sigma) and dphi ~ g . v,
//   so |dq_t,d| ~ 2 beta_max sqrt(L P D) rms(g) rms(v) rms(W) per entry; dbeta_h sums 2 B T such terms
//   (with 2 u c in place of 2 beta w) of random sign: sqrt(2 B T L P D) rms(g) rms(v).
struct Scales {
  double qk = 0.0, beta = 0.0;
};
Scales gradient_scales(const Data& d) {
  const auto& s = d.shape;
  const double beta_max = static_cast<double>(*std::max_element(d.beta.begin(), d.beta.end()));
  const double gv = rms(d.dout) * rms(d.v);
  const double lpd = static_cast<double>(s.tables * s.bits * s.head_dim);
  Scales sc;
  sc.qk = 2.0 * beta_max * std::sqrt(lpd) * gv * rms(d.planes) * std::sqrt(static_cast<double>(d.size()));
  sc.beta = std::sqrt(2.0 * static_cast<double>(s.batch * s.seq_len) * lpd) * gv *
            std::sqrt(static_cast<double>(s.heads));
  return sc;
}
constexpr double kFloorFraction = 1e-2;

// Whether no query sees more than one real key: every document of every row holds at most one real key.
bool one_key_per_document(const Data& d) {
  const int64_t T = d.shape.seq_len;
  for (int64_t b = 0; b < d.shape.batch; ++b) {
    int64_t real = 0;
    for (int64_t t = 0; t < T; ++t) {
      const bool starts =
          t == 0 || (!d.segment_ids.empty() && d.segment_ids[b * T + t] != d.segment_ids[b * T + t - 1]);
      if (starts) real = 0;
      real += d.key_mask.empty() || d.key_mask[b * T + t] != 0 ? 1 : 0;
      if (real > 1) return false;
    }
  }
  return true;
}

// Floors for dq / dk and dbeta: 0 unless one_key_per_document.
struct Floors {
  double qk = 0.0, beta = 0.0;
};
Floors gradient_floors(const Data& d) {
  if (!one_key_per_document(d)) return {};
  const Scales sc = gradient_scales(d);
  return {kFloorFraction * sc.qk, kFloorFraction * sc.beta};
}

std::vector<float> nan_filled(int64_t n) {
  return std::vector<float>(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN());
}

struct KernelGrads {
  std::vector<float> dq, dk, dv, dbeta;
};

// Runs the kernel's backward into NaN-filled buffers (so accumulating instead of overwriting shows).
KernelGrads kernel_backward(const Data& d, bool want_dbeta) {
  KernelGrads g{nan_filled(d.size()), nan_filled(d.size()), nan_filled(d.size()), nan_filled(d.shape.heads)};
  RaceAttentionGradients grads{.dq = g.dq.data(),
                               .dk = g.dk.data(),
                               .dv = g.dv.data(),
                               .dbeta = want_dbeta ? g.dbeta.data() : nullptr};
  race::kernels::cpu::race_attention_backward(d.shape, d.options, d.inputs(), d.dout.data(), grads);
  return g;
}

std::vector<float> kernel_forward(const Data& d) {
  auto out = nan_filled(d.size());
  race::kernels::cpu::race_attention_forward(d.shape, d.options, d.inputs(), out.data());
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// --- The kernel against the reference ----------------------------------------------------------------------

class RaceAttentionCpu : public ::testing::TestWithParam<Case> {};

TEST_P(RaceAttentionCpu, MatchesTheFp64Reference) {
  const Case& c = GetParam();
  const Data d = make_data(c, 0xC0FFEE + static_cast<uint64_t>(c.T * 1009 + c.D * 17 + c.L * 5 + c.P));
  race::kernels::validate(d.shape, d.options);

  auto start = std::chrono::steady_clock::now();
  const auto out = kernel_forward(d);
  const auto grads = kernel_backward(d, d.learned_beta);
  const double kernel_s = seconds_since(start);

  start = std::chrono::steady_clock::now();
  const auto ref_in = race::reference::to_fp64(d.shape, d.inputs());
  const std::vector<double> dout64(d.dout.begin(), d.dout.end());
  // The pairwise reference up to kPairwiseMaxT tokens, the (fp64, unchunked) scan reference beyond.
  const bool pairwise = c.T <= kPairwiseMaxT;
  const auto ref_out = pairwise ? race::reference::race_attention_forward(d.shape, d.options, ref_in)
                                : race::reference::race_attention_forward_scan(d.shape, d.options, ref_in);
  const auto ref = pairwise
                       ? race::reference::race_attention_backward(d.shape, d.options, ref_in, dout64)
                       : race::reference::race_attention_backward_scan(d.shape, d.options, ref_in, dout64);
  const double ref_s = seconds_since(start);

  const Floors floors = gradient_floors(d);
  const double e_out = relative_error(out, ref_out);
  const double e_dq = relative_error(grads.dq, ref.dq, floors.qk);
  const double e_dk = relative_error(grads.dk, ref.dk, floors.qk);
  const double e_dv = relative_error(grads.dv, ref.dv);
  double e_db = 0.0;
  if (d.learned_beta) e_db = relative_error(grads.dbeta, ref.dbeta, floors.beta);
  std::printf("[ cmp ] %-66s out %.1e dq %.1e dk %.1e dv %.1e dbeta %.1e%s (kernel %.2fs, ref %.2fs)\n",
              name(c).c_str(), e_out, e_dq, e_dk, e_dv, e_db, floors.qk > 0.0 ? " [1 key/doc: floored]" : "",
              kernel_s, ref_s);
  EXPECT_LE(e_out, kOutTolerance);
  EXPECT_LE(e_dq, kGradTolerance);
  EXPECT_LE(e_dk, kGradTolerance);
  EXPECT_LE(e_dv, kGradTolerance);
  if (d.learned_beta) {
    EXPECT_LE(e_db, kGradTolerance);
  } else {
    for (float x : grads.dbeta) EXPECT_TRUE(std::isnan(x)) << "dbeta was null but something was written";
  }
}

std::vector<Case> cases() {
  using enum RaceEstimator;
  std::vector<Case> cs;
  // Short sequences: every table shape x estimator x direction at T = 1, 7, 63; the other axes (D, mask,
  // documents, planes, beta, B x H) vary from case to case, drawn from a fixed seed.
  const std::pair<int, int> table_shapes[] = {{1, 1}, {3, 3}, {2, 5}, {4, 4}};
  const int64_t dims[] = {16, 64, 128};
  std::mt19937_64 pick(2024);
  for (int64_t T : {1, 7, 63}) {
    int i = 0;
    for (auto [L, P] : table_shapes) {
      for (RaceEstimator estimator : {bucket, ratio}) {
        for (bool causal : {true, false}) {
          Case c{.T = T, .L = L, .P = P, .estimator = estimator, .causal = causal};
          c.D = dims[(i + static_cast<int>(pick() % 2)) % 3];
          const bool many = pick() % 2 == 0;
          c.B = many ? 2 : 1;
          c.H = many ? 3 : 1;
          c.mask = static_cast<Mask>(pick() % 3);
          if (c.mask == Mask::random_empty_row && c.B == 1) c.mask = Mask::random;
          c.segments = pick() % 2 == 0;
          c.per_head = pick() % 2 == 0;
          c.beta = static_cast<Beta>(i % 3);
          cs.push_back(c);
          ++i;
        }
      }
    }
  }
  // Long sequences, chosen by hand so that every axis is covered and the fp64 reference stays affordable.
  const Mask none = Mask::none, mask = Mask::random, empty_row = Mask::random_empty_row;
  const Beta one = Beta::one, inv_sqrt_d = Beta::inv_sqrt_d, learned = Beta::learned;
  auto add = [&](int64_t B, int64_t H, int64_t T, int64_t D, int L, int P, RaceEstimator e, bool causal,
                 Mask m, bool seg, bool per_head, Beta beta) {
    cs.push_back({.B = B,
                  .H = H,
                  .T = T,
                  .D = D,
                  .L = L,
                  .P = P,
                  .estimator = e,
                  .causal = causal,
                  .mask = m,
                  .segments = seg,
                  .per_head = per_head,
                  .beta = beta});
  };
  add(2, 3, 500, 64, 3, 3, bucket, true, mask, true, true, learned);
  add(2, 3, 500, 64, 3, 3, ratio, true, empty_row, false, false, inv_sqrt_d);
  add(1, 1, 500, 128, 4, 4, bucket, false, none, false, false, one);
  add(1, 1, 500, 128, 4, 4, ratio, false, none, true, true, learned);
  add(2, 3, 500, 16, 2, 5, bucket, false, mask, true, false, learned);
  add(2, 3, 500, 16, 1, 1, ratio, true, none, false, true, one);
  add(1, 2, 1000, 64, 2, 5, bucket, true, mask, true, true, learned);
  add(1, 2, 1000, 64, 4, 4, ratio, true, none, false, false, learned);
  add(2, 1, 1000, 128, 3, 3, bucket, false, empty_row, false, false, inv_sqrt_d);
  add(1, 1, 1000, 128, 1, 1, ratio, false, none, true, true, learned);
  add(2, 3, 1000, 16, 3, 3, bucket, true, none, false, false, learned);
  add(1, 1, 3000, 16, 3, 3, bucket, true, mask, true, false, learned);
  add(1, 1, 3000, 16, 4, 4, ratio, false, none, false, false, one);
  add(1, 1, 3000, 16, 2, 5, bucket, false, none, false, true, learned);
  // One (batch, head) row over 8192 tokens: the kernel splits it into spans across threads (with fewer rows
  // than threads), so state crosses span edges, inside documents too. Checked against the scan reference.
  add(1, 1, 10000, 16, 3, 3, bucket, true, mask, true, false, learned);
  add(1, 1, 10000, 16, 3, 3, ratio, true, none, false, true, learned);
  add(1, 1, 10000, 64, 2, 5, bucket, false, none, true, false, one);
  add(1, 1, 10000, 16, 4, 4, ratio, false, mask, false, false, learned);
  add(1, 1, 17000, 16, 1, 1, bucket, true, none, true, true, learned);
  add(1, 1, 17000, 16, 1, 1, ratio, false, mask, true, false, learned);
  return cs;
}

INSTANTIATE_TEST_SUITE_P(Cases, RaceAttentionCpu, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& param_info) {
                           return name(param_info.param);
                         });

// --- Properties of the kernel alone
// -------------------------------------------------------------------------

TEST(RaceAttentionCpuProperties, BidirectionalEqualsCausalAtTheLastPosition) {
  for (RaceEstimator estimator : {RaceEstimator::bucket, RaceEstimator::ratio}) {
    Case c{.B = 2,
           .H = 3,
           .T = 257,
           .D = 64,
           .L = 3,
           .P = 3,
           .estimator = estimator,
           .mask = Mask::random,
           .per_head = true,
           .beta = Beta::learned};
    Data d = make_data(c, 77);
    d.options.causal = true;
    const auto causal = kernel_forward(d);
    d.options.causal = false;
    const auto bidir = kernel_forward(d);
    double diff = 0.0, ref = 0.0, elsewhere = 0.0;
    for (int64_t bh = 0; bh < c.B * c.H; ++bh) {
      for (int64_t t = 0; t < c.T; ++t) {
        for (int64_t i = 0; i < c.D; ++i) {
          const size_t at = static_cast<size_t>((bh * c.T + t) * c.D + i);
          const double e = static_cast<double>(bidir[at]) - static_cast<double>(causal[at]);
          if (t == c.T - 1) {
            diff += e * e;
            ref += static_cast<double>(causal[at]) * static_cast<double>(causal[at]);
          } else {
            elsewhere = std::max(elsewhere, std::abs(e));
          }
        }
      }
    }
    EXPECT_LE(std::sqrt(diff / ref), kOutTolerance);
    EXPECT_GT(elsewhere, 1e-3);  // they differ before the last position
  }
}

TEST(RaceAttentionCpuProperties, RunsAreBitIdentical) {
  // Several rows per thread, and one long row split into spans across threads.
  const Case cases[] = {
      {.B = 2,
       .H = 3,
       .T = 1000,
       .D = 64,
       .L = 3,
       .P = 3,
       .estimator = RaceEstimator::bucket,
       .causal = true,
       .mask = Mask::random,
       .segments = true,
       .beta = Beta::learned},
      {.B = 2,
       .H = 3,
       .T = 1000,
       .D = 64,
       .L = 3,
       .P = 3,
       .estimator = RaceEstimator::ratio,
       .causal = false,
       .mask = Mask::random,
       .segments = true,
       .beta = Beta::learned},
      {.B = 1,
       .H = 1,
       .T = 10000,
       .D = 16,
       .L = 3,
       .P = 3,
       .estimator = RaceEstimator::bucket,
       .causal = true,
       .mask = Mask::random,
       .segments = true,
       .beta = Beta::learned},
      {.B = 1,
       .H = 1,
       .T = 10000,
       .D = 16,
       .L = 3,
       .P = 3,
       .estimator = RaceEstimator::ratio,
       .causal = false,
       .mask = Mask::none,
       .segments = false,
       .beta = Beta::learned},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(name(c));
    const Data d = make_data(c, 88);
    const auto out1 = kernel_forward(d);
    const auto out2 = kernel_forward(d);
    const auto g1 = kernel_backward(d, true);
    const auto g2 = kernel_backward(d, true);
    auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    };
    EXPECT_TRUE(same(out1, out2));
    EXPECT_TRUE(same(g1.dq, g2.dq));
    EXPECT_TRUE(same(g1.dk, g2.dk));
    EXPECT_TRUE(same(g1.dv, g2.dv));
    EXPECT_TRUE(same(g1.dbeta, g2.dbeta));
  }
}

TEST(RaceAttentionCpuProperties, GradientsCanBeRequestedOneAtATime) {
  Case c{.B = 2,
         .H = 2,
         .T = 129,
         .D = 16,
         .L = 2,
         .P = 3,
         .mask = Mask::random,
         .segments = true,
         .beta = Beta::learned};
  const Data d = make_data(c, 99);
  const auto ref_in = race::reference::to_fp64(d.shape, d.inputs());
  const auto ref = race::reference::race_attention_backward(
      d.shape, d.options, ref_in, std::vector<double>(d.dout.begin(), d.dout.end()));
  const Floors floors = gradient_floors(d);
  for (int which = 0; which < 4; ++which) {
    auto buffer = nan_filled(which == 3 ? d.shape.heads : d.size());
    RaceAttentionGradients grads;
    if (which == 0) grads.dq = buffer.data();
    if (which == 1) grads.dk = buffer.data();
    if (which == 2) grads.dv = buffer.data();
    if (which == 3) grads.dbeta = buffer.data();
    race::kernels::cpu::race_attention_backward(d.shape, d.options, d.inputs(), d.dout.data(), grads);
    const std::vector<double>* expected[] = {&ref.dq, &ref.dk, &ref.dv, &ref.dbeta};
    const double floor = which == 2 ? 0.0 : which == 3 ? floors.beta : floors.qk;
    EXPECT_LE(relative_error(buffer, *expected[which], floor), kGradTolerance) << "gradient " << which;
  }
}

TEST(RaceAttentionCpuProperties, ValidateRejectsBadShapesAndOptions) {
  const RaceAttentionShape good{
      .batch = 2, .heads = 3, .seq_len = 17, .head_dim = 16, .tables = 3, .bits = 3};
  const RaceAttentionOptions ok{};
  EXPECT_NO_THROW(race::kernels::validate(good, ok));
  auto bad_shape = [&](auto change) {
    RaceAttentionShape s = good;
    change(s);
    return s;
  };
  const RaceAttentionShape bad_shapes[] = {
      bad_shape([](RaceAttentionShape& s) { s.batch = 0; }),
      bad_shape([](RaceAttentionShape& s) { s.batch = -1; }),
      bad_shape([](RaceAttentionShape& s) { s.heads = 0; }),
      bad_shape([](RaceAttentionShape& s) { s.seq_len = -5; }),
      bad_shape([](RaceAttentionShape& s) { s.head_dim = 0; }),
      bad_shape([](RaceAttentionShape& s) { s.head_dim = -16; }),
      bad_shape([](RaceAttentionShape& s) { s.tables = 0; }),
      bad_shape([](RaceAttentionShape& s) { s.tables = -2; }),
      bad_shape([](RaceAttentionShape& s) { s.bits = -1; }),
      bad_shape([](RaceAttentionShape& s) { s.bits = 40; }),
  };
  for (const auto& s : bad_shapes) {
    EXPECT_THROW(race::kernels::validate(s, ok), race::Error)
        << "B=" << s.batch << " H=" << s.heads << " T=" << s.seq_len << " D=" << s.head_dim
        << " L=" << s.tables << " P=" << s.bits;
  }
  const RaceAttentionShape too_many_buckets = bad_shape([](RaceAttentionShape& s) {
    s.tables = 1 << 10;
    s.bits = 12;
  });
  EXPECT_THROW(race::kernels::validate(too_many_buckets, ok), race::Error);
  const RaceAttentionShape overflowing = bad_shape([](RaceAttentionShape& s) {
    s.seq_len = int64_t{1} << 40;
    s.head_dim = int64_t{1} << 30;
  });
  EXPECT_THROW(race::kernels::validate(overflowing, ok), race::Error);
  // 1e-35 is positive but phi / eps would overflow fp32.
  for (float eps :
       {-1e-6f, 1e-35f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    RaceAttentionOptions o{};
    o.eps = eps;
    EXPECT_THROW(race::kernels::validate(good, o), race::Error) << "eps=" << eps;
  }
}

// With 8 threads and one row, the row splits into 8 spans, so carries chain through spans that hold no
// document start (2 threads never exercise that). Both directions, with and without documents, against
// the fp64 scan reference and against the unsplit single-thread run.
TEST(RaceAttentionCpuProperties, ManySpansMatchTheReferenceAndTheUnsplitRun) {
  const int threads_before = omp_get_max_threads();
  for (const bool causal : {true, false}) {
    for (const bool segments : {false, true}) {
      Case c{.T = 40000, .D = 16, .L = 2, .P = 3, .causal = causal};
      Data d = make_data(c, 77 + 2 * causal + segments);
      if (segments) {
        d.segment_ids.assign(static_cast<size_t>(c.T), 0);
        // a document spanning more than three spans, then short ones, then one to the end
        for (int64_t t = 0; t < c.T; ++t)
          d.segment_ids[t] = t < 21000 ? 1 : t < 21005 ? 2 : t < 30000 ? 3 : 4;
      }
      omp_set_num_threads(8);
      const auto out = kernel_forward(d);
      const auto grads = kernel_backward(d, true);
      omp_set_num_threads(1);
      const auto out_unsplit = kernel_forward(d);
      const auto grads_unsplit = kernel_backward(d, true);
      omp_set_num_threads(threads_before);

      const auto ref_in = race::reference::to_fp64(d.shape, d.inputs());
      const std::vector<double> dout(d.dout.begin(), d.dout.end());
      const auto ref_out = race::reference::race_attention_forward_scan(d.shape, d.options, ref_in);
      const auto ref = race::reference::race_attention_backward_scan(d.shape, d.options, ref_in, dout);
      const std::string what =
          std::string(causal ? "causal" : "bidirectional") + (segments ? " segments" : "");
      EXPECT_LE(relative_error(out, ref_out), kOutTolerance) << what;
      EXPECT_LE(relative_error(grads.dq, ref.dq), kGradTolerance) << what;
      EXPECT_LE(relative_error(grads.dk, ref.dk), kGradTolerance) << what;
      EXPECT_LE(relative_error(grads.dv, ref.dv), kGradTolerance) << what;
      EXPECT_LE(relative_error(grads.dbeta, ref.dbeta), kGradTolerance) << what;
      const std::vector<double> unsplit(out_unsplit.begin(), out_unsplit.end());
      const std::vector<double> unsplit_dk(grads_unsplit.dk.begin(), grads_unsplit.dk.end());
      EXPECT_LE(relative_error(out, unsplit), 1e-6) << what;
      EXPECT_LE(relative_error(grads.dk, unsplit_dk), 1e-6) << what;
    }
  }
}

// A NaN in q or k must reach the output: the vectorised tanh and exp keep it rather than clamping it
// into a finite hash, so a diverged run shows instead of training on garbage.
TEST(RaceAttentionCpuProperties, NanInputsPropagate) {
  for (const bool in_key : {false, true}) {
    Data d = make_data(Case{.T = 40, .D = 16}, 5);
    (in_key ? d.k : d.q)[3 * 16 + 2] = std::numeric_limits<float>::quiet_NaN();
    const auto out = kernel_forward(d);
    const bool any_nan = std::any_of(out.begin(), out.end(), [](float x) { return std::isnan(x); });
    EXPECT_TRUE(any_nan) << (in_key ? "NaN in k" : "NaN in q");
  }
}

}  // namespace
