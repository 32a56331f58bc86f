// The fp64 RACE attention reference checked on its own: its backward against central finite differences of
// its loss sum(dout * out), and the invariants the semantics promise (phi is a distribution per table, the
// corner order, bidirectional = causal at the last position, packed documents = documents alone, pad keys
// are inert, the pairwise form = the literal A_t / B_t form, a closed form for tiny cases).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "reference/race_reference.h"

namespace {

using race::kernels::RaceAttentionOptions;
using race::kernels::RaceAttentionShape;
using race::kernels::RaceEstimator;
using race::reference::RaceGradients;
using race::reference::RaceInputs;

struct Config {
  std::string name = "case";
  int64_t B = 1, H = 1, T = 5, D = 4;
  int L = 1, P = 1;
  RaceEstimator estimator = RaceEstimator::bucket;
  bool causal = true;
  bool mask = false;        // random pad keys (every row gets at least one)
  bool empty_row = false;   // with mask: the last row is all pads
  bool segments = false;    // several documents per row, including length-1 documents
  bool per_head = false;    // planes (H, L, P, D)
  std::vector<double> betas = {1.0};  // beta of head h: betas[h % size]
};

// gtest prints a parameter with this (instead of its bytes).
void PrintTo(const Config& c, std::ostream* os) { *os << c.name; }

struct Problem {
  RaceAttentionShape shape;
  RaceAttentionOptions options;
  RaceInputs inputs;
  std::vector<double> dout;
};

std::vector<double> normal(std::mt19937_64& rng, int64_t n, double scale) {
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<double> out(static_cast<size_t>(n));
  for (auto& x : out) x = scale * dist(rng);
  return out;
}

// Segment ids of one row: distinct ids per document, not monotonic, a length-1 document after the first.
std::vector<int32_t> random_segments(std::mt19937_64& rng, int64_t T) {
  std::vector<int32_t> ids(static_cast<size_t>(T));
  int32_t id = 1000;
  int64_t t = 0, doc = 0;
  while (t < T) {
    int64_t len = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(std::max<int64_t>(1, T / 3)));
    if (doc == 1 || rng() % 4 == 0) len = 1;
    for (int64_t i = 0; i < len && t < T; ++i, ++t) ids[t] = id;
    id = (doc % 2 == 0) ? id - 7 - static_cast<int32_t>(rng() % 5) : id + 31;  // distinct, up and down
    ++doc;
  }
  return ids;
}

Problem make_problem(const Config& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Problem p;
  p.shape.batch = c.B;
  p.shape.heads = c.H;
  p.shape.seq_len = c.T;
  p.shape.head_dim = c.D;
  p.shape.tables = c.L;
  p.shape.bits = c.P;
  p.shape.planes_per_head = c.per_head;
  p.options.causal = c.causal;
  p.options.estimator = c.estimator;
  const int64_t n = c.B * c.H * c.T * c.D;
  // |W x| ~ 1.2 for x ~ N(0, 1.2^2 / D): tanh in its responsive range.
  const double qk_scale = 1.2 / std::sqrt(static_cast<double>(c.D));
  p.inputs.q = normal(rng, n, qk_scale);
  p.inputs.k = normal(rng, n, qk_scale);
  p.inputs.v = normal(rng, n, 1.0);
  p.inputs.planes = normal(rng, (c.per_head ? c.H : 1) * c.L * c.P * c.D, 1.0);
  for (int64_t h = 0; h < c.H; ++h) p.inputs.beta.push_back(c.betas[static_cast<size_t>(h) % c.betas.size()]);
  if (c.mask) {
    p.inputs.key_mask.assign(static_cast<size_t>(c.B * c.T), 1);
    for (int64_t b = 0; b < c.B; ++b) {
      const bool empty = c.empty_row && b == c.B - 1;
      for (int64_t t = 0; t < c.T; ++t) p.inputs.key_mask[b * c.T + t] = (empty || rng() % 10 < 3) ? 0 : 1;
      if (!empty) p.inputs.key_mask[b * c.T + static_cast<int64_t>(rng() % static_cast<uint64_t>(c.T))] = 0;
    }
  }
  if (c.segments) {
    for (int64_t b = 0; b < c.B; ++b) {
      const auto ids = random_segments(rng, c.T);
      p.inputs.segment_ids.insert(p.inputs.segment_ids.end(), ids.begin(), ids.end());
    }
  }
  p.dout = normal(rng, n, 1.0);
  return p;
}

double loss(const Problem& p) {
  return race::reference::race_attention_loss(p.shape, p.options, p.inputs, p.dout);
}

// max_i |fd_i - an_i| / max_i |an_i|.
double max_error(const std::vector<double>& fd, const std::vector<double>& an) {
  double err = 0.0, scale = 0.0;
  for (size_t i = 0; i < fd.size(); ++i) {
    err = std::max(err, std::abs(fd[i] - an[i]));
    scale = std::max(scale, std::abs(an[i]));
  }
  return scale > 0.0 ? err / scale : err;
}

// Central differences of the loss with respect to every entry of x (a member of p.inputs).
std::vector<double> finite_differences(Problem& p, std::vector<double>& x) {
  std::vector<double> grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    const double h = 1e-6 * std::max(1.0, std::abs(saved));
    x[i] = saved + h;
    const double plus = loss(p);
    x[i] = saved - h;
    const double minus = loss(p);
    x[i] = saved;
    grad[i] = (plus - minus) / (2.0 * h);
  }
  return grad;
}

class FiniteDifferences : public ::testing::TestWithParam<Config> {};

TEST_P(FiniteDifferences, GradientsMatchCentralDifferences) {
  const Config& c = GetParam();
  Problem p = make_problem(c, 0x5eed + c.T * 131 + c.D);
  const RaceGradients an = race::reference::race_attention_backward(p.shape, p.options, p.inputs, p.dout);

  const double e_dq = max_error(finite_differences(p, p.inputs.q), an.dq);
  const double e_dk = max_error(finite_differences(p, p.inputs.k), an.dk);
  const double e_dv = max_error(finite_differences(p, p.inputs.v), an.dv);
  const double e_db = max_error(finite_differences(p, p.inputs.beta), an.dbeta);
  std::printf("[ fd ] %-28s max |fd - an| / max |an|: dq %.2e  dk %.2e  dv %.2e  dbeta %.2e\n", c.name.c_str(),
              e_dq, e_dk, e_dv, e_db);
  EXPECT_LT(e_dq, 1e-6);
  EXPECT_LT(e_dk, 1e-6);
  EXPECT_LT(e_dv, 1e-6);
  EXPECT_LT(e_db, 1e-6);

  // The scan form (for long sequences) gives the same gradients.
  const RaceGradients scan = race::reference::race_attention_backward_scan(p.shape, p.options, p.inputs, p.dout);
  EXPECT_LT(max_error(scan.dq, an.dq), 1e-12);
  EXPECT_LT(max_error(scan.dk, an.dk), 1e-12);
  EXPECT_LT(max_error(scan.dv, an.dv), 1e-12);
  EXPECT_LT(max_error(scan.dbeta, an.dbeta), 1e-12);

  // Pad keys: no gradient reaches k or v there (phi = 0 exactly).
  if (!p.inputs.key_mask.empty()) {
    for (int64_t b = 0; b < c.B; ++b) {
      for (int64_t h = 0; h < c.H; ++h) {
        for (int64_t t = 0; t < c.T; ++t) {
          if (p.inputs.key_mask[b * c.T + t] != 0) continue;
          for (int64_t d = 0; d < c.D; ++d) {
            const int64_t i = ((b * c.H + h) * c.T + t) * c.D + d;
            EXPECT_EQ(an.dk[i], 0.0);
            EXPECT_EQ(an.dv[i], 0.0);
          }
        }
      }
    }
  }
}

std::vector<Config> fd_configs() {
  const auto bucket = RaceEstimator::bucket;
  const auto ratio = RaceEstimator::ratio;
  std::vector<Config> cs;
  auto add = [&](Config c) { cs.push_back(std::move(c)); };
  add({.name = "bucket_causal_L1P1", .T = 5, .D = 4, .estimator = bucket});
  add({.name = "ratio_causal_L1P1", .T = 5, .D = 4, .estimator = ratio});
  add({.name = "bucket_bidir_perhead", .H = 2, .T = 6, .D = 5, .L = 2, .P = 2, .estimator = bucket,
       .causal = false, .per_head = true, .betas = {1.0, 0.6}});
  add({.name = "ratio_bidir_shared", .H = 2, .T = 6, .D = 5, .L = 2, .P = 2, .estimator = ratio, .causal = false,
       .betas = {1.0, 1.7}});
  add({.name = "bucket_causal_mask", .B = 2, .H = 2, .T = 8, .D = 6, .L = 2, .P = 3, .estimator = bucket,
       .mask = true, .betas = {1.0, 1.0 / std::sqrt(6.0)}});
  add({.name = "ratio_causal_mask_perhead", .B = 2, .H = 2, .T = 8, .D = 6, .L = 2, .P = 3, .estimator = ratio,
       .mask = true, .per_head = true, .betas = {1.3, 0.8}});
  add({.name = "bucket_bidir_mask", .B = 2, .T = 9, .D = 7, .L = 3, .P = 2, .estimator = bucket, .causal = false,
       .mask = true});
  add({.name = "ratio_bidir_mask", .B = 2, .T = 9, .D = 7, .L = 3, .P = 2, .estimator = ratio, .causal = false,
       .mask = true, .betas = {2.0}});
  add({.name = "bucket_causal_segments", .B = 2, .H = 2, .T = 10, .D = 8, .L = 1, .P = 3, .estimator = bucket,
       .segments = true, .per_head = true, .betas = {1.0, 2.5}});
  add({.name = "ratio_causal_segments", .B = 2, .H = 2, .T = 10, .D = 8, .L = 1, .P = 3, .estimator = ratio,
       .segments = true, .betas = {0.5, 1.0}});
  add({.name = "bucket_bidir_mask_segments", .B = 2, .H = 2, .T = 12, .D = 8, .L = 2, .P = 3, .estimator = bucket,
       .causal = false, .mask = true, .segments = true, .betas = {1.0, 1.0 / std::sqrt(8.0)}});
  add({.name = "ratio_bidir_mask_seg_perhead", .B = 2, .H = 2, .T = 12, .D = 8, .L = 2, .P = 3,
       .estimator = ratio, .causal = false, .mask = true, .segments = true, .per_head = true,
       .betas = {1.0, 3.0}});
  add({.name = "bucket_causal_empty_row", .B = 2, .H = 2, .T = 11, .D = 5, .L = 2, .P = 4, .estimator = bucket,
       .mask = true, .empty_row = true, .segments = true, .betas = {1.0, 1.0 / std::sqrt(5.0)}});
  add({.name = "ratio_causal_empty_row", .B = 2, .H = 2, .T = 11, .D = 5, .L = 2, .P = 4, .estimator = ratio,
       .mask = true, .empty_row = true, .segments = true, .per_head = true, .betas = {1.0, 1.0 / std::sqrt(5.0)}});
  return cs;
}

INSTANTIATE_TEST_SUITE_P(Reference, FiniteDifferences, ::testing::ValuesIn(fd_configs()),
                         [](const ::testing::TestParamInfo<Config>& param_info) { return param_info.param.name; });

// --- Invariants ---------------------------------------------------------------------------------------------

TEST(RaceReference, PhiIsADistributionPerTableInItertoolsOrder) {
  std::mt19937_64 rng(7);
  for (int P : {1, 2, 3, 5}) {
    for (double beta : {0.1, 1.0, 4.0}) {
      const int L = 3;
      const int64_t D = 6, R = int64_t{1} << P;
      const auto x = normal(rng, D, 1.0 / std::sqrt(static_cast<double>(D)));
      const auto planes = normal(rng, L * P * D, 1.0);
      const auto phi = race::reference::soft_hash(x.data(), planes.data(), L, P, D, beta);
      ASSERT_EQ(static_cast<int64_t>(phi.size()), L * R);
      // Corners in itertools.product([-1, 1], repeat=P) order: the last coordinate varies fastest.
      std::vector<std::vector<double>> corners = {{}};
      for (int b = 0; b < P; ++b) {
        std::vector<std::vector<double>> next;
        for (const auto& c : corners) {
          for (double sign : {-1.0, 1.0}) {
            next.push_back(c);
            next.back().push_back(sign);
          }
        }
        corners = next;
      }
      for (int l = 0; l < L; ++l) {
        std::vector<double> u(static_cast<size_t>(P));
        for (int b = 0; b < P; ++b) {
          double wx = 0.0;
          for (int64_t d = 0; d < D; ++d) wx += planes[(l * P + b) * D + d] * x[d];
          u[b] = std::tanh(wx);
        }
        // phi_l(x) = softmax_r(beta <u, c_r>), which the reference computes as a product of sigmoids.
        std::vector<double> logits(static_cast<size_t>(R));
        double norm = 0.0, sum = 0.0;
        for (int64_t r = 0; r < R; ++r) {
          logits[r] = 0.0;
          for (int b = 0; b < P; ++b) logits[r] += beta * u[b] * corners[r][b];
          norm += std::exp(logits[r]);
        }
        for (int64_t r = 0; r < R; ++r) {
          EXPECT_NEAR(phi[l * R + r], std::exp(logits[r]) / norm, 1e-14) << "P=" << P << " l=" << l << " r=" << r;
          EXPECT_GE(phi[l * R + r], 0.0);
          sum += phi[l * R + r];
        }
        EXPECT_NEAR(sum, 1.0, 1e-13) << "P=" << P << " beta=" << beta;
      }
    }
  }
}

TEST(RaceReference, PhiOfEveryRealKeySumsToOnePerTable) {
  // Through the attention itself: with one visible real key per query (all documents of length 1), the
  // ratio estimator gives o_t = v_t * (sum_s phi(q_t)_s phi(k_t)_s) / (... + eps) = v_t (up to eps), and the
  // per-key table sums are checked directly.
  Config c{.B = 2, .H = 2, .T = 6, .D = 5, .L = 4, .P = 3, .estimator = RaceEstimator::ratio, .mask = true,
           .per_head = true, .betas = {1.0, 2.0}};
  Problem p = make_problem(c, 11);
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t h = 0; h < c.H; ++h) {
      for (int64_t t = 0; t < c.T; ++t) {
        const int64_t base = ((b * c.H + h) * c.T + t) * c.D;
        const auto phi = race::reference::soft_hash(p.inputs.k.data() + base,
                                                     p.inputs.planes.data() + race::reference::planes_offset(p.shape, h),
                                                     c.L, c.P, c.D, p.inputs.beta[h]);
        for (int l = 0; l < c.L; ++l) {
          double sum = 0.0;
          for (int r = 0; r < (1 << c.P); ++r) sum += phi[l * (1 << c.P) + r];
          EXPECT_NEAR(sum, 1.0, 1e-13);
        }
      }
    }
  }
  p.inputs.segment_ids.resize(static_cast<size_t>(c.B * c.T));
  for (size_t i = 0; i < p.inputs.segment_ids.size(); ++i) p.inputs.segment_ids[i] = static_cast<int32_t>(i);
  const auto out = race::reference::race_attention_forward(p.shape, p.options, p.inputs);
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t h = 0; h < c.H; ++h) {
      for (int64_t t = 0; t < c.T; ++t) {
        const bool real = p.inputs.key_mask[b * c.T + t] != 0;
        for (int64_t d = 0; d < c.D; ++d) {
          const int64_t i = ((b * c.H + h) * c.T + t) * c.D + d;
          EXPECT_NEAR(out[i], real ? p.inputs.v[i] : 0.0, 1e-4 * std::abs(p.inputs.v[i]) + 1e-12);
        }
      }
    }
  }
}

TEST(RaceReference, ClosedFormOneTableOneBit) {
  // L = P = 1: phi(x) = (sigmoid(-2 beta u), sigmoid(2 beta u)), u = tanh(w . x). Two positions, causal.
  const double beta = 0.8, eps = static_cast<double>(RaceAttentionOptions{}.eps);
  const std::vector<double> w = {0.9, -0.4};
  const std::vector<double> q = {0.3, 0.7, -0.5, 0.2}, k = {-0.6, 0.1, 0.4, 0.8}, v = {1.0, -2.0, 0.5, 3.0};
  auto sig = [](double z) { return 1.0 / (1.0 + std::exp(-z)); };
  auto phi = [&](const double* x) {
    const double u = std::tanh(w[0] * x[0] + w[1] * x[1]);
    return std::vector<double>{sig(-2.0 * beta * u), sig(2.0 * beta * u)};
  };
  const auto pq0 = phi(&q[0]), pq1 = phi(&q[2]), pk0 = phi(&k[0]), pk1 = phi(&k[2]);
  RaceAttentionShape shape{.batch = 1, .heads = 1, .seq_len = 2, .head_dim = 2, .tables = 1, .bits = 1};
  RaceInputs in{.q = q, .k = k, .v = v, .planes = w, .beta = {beta}, .key_mask = {}, .segment_ids = {}};
  for (auto estimator : {RaceEstimator::bucket, RaceEstimator::ratio}) {
    RaceAttentionOptions options{.causal = true, .estimator = estimator};
    const auto out = race::reference::race_attention_forward(shape, options, in);
    std::vector<double> expected(4);
    for (int d = 0; d < 2; ++d) {
      if (estimator == RaceEstimator::bucket) {
        double o0 = 0.0, o1 = 0.0;
        for (int s = 0; s < 2; ++s) {
          o0 += pq0[s] * pk0[s] * v[d] / (pk0[s] + eps);
          o1 += pq1[s] * (pk0[s] * v[d] + pk1[s] * v[2 + d]) / (pk0[s] + pk1[s] + eps);
        }
        expected[d] = o0;
        expected[2 + d] = o1;
      } else {
        const double k00 = pq0[0] * pk0[0] + pq0[1] * pk0[1];
        const double k10 = pq1[0] * pk0[0] + pq1[1] * pk0[1], k11 = pq1[0] * pk1[0] + pq1[1] * pk1[1];
        expected[d] = k00 * v[d] / (k00 + eps);
        expected[2 + d] = (k10 * v[d] + k11 * v[2 + d]) / (k10 + k11 + eps);
      }
    }
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[i], expected[i], 1e-14);
  }
}

TEST(RaceReference, PairwiseFormEqualsLiteralSums) {
  for (auto estimator : {RaceEstimator::bucket, RaceEstimator::ratio}) {
    for (bool causal : {true, false}) {
      Config c{.B = 2, .H = 3, .T = 23, .D = 6, .L = 2, .P = 3, .estimator = estimator, .causal = causal,
               .mask = true, .empty_row = true, .segments = true, .per_head = true, .betas = {1.0, 0.4, 2.0}};
      const Problem p = make_problem(c, 21);
      const auto a = race::reference::race_attention_forward(p.shape, p.options, p.inputs);
      const auto b = race::reference::race_attention_forward_literal(p.shape, p.options, p.inputs);
      for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-12 * (1.0 + std::abs(b[i])));
    }
  }
}

TEST(RaceReference, ScanFormEqualsPairwiseForm) {
  for (auto estimator : {RaceEstimator::bucket, RaceEstimator::ratio}) {
    for (bool causal : {true, false}) {
      for (bool segments : {false, true}) {
        Config c{.B = 2, .H = 2, .T = 150, .D = 7, .L = 2, .P = 3, .estimator = estimator, .causal = causal,
                 .mask = true, .empty_row = segments, .segments = segments, .per_head = segments,
                 .betas = {1.0, 0.35}};
        const Problem p = make_problem(c, 25);
        const auto out = race::reference::race_attention_forward(p.shape, p.options, p.inputs);
        const auto out_scan = race::reference::race_attention_forward_scan(p.shape, p.options, p.inputs);
        EXPECT_LT(max_error(out_scan, out), 1e-12);
        const auto g = race::reference::race_attention_backward(p.shape, p.options, p.inputs, p.dout);
        const auto g_scan = race::reference::race_attention_backward_scan(p.shape, p.options, p.inputs, p.dout);
        EXPECT_LT(max_error(g_scan.dq, g.dq), 1e-11);
        EXPECT_LT(max_error(g_scan.dk, g.dk), 1e-11);
        EXPECT_LT(max_error(g_scan.dv, g.dv), 1e-11);
        EXPECT_LT(max_error(g_scan.dbeta, g.dbeta), 1e-11);
      }
    }
  }
}

TEST(RaceReference, BidirectionalEqualsCausalAtTheLastPosition) {
  for (auto estimator : {RaceEstimator::bucket, RaceEstimator::ratio}) {
    for (bool segments : {false, true}) {
      Config c{.B = 2, .H = 2, .T = 17, .D = 6, .L = 3, .P = 2, .estimator = estimator, .mask = true,
               .segments = segments, .betas = {1.0, 1.5}};
      Problem p = make_problem(c, 31);
      p.options.causal = true;
      const auto causal = race::reference::race_attention_forward(p.shape, p.options, p.inputs);
      p.options.causal = false;
      const auto bidir = race::reference::race_attention_forward(p.shape, p.options, p.inputs);
      for (int64_t b = 0; b < c.B; ++b) {
        const auto doc = race::reference::documents(p.shape, p.inputs, b);
        for (int64_t t = 0; t < c.T; ++t) {
          const bool last_of_document = t == c.T - 1 || doc[t + 1] != doc[t];
          for (int64_t h = 0; h < c.H; ++h) {
            for (int64_t d = 0; d < c.D; ++d) {
              const int64_t i = ((b * c.H + h) * c.T + t) * c.D + d;
              if (last_of_document) {
                EXPECT_NEAR(bidir[i], causal[i], 1e-13 * (1.0 + std::abs(causal[i]))) << "b=" << b << " t=" << t;
              }
            }
          }
        }
      }
      // And they do differ elsewhere (the test would be vacuous otherwise).
      double diff = 0.0;
      for (size_t i = 0; i < causal.size(); ++i) diff = std::max(diff, std::abs(causal[i] - bidir[i]));
      EXPECT_GT(diff, 1e-3);
    }
  }
}

// Position range [begin, end) of row b as a standalone problem (B = 1, T = end - begin, no segment ids).
Problem slice(const Problem& p, int64_t b, int64_t begin, int64_t end) {
  const int64_t H = p.shape.heads, T = p.shape.seq_len, D = p.shape.head_dim, n = end - begin;
  Problem s;
  s.shape = p.shape;
  s.shape.batch = 1;
  s.shape.seq_len = n;
  s.options = p.options;
  s.inputs.planes = p.inputs.planes;
  s.inputs.beta = p.inputs.beta;
  auto cut = [&](const std::vector<double>& x) {
    std::vector<double> out;
    for (int64_t h = 0; h < H; ++h) {
      const auto first = x.begin() + ((b * H + h) * T + begin) * D;
      out.insert(out.end(), first, first + n * D);
    }
    return out;
  };
  s.inputs.q = cut(p.inputs.q);
  s.inputs.k = cut(p.inputs.k);
  s.inputs.v = cut(p.inputs.v);
  s.dout = cut(p.dout);
  if (!p.inputs.key_mask.empty()) {
    s.inputs.key_mask.assign(p.inputs.key_mask.begin() + b * T + begin, p.inputs.key_mask.begin() + b * T + end);
  }
  return s;
}

TEST(RaceReference, EachDocumentEqualsTheDocumentAlone) {
  for (auto estimator : {RaceEstimator::bucket, RaceEstimator::ratio}) {
    for (bool causal : {true, false}) {
      Config c{.B = 2, .H = 2, .T = 19, .D = 5, .L = 2, .P = 3, .estimator = estimator, .causal = causal,
               .mask = true, .segments = true, .per_head = true, .betas = {1.0, 0.5}};
      const Problem p = make_problem(c, 41);
      const auto out = race::reference::race_attention_forward(p.shape, p.options, p.inputs);
      const auto grads = race::reference::race_attention_backward(p.shape, p.options, p.inputs, p.dout);
      std::vector<double> dbeta_sum(static_cast<size_t>(c.H), 0.0);
      int documents = 0;
      for (int64_t b = 0; b < c.B; ++b) {
        const auto doc = race::reference::documents(p.shape, p.inputs, b);
        int64_t begin = 0;
        while (begin < c.T) {
          int64_t end = begin + 1;
          while (end < c.T && doc[end] == doc[begin]) ++end;
          ++documents;
          const Problem s = slice(p, b, begin, end);
          const auto s_out = race::reference::race_attention_forward(s.shape, s.options, s.inputs);
          const auto s_grads = race::reference::race_attention_backward(s.shape, s.options, s.inputs, s.dout);
          for (int64_t h = 0; h < c.H; ++h) {
            dbeta_sum[h] += s_grads.dbeta[h];
            for (int64_t t = begin; t < end; ++t) {
              for (int64_t d = 0; d < c.D; ++d) {
                const int64_t i = ((b * c.H + h) * c.T + t) * c.D + d;
                const int64_t j = (h * (end - begin) + (t - begin)) * c.D + d;
                EXPECT_NEAR(out[i], s_out[j], 1e-13 * (1.0 + std::abs(s_out[j])));
                EXPECT_NEAR(grads.dq[i], s_grads.dq[j], 1e-12 * (1.0 + std::abs(s_grads.dq[j])));
                EXPECT_NEAR(grads.dk[i], s_grads.dk[j], 1e-12 * (1.0 + std::abs(s_grads.dk[j])));
                EXPECT_NEAR(grads.dv[i], s_grads.dv[j], 1e-12 * (1.0 + std::abs(s_grads.dv[j])));
              }
            }
          }
          begin = end;
        }
      }
      EXPECT_GE(documents, 6);
      for (int64_t h = 0; h < c.H; ++h) EXPECT_NEAR(grads.dbeta[h], dbeta_sum[h], 1e-11 * (1.0 + std::abs(dbeta_sum[h])));
    }
  }
}

TEST(RaceReference, PadKeysChangeNothing) {
  for (auto estimator : {RaceEstimator::bucket, RaceEstimator::ratio}) {
    for (bool causal : {true, false}) {
      Config c{.B = 2, .H = 2, .T = 14, .D = 6, .L = 2, .P = 3, .estimator = estimator, .causal = causal,
               .mask = true, .segments = true, .betas = {1.0, 2.0}};
      const Problem p = make_problem(c, 51);
      Problem changed = p;
      std::mt19937_64 rng(52);
      std::normal_distribution<double> dist(0.0, 10.0);
      int pads = 0;
      for (int64_t b = 0; b < c.B; ++b) {
        for (int64_t t = 0; t < c.T; ++t) {
          if (p.inputs.key_mask[b * c.T + t] != 0) continue;
          ++pads;
          for (int64_t h = 0; h < c.H; ++h) {
            for (int64_t d = 0; d < c.D; ++d) {
              const int64_t i = ((b * c.H + h) * c.T + t) * c.D + d;
              changed.inputs.v[i] = dist(rng);
              changed.inputs.k[i] = dist(rng);
            }
          }
        }
      }
      ASSERT_GT(pads, 0);
      const auto out = race::reference::race_attention_forward(p.shape, p.options, p.inputs);
      const auto out2 = race::reference::race_attention_forward(changed.shape, changed.options, changed.inputs);
      EXPECT_EQ(out, out2);  // bit for bit: a pad key's phi is exactly 0
      const auto g = race::reference::race_attention_backward(p.shape, p.options, p.inputs, p.dout);
      const auto g2 = race::reference::race_attention_backward(changed.shape, changed.options, changed.inputs, p.dout);
      EXPECT_EQ(g.dq, g2.dq);
      EXPECT_EQ(g.dk, g2.dk);
      EXPECT_EQ(g.dv, g2.dv);
      EXPECT_EQ(g.dbeta, g2.dbeta);
    }
  }
}

TEST(RaceReference, TrailingPadKeysEqualTheShorterSequence) {
  for (auto estimator : {RaceEstimator::bucket, RaceEstimator::ratio}) {
    for (bool causal : {true, false}) {
      Config c{.B = 1, .H = 2, .T = 12, .D = 5, .L = 2, .P = 2, .estimator = estimator, .causal = causal,
               .betas = {1.0, 0.7}};
      Problem p = make_problem(c, 61);
      const int64_t keep = 8;
      p.inputs.key_mask.assign(static_cast<size_t>(c.T), 1);
      for (int64_t t = keep; t < c.T; ++t) p.inputs.key_mask[t] = 0;
      const auto out = race::reference::race_attention_forward(p.shape, p.options, p.inputs);
      Problem s = slice(p, 0, 0, keep);
      s.inputs.key_mask.clear();
      const auto s_out = race::reference::race_attention_forward(s.shape, s.options, s.inputs);
      for (int64_t h = 0; h < c.H; ++h) {
        for (int64_t t = 0; t < keep; ++t) {
          for (int64_t d = 0; d < c.D; ++d) {
            EXPECT_NEAR(out[((h * c.T) + t) * c.D + d], s_out[((h * keep) + t) * c.D + d], 1e-14);
          }
        }
      }
    }
  }
}

TEST(RaceReference, CausalOutputIgnoresTheFuture) {
  for (auto estimator : {RaceEstimator::bucket, RaceEstimator::ratio}) {
    Config c{.B = 1, .H = 1, .T = 10, .D = 4, .L = 2, .P = 2, .estimator = estimator};
    const Problem p = make_problem(c, 71);
    Problem changed = p;
    const int64_t t0 = 6;
    for (int64_t i = t0 * c.D; i < c.T * c.D; ++i) {
      changed.inputs.q[i] += 0.3;
      changed.inputs.k[i] -= 0.2;
      changed.inputs.v[i] *= 2.0;
    }
    const auto out = race::reference::race_attention_forward(p.shape, p.options, p.inputs);
    const auto out2 = race::reference::race_attention_forward(changed.shape, changed.options, changed.inputs);
    for (int64_t i = 0; i < t0 * c.D; ++i) EXPECT_EQ(out[i], out2[i]);
    EXPECT_NE(out[t0 * c.D], out2[t0 * c.D]);
  }
}

TEST(RaceReference, AcceptsTheKernelsFp32Inputs) {
  Config c{.B = 1, .H = 2, .T = 5, .D = 4, .L = 1, .P = 2, .mask = true, .segments = true};
  const Problem p = make_problem(c, 81);
  auto to_float = [](const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); };
  const auto q = to_float(p.inputs.q), k = to_float(p.inputs.k), v = to_float(p.inputs.v);
  const auto planes = to_float(p.inputs.planes), beta = to_float(p.inputs.beta), dout = to_float(p.dout);
  race::kernels::RaceAttentionInputs in{.q = q.data(), .k = k.data(), .v = v.data(), .planes = planes.data(),
                                        .beta = beta.data(), .key_mask = p.inputs.key_mask.data(),
                                        .segment_ids = p.inputs.segment_ids.data()};
  const RaceInputs in64 = race::reference::to_fp64(p.shape, in);
  EXPECT_EQ(in64.key_mask, p.inputs.key_mask);
  EXPECT_EQ(in64.segment_ids, p.inputs.segment_ids);
  EXPECT_EQ(race::reference::race_attention_forward(p.shape, p.options, in),
            race::reference::race_attention_forward(p.shape, p.options, in64));
  const auto g = race::reference::race_attention_backward(p.shape, p.options, in, dout.data());
  EXPECT_EQ(g.dq.size(), q.size());
  EXPECT_EQ(g.dbeta.size(), 2u);
}

}  // namespace
