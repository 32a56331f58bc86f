// Plain fp64 reference of RACE attention; see race_reference.h for the semantics. Every loop here is the
// formula it implements; nothing is chunked, tiled or reordered for speed.
#include "reference/race_reference.h"

#include <cmath>
#include <cstddef>
#include <utility>

#include "core/error.h"

namespace race::reference {
namespace {

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// c_{r,b}: +1 when bit (P-1-b) of r is set, else -1 (bit 0 of the corner is the most significant bit of r).
double corner(int64_t r, int b, int bits) { return ((r >> (bits - 1 - b)) & 1) != 0 ? 1.0 : -1.0; }

double dot(const double* a, const double* b, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void check_problem(const RaceAttentionShape& shape, const RaceInputs& inputs) {
  RACE_CHECK(shape.batch >= 1 && shape.heads >= 1 && shape.seq_len >= 1 && shape.head_dim >= 1,
             "reference: bad shape B={} H={} T={} D={}", shape.batch, shape.heads, shape.seq_len, shape.head_dim);
  RACE_CHECK(shape.tables >= 1 && shape.bits >= 0 && shape.bits <= 24, "reference: bad tables L={} bits P={}",
             shape.tables, shape.bits);
  const auto n = static_cast<size_t>(shape.batch * shape.heads * shape.seq_len * shape.head_dim);
  RACE_CHECK(inputs.q.size() == n && inputs.k.size() == n && inputs.v.size() == n,
             "reference: q/k/v sizes {}/{}/{}, expected {}", inputs.q.size(), inputs.k.size(), inputs.v.size(), n);
  const auto planes = static_cast<size_t>((shape.planes_per_head ? shape.heads : 1) * shape.tables * shape.bits *
                                          shape.head_dim);
  RACE_CHECK(inputs.planes.size() == planes, "reference: planes size {}, expected {}", inputs.planes.size(), planes);
  RACE_CHECK(inputs.beta.size() == static_cast<size_t>(shape.heads), "reference: beta size {}, expected {}",
             inputs.beta.size(), shape.heads);
  const auto rows = static_cast<size_t>(shape.batch * shape.seq_len);
  RACE_CHECK(inputs.key_mask.empty() || inputs.key_mask.size() == rows, "reference: key_mask size {}, expected {}",
             inputs.key_mask.size(), rows);
  RACE_CHECK(inputs.segment_ids.empty() || inputs.segment_ids.size() == rows,
             "reference: segment_ids size {}, expected {}", inputs.segment_ids.size(), rows);
}

// Everything one (batch, head) pair needs: phi of every query and key (pad keys: 0), documents, pointers.
struct Head {
  int64_t T = 0, D = 0, S = 0;
  const double* q = nullptr;       // (T, D)
  const double* k = nullptr;       // (T, D)
  const double* v = nullptr;       // (T, D)
  const double* planes = nullptr;  // (L, P, D)
  double beta = 0.0;
  std::vector<uint8_t> real;       // (T) 1 = real key
  std::vector<int64_t> doc;        // (T)
  std::vector<double> phi_q;       // (T, S)
  std::vector<double> phi_k;       // (T, S), rows of pad keys are 0

  const double* pq(int64_t t) const { return phi_q.data() + t * S; }
  const double* pk(int64_t j) const { return phi_k.data() + j * S; }
};

Head make_head(const RaceAttentionShape& shape, const RaceInputs& inputs, int64_t b, int64_t h) {
  Head head;
  head.T = shape.seq_len;
  head.D = shape.head_dim;
  head.S = shape.buckets();
  const int64_t base = (b * shape.heads + h) * head.T * head.D;
  head.q = inputs.q.data() + base;
  head.k = inputs.k.data() + base;
  head.v = inputs.v.data() + base;
  head.planes = inputs.planes.data() + planes_offset(shape, h);
  head.beta = inputs.beta[static_cast<size_t>(h)];
  head.doc = documents(shape, inputs, b);
  head.real.assign(static_cast<size_t>(head.T), 1);
  if (!inputs.key_mask.empty()) {
    for (int64_t t = 0; t < head.T; ++t) head.real[t] = inputs.key_mask[b * head.T + t] != 0 ? 1 : 0;
  }
  head.phi_q.assign(static_cast<size_t>(head.T * head.S), 0.0);
  head.phi_k.assign(static_cast<size_t>(head.T * head.S), 0.0);
  for (int64_t t = 0; t < head.T; ++t) {
    const auto pq = soft_hash(head.q + t * head.D, head.planes, shape.tables, shape.bits, head.D, head.beta);
    for (int64_t s = 0; s < head.S; ++s) head.phi_q[t * head.S + s] = pq[s];
    if (head.real[t] != 0) {
      const auto pk = soft_hash(head.k + t * head.D, head.planes, shape.tables, shape.bits, head.D, head.beta);
      for (int64_t s = 0; s < head.S; ++s) head.phi_k[t * head.S + s] = pk[s];
    }
  }
  return head;
}

// The keys query t sees.
std::vector<int64_t> visible_keys(const RaceAttentionOptions& options, const Head& head, int64_t t) {
  std::vector<int64_t> keys;
  for (int64_t j = 0; j < head.T; ++j) {
    if (visible(options, head.doc, t, j)) keys.push_back(j);
  }
  return keys;
}

// A_t[s] = sum over the visible keys of phi(k_j)_s.
std::vector<double> key_sums(const Head& head, const std::vector<int64_t>& keys) {
  std::vector<double> A(static_cast<size_t>(head.S), 0.0);
  for (int64_t j : keys) {
    for (int64_t s = 0; s < head.S; ++s) A[s] += head.pk(j)[s];
  }
  return A;
}

// o_t of one query, pairwise form: o_t = sum_j a_tj v_j with
//   bucket: a_tj = sum_s phi(q_t)_s phi(k_j)_s / (A_t[s] + eps)
//   ratio:  a_tj = (phi(q_t) . phi(k_j)) / (phi(q_t) . A_t + eps)
void forward_query(const RaceAttentionOptions& options, const Head& head, int64_t t, double* out) {
  const double eps = static_cast<double>(options.eps);
  const auto keys = visible_keys(options, head, t);
  const auto A = key_sums(head, keys);
  const double* pq = head.pq(t);
  const double den = dot(pq, A.data(), head.S) + eps;  // ratio only
  for (int64_t d = 0; d < head.D; ++d) out[d] = 0.0;
  for (int64_t j : keys) {
    const double* pk = head.pk(j);
    double a = 0.0;
    if (options.estimator == RaceEstimator::bucket) {
      for (int64_t s = 0; s < head.S; ++s) a += pq[s] * pk[s] / (A[s] + eps);
    } else {
      a = dot(pq, pk, head.S) / den;
    }
    for (int64_t d = 0; d < head.D; ++d) out[d] += a * head.v[j * head.D + d];
  }
}

// Through the soft hash: dq, dk of one (batch, head) from dL/dphi(q_t), dL/dphi(k_j); returns dL/dbeta.
// Pad keys have phi = 0 whatever k and beta are: no gradient flows there.
double hash_backward(const RaceAttentionShape& shape, const Head& head, const std::vector<double>& dphi_q,
                     const std::vector<double>& dphi_k, double* dq, double* dk) {
  double dbeta = 0.0;
  for (int64_t t = 0; t < head.T; ++t) {
    dbeta += soft_hash_backward(head.q + t * head.D, head.planes, shape.tables, shape.bits, head.D, head.beta,
                                dphi_q.data() + t * head.S, dq + t * head.D);
    if (head.real[t] != 0) {
      dbeta += soft_hash_backward(head.k + t * head.D, head.planes, shape.tables, shape.bits, head.D, head.beta,
                                  dphi_k.data() + t * head.S, dk + t * head.D);
    }
  }
  return dbeta;
}

// The documents of a head's row as [begin, end) ranges.
std::vector<std::pair<int64_t, int64_t>> document_ranges(const Head& head) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  int64_t begin = 0;
  for (int64_t t = 1; t <= head.T; ++t) {
    if (t == head.T || head.doc[t] != head.doc[begin]) {
      ranges.emplace_back(begin, t);
      begin = t;
    }
  }
  return ranges;
}

// Scan of one document [begin, end): calls use(t, A_t, B_t) for t = begin, ..., end - 1 with the sums over
// the keys query t sees: inclusive prefix sums when causal, the document's totals when bidirectional.
template <typename Use>
void scan_document(const RaceAttentionOptions& options, const Head& head, int64_t begin, int64_t end, Use use) {
  const int64_t S = head.S, D = head.D;
  std::vector<double> A(static_cast<size_t>(S), 0.0), B(static_cast<size_t>(S * D), 0.0);
  auto add_key = [&](int64_t j) {
    for (int64_t s = 0; s < S; ++s) {
      A[s] += head.pk(j)[s];
      for (int64_t d = 0; d < D; ++d) B[s * D + d] += head.pk(j)[s] * head.v[j * D + d];
    }
  };
  if (!options.causal) {
    for (int64_t j = begin; j < end; ++j) add_key(j);
  }
  for (int64_t t = begin; t < end; ++t) {
    if (options.causal) add_key(t);
    use(t, A, B);
  }
}

std::vector<double> to_vector(const float* data, int64_t n) {
  if (data == nullptr) return {};
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<double>(data[i]);
  return out;
}

}  // namespace

int64_t planes_offset(const RaceAttentionShape& shape, int64_t h) {
  return shape.planes_per_head ? h * shape.tables * shape.bits * shape.head_dim : 0;
}

std::vector<int64_t> documents(const RaceAttentionShape& shape, const RaceInputs& inputs, int64_t b) {
  const int64_t T = shape.seq_len;
  std::vector<int64_t> doc(static_cast<size_t>(T), 0);
  if (inputs.segment_ids.empty()) return doc;
  const int32_t* ids = inputs.segment_ids.data() + b * T;
  for (int64_t t = 1; t < T; ++t) doc[t] = doc[t - 1] + (ids[t] != ids[t - 1] ? 1 : 0);
  return doc;
}

bool visible(const RaceAttentionOptions& options, const std::vector<int64_t>& doc, int64_t t, int64_t j) {
  if (options.causal && j > t) return false;
  return doc[j] == doc[t];
}

std::vector<double> soft_hash(const double* x, const double* planes, int tables, int bits, int64_t dim,
                              double beta) {
  const int64_t R = int64_t{1} << bits;
  std::vector<double> phi(static_cast<size_t>(tables * R));
  std::vector<double> u(static_cast<size_t>(bits));
  for (int l = 0; l < tables; ++l) {
    for (int b = 0; b < bits; ++b) u[b] = std::tanh(dot(planes + (int64_t{l} * bits + b) * dim, x, dim));
    for (int64_t r = 0; r < R; ++r) {
      double p = 1.0;
      for (int b = 0; b < bits; ++b) p *= sigmoid(2.0 * beta * u[b] * corner(r, b, bits));
      phi[l * R + r] = p;
    }
  }
  return phi;
}

double soft_hash_backward(const double* x, const double* planes, int tables, int bits, int64_t dim, double beta,
                          const double* dphi, double* dx) {
  // phi_r = prod_b sigma(z_rb), z_rb = 2 beta u_b c_rb:
  //   dphi_r/du_b = phi_r (1 - sigma(z_rb)) 2 beta c_rb,  dphi_r/dbeta = phi_r sum_b (1 - sigma(z_rb)) 2 u_b c_rb,
  //   u_b = tanh(w_b . x): du_b/dx = (1 - u_b^2) w_b.   (1 - sigma(z) is computed as sigma(-z).)
  const int64_t R = int64_t{1} << bits;
  double dbeta = 0.0;
  std::vector<double> u(static_cast<size_t>(bits)), du(static_cast<size_t>(bits));
  for (int l = 0; l < tables; ++l) {
    const double* w = planes + int64_t{l} * bits * dim;
    for (int b = 0; b < bits; ++b) {
      u[b] = std::tanh(dot(w + b * dim, x, dim));
      du[b] = 0.0;
    }
    for (int64_t r = 0; r < R; ++r) {
      double phi = 1.0;
      for (int b = 0; b < bits; ++b) phi *= sigmoid(2.0 * beta * u[b] * corner(r, b, bits));
      const double g = dphi[l * R + r];
      for (int b = 0; b < bits; ++b) {
        const double c = corner(r, b, bits);
        const double one_minus_sigma = sigmoid(-2.0 * beta * u[b] * c);
        du[b] += g * phi * one_minus_sigma * 2.0 * beta * c;
        dbeta += g * phi * one_minus_sigma * 2.0 * u[b] * c;
      }
    }
    for (int b = 0; b < bits; ++b) {
      for (int64_t d = 0; d < dim; ++d) dx[d] += du[b] * (1.0 - u[b] * u[b]) * w[b * dim + d];
    }
  }
  return dbeta;
}

RaceInputs to_fp64(const RaceAttentionShape& shape, const kernels::RaceAttentionInputs& inputs) {
  const int64_t n = shape.batch * shape.heads * shape.seq_len * shape.head_dim;
  const int64_t rows = shape.batch * shape.seq_len;
  RaceInputs out;
  out.q = to_vector(inputs.q, n);
  out.k = to_vector(inputs.k, n);
  out.v = to_vector(inputs.v, n);
  out.planes = to_vector(inputs.planes, (shape.planes_per_head ? shape.heads : 1) * shape.tables * shape.bits *
                                            shape.head_dim);
  out.beta = to_vector(inputs.beta, shape.heads);
  if (inputs.key_mask != nullptr) out.key_mask.assign(inputs.key_mask, inputs.key_mask + rows);
  if (inputs.segment_ids != nullptr) out.segment_ids.assign(inputs.segment_ids, inputs.segment_ids + rows);
  return out;
}

std::vector<double> race_attention_forward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                           const RaceInputs& inputs) {
  check_problem(shape, inputs);
  const int64_t T = shape.seq_len, D = shape.head_dim;
  std::vector<double> out(static_cast<size_t>(shape.batch * shape.heads * T * D), 0.0);
  for (int64_t b = 0; b < shape.batch; ++b) {
    for (int64_t h = 0; h < shape.heads; ++h) {
      const Head head = make_head(shape, inputs, b, h);
      double* o = out.data() + (b * shape.heads + h) * T * D;
      for (int64_t t = 0; t < T; ++t) forward_query(options, head, t, o + t * D);
    }
  }
  return out;
}

std::vector<double> race_attention_forward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                           const kernels::RaceAttentionInputs& inputs) {
  return race_attention_forward(shape, options, to_fp64(shape, inputs));
}

std::vector<double> race_attention_forward_literal(const RaceAttentionShape& shape,
                                                   const RaceAttentionOptions& options, const RaceInputs& inputs) {
  check_problem(shape, inputs);
  const int64_t T = shape.seq_len, D = shape.head_dim, S = shape.buckets();
  const double eps = static_cast<double>(options.eps);
  std::vector<double> out(static_cast<size_t>(shape.batch * shape.heads * T * D), 0.0);
  for (int64_t b = 0; b < shape.batch; ++b) {
    for (int64_t h = 0; h < shape.heads; ++h) {
      const Head head = make_head(shape, inputs, b, h);
      double* o = out.data() + (b * shape.heads + h) * T * D;
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> A(static_cast<size_t>(S), 0.0), B(static_cast<size_t>(S * D), 0.0);
        for (int64_t j = 0; j < T; ++j) {
          if (!visible(options, head.doc, t, j)) continue;
          for (int64_t s = 0; s < S; ++s) {
            A[s] += head.pk(j)[s];
            for (int64_t d = 0; d < D; ++d) B[s * D + d] += head.pk(j)[s] * head.v[j * D + d];
          }
        }
        const double* pq = head.pq(t);
        if (options.estimator == RaceEstimator::bucket) {
          for (int64_t s = 0; s < S; ++s) {
            for (int64_t d = 0; d < D; ++d) o[t * D + d] += pq[s] * B[s * D + d] / (A[s] + eps);
          }
        } else {
          double den = eps;
          for (int64_t s = 0; s < S; ++s) den += pq[s] * A[s];
          for (int64_t d = 0; d < D; ++d) {
            double num = 0.0;
            for (int64_t s = 0; s < S; ++s) num += pq[s] * B[s * D + d];
            o[t * D + d] = num / den;
          }
        }
      }
    }
  }
  return out;
}

RaceGradients race_attention_backward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                      const RaceInputs& inputs, const std::vector<double>& dout) {
  check_problem(shape, inputs);
  const int64_t T = shape.seq_len, D = shape.head_dim, S = shape.buckets();
  const double eps = static_cast<double>(options.eps);
  const auto n = static_cast<size_t>(shape.batch * shape.heads * T * D);
  RACE_CHECK(dout.size() == n, "reference: dout size {}, expected {}", dout.size(), n);
  RaceGradients grads;
  grads.dq.assign(n, 0.0);
  grads.dk.assign(n, 0.0);
  grads.dv.assign(n, 0.0);
  grads.dbeta.assign(static_cast<size_t>(shape.heads), 0.0);

  for (int64_t b = 0; b < shape.batch; ++b) {
    for (int64_t h = 0; h < shape.heads; ++h) {
      const Head head = make_head(shape, inputs, b, h);
      const int64_t base = (b * shape.heads + h) * T * D;
      const double* g_all = dout.data() + base;
      double* dv = grads.dv.data() + base;
      std::vector<double> dphi_q(static_cast<size_t>(T * S), 0.0), dphi_k(static_cast<size_t>(T * S), 0.0);

      for (int64_t t = 0; t < T; ++t) {
        const double* g = g_all + t * D;
        const double* pq = head.pq(t);
        double* dpq = dphi_q.data() + t * S;
        const auto keys = visible_keys(options, head, t);
        const auto A = key_sums(head, keys);
        if (options.estimator == RaceEstimator::bucket) {
          // o_t = sum_j a_tj v_j, a_tj = sum_s pq[s] pk_j[s] / (A[s] + eps), A[s] = sum_j pk_j[s].
          // With gamma_j = g . v_j and G[s] = sum_j gamma_j pk_j[s] (= g . B_t[s,:]):
          //   dv_j += a_tj g;   dpk_j[s] += gamma_j pq[s] / (A[s] + eps)   (a_tj directly)
          //   dpq[s] += G[s] / (A[s] + eps);   dA[s] = -pq[s] G[s] / (A[s] + eps)^2, and dpk_j[s] += dA[s].
          std::vector<double> G(static_cast<size_t>(S), 0.0);
          for (int64_t j : keys) {
            const double* pk = head.pk(j);
            const double gamma = dot(g, head.v + j * D, D);
            double a = 0.0;
            for (int64_t s = 0; s < S; ++s) a += pq[s] * pk[s] / (A[s] + eps);
            for (int64_t d = 0; d < D; ++d) dv[j * D + d] += a * g[d];
            for (int64_t s = 0; s < S; ++s) {
              G[s] += gamma * pk[s];
              dphi_k[j * S + s] += gamma * pq[s] / (A[s] + eps);
            }
          }
          for (int64_t s = 0; s < S; ++s) {
            dpq[s] += G[s] / (A[s] + eps);
            const double dA = -pq[s] * G[s] / ((A[s] + eps) * (A[s] + eps));
            for (int64_t j : keys) dphi_k[j * S + s] += dA;
          }
        } else {
          // o_t = sum_j kappa_j v_j / den, kappa_j = pq . pk_j, den = pq . A + eps = sum_j kappa_j + eps.
          //   dkappa_j = (g . v_j - g . o_t) / den;  dv_j += kappa_j / den g;
          //   dpq += dkappa_j pk_j;  dpk_j += dkappa_j pq.
          const double den = dot(pq, A.data(), S) + eps;
          std::vector<double> o(static_cast<size_t>(D), 0.0);
          for (int64_t j : keys) {
            const double kappa = dot(pq, head.pk(j), S);
            for (int64_t d = 0; d < D; ++d) o[d] += kappa * head.v[j * D + d] / den;
          }
          const double g_dot_o = dot(g, o.data(), D);
          for (int64_t j : keys) {
            const double* pk = head.pk(j);
            const double kappa = dot(pq, pk, S);
            const double dkappa = (dot(g, head.v + j * D, D) - g_dot_o) / den;
            for (int64_t d = 0; d < D; ++d) dv[j * D + d] += kappa / den * g[d];
            for (int64_t s = 0; s < S; ++s) {
              dpq[s] += dkappa * pk[s];
              dphi_k[j * S + s] += dkappa * pq[s];
            }
          }
        }
      }

      grads.dbeta[static_cast<size_t>(h)] +=
          hash_backward(shape, head, dphi_q, dphi_k, grads.dq.data() + base, grads.dk.data() + base);
    }
  }
  return grads;
}

RaceGradients race_attention_backward(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                      const kernels::RaceAttentionInputs& inputs, const float* dout) {
  return race_attention_backward(shape, options, to_fp64(shape, inputs),
                                 to_vector(dout, shape.batch * shape.heads * shape.seq_len * shape.head_dim));
}

std::vector<double> race_attention_forward_scan(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                                const RaceInputs& inputs) {
  check_problem(shape, inputs);
  const int64_t T = shape.seq_len, D = shape.head_dim, S = shape.buckets();
  const double eps = static_cast<double>(options.eps);
  std::vector<double> out(static_cast<size_t>(shape.batch * shape.heads * T * D), 0.0);
  for (int64_t b = 0; b < shape.batch; ++b) {
    for (int64_t h = 0; h < shape.heads; ++h) {
      const Head head = make_head(shape, inputs, b, h);
      double* o = out.data() + (b * shape.heads + h) * T * D;
      for (auto [begin, end] : document_ranges(head)) {
        scan_document(options, head, begin, end,
                      [&](int64_t t, const std::vector<double>& A, const std::vector<double>& B) {
                        const double* pq = head.pq(t);
                        const double den = dot(pq, A.data(), S) + eps;  // ratio only
                        for (int64_t d = 0; d < D; ++d) {
                          double sum = 0.0;
                          for (int64_t s = 0; s < S; ++s) {
                            sum += options.estimator == RaceEstimator::bucket ? pq[s] * B[s * D + d] / (A[s] + eps)
                                                                              : pq[s] * B[s * D + d];
                          }
                          o[t * D + d] = options.estimator == RaceEstimator::bucket ? sum : sum / den;
                        }
                      });
      }
    }
  }
  return out;
}

RaceGradients race_attention_backward_scan(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                                           const RaceInputs& inputs, const std::vector<double>& dout) {
  check_problem(shape, inputs);
  const int64_t T = shape.seq_len, D = shape.head_dim, S = shape.buckets();
  const double eps = static_cast<double>(options.eps);
  const auto n = static_cast<size_t>(shape.batch * shape.heads * T * D);
  RACE_CHECK(dout.size() == n, "reference: dout size {}, expected {}", dout.size(), n);
  RaceGradients grads;
  grads.dq.assign(n, 0.0);
  grads.dk.assign(n, 0.0);
  grads.dv.assign(n, 0.0);
  grads.dbeta.assign(static_cast<size_t>(shape.heads), 0.0);

  for (int64_t b = 0; b < shape.batch; ++b) {
    for (int64_t h = 0; h < shape.heads; ++h) {
      const Head head = make_head(shape, inputs, b, h);
      const int64_t base = (b * shape.heads + h) * T * D;
      const double* g_all = dout.data() + base;
      double* dv = grads.dv.data() + base;
      std::vector<double> dphi_q(static_cast<size_t>(T * S), 0.0), dphi_k(static_cast<size_t>(T * S), 0.0);
      // Per query t, with G[s] = g_t . B_t[s,:]:
      //   bucket: dphi_q[s] = G[s] / (A_t[s] + eps), dA_t[s] = -phi_q[s] G[s] / (A_t[s] + eps)^2,
      //           dB_t[s,:] = w_t[s] g_t with w_t[s] = phi_q[s] / (A_t[s] + eps);
      //   ratio:  den = phi_q . A_t + eps, o_t = sum_s phi_q[s] B_t[s,:] / den:
      //           dphi_q[s] = (G[s] - (g_t . o_t) A_t[s]) / den, dA_t[s] = -(g_t . o_t) phi_q[s] / den,
      //           dB_t[s,:] = w_t[s] g_t with w_t[s] = phi_q[s] / den.
      // Key j gets the sums of dA_t and dB_t over the queries t that see it (causal: t >= j in its document):
      //   dphi_k[j,s] = sum dA_t[s] + (sum dB_t[s,:]) . v_j,   dv_j = sum_s phi_k[j,s] (sum dB_t[s,:]).
      std::vector<double> dA(static_cast<size_t>(T * S), 0.0), w(static_cast<size_t>(T * S), 0.0);
      for (auto [begin, end] : document_ranges(head)) {
        scan_document(options, head, begin, end,
                      [&](int64_t t, const std::vector<double>& A, const std::vector<double>& B) {
                        const double* g = g_all + t * D;
                        const double* pq = head.pq(t);
                        std::vector<double> G(static_cast<size_t>(S));
                        for (int64_t s = 0; s < S; ++s) G[s] = dot(g, B.data() + s * D, D);
                        if (options.estimator == RaceEstimator::bucket) {
                          for (int64_t s = 0; s < S; ++s) {
                            const double inv = 1.0 / (A[s] + eps);
                            dphi_q[t * S + s] = G[s] * inv;
                            dA[t * S + s] = -pq[s] * G[s] * inv * inv;
                            w[t * S + s] = pq[s] * inv;
                          }
                        } else {
                          const double den = dot(pq, A.data(), S) + eps;
                          double g_dot_o = 0.0;
                          for (int64_t s = 0; s < S; ++s) g_dot_o += pq[s] * G[s] / den;
                          for (int64_t s = 0; s < S; ++s) {
                            dphi_q[t * S + s] = (G[s] - g_dot_o * A[s]) / den;
                            dA[t * S + s] = -g_dot_o * pq[s] / den;
                            w[t * S + s] = pq[s] / den;
                          }
                        }
                      });
        std::vector<double> sum_dA(static_cast<size_t>(S), 0.0), sum_dB(static_cast<size_t>(S * D), 0.0);
        auto add_query = [&](int64_t t) {
          for (int64_t s = 0; s < S; ++s) {
            sum_dA[s] += dA[t * S + s];
            for (int64_t d = 0; d < D; ++d) sum_dB[s * D + d] += w[t * S + s] * g_all[t * D + d];
          }
        };
        if (!options.causal) {
          for (int64_t t = begin; t < end; ++t) add_query(t);
        }
        for (int64_t j = end - 1; j >= begin; --j) {
          if (options.causal) add_query(j);
          for (int64_t s = 0; s < S; ++s) {
            dphi_k[j * S + s] = sum_dA[s] + dot(sum_dB.data() + s * D, head.v + j * D, D);
            for (int64_t d = 0; d < D; ++d) dv[j * D + d] += head.pk(j)[s] * sum_dB[s * D + d];
          }
        }
      }
      grads.dbeta[static_cast<size_t>(h)] +=
          hash_backward(shape, head, dphi_q, dphi_k, grads.dq.data() + base, grads.dk.data() + base);
    }
  }
  return grads;
}

double race_attention_loss(const RaceAttentionShape& shape, const RaceAttentionOptions& options,
                           const RaceInputs& inputs, const std::vector<double>& dout) {
  const auto out = race_attention_forward(shape, options, inputs);
  RACE_CHECK(dout.size() == out.size(), "reference: dout size {}, expected {}", dout.size(), out.size());
  return dot(out.data(), dout.data(), static_cast<int64_t>(out.size()));
}

}  // namespace race::reference
