// Softmax cross-entropy on the CPU: OpenMP over rows; per row a max pass, an exp pass (into dlogits, or into
// a per-thread row buffer when only the loss is wanted), an fp64 sum, and a scaling pass.
#include "kernels/cpu/cross_entropy_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/row_products.h"
#include "kernels/cpu/vector_math.h"

namespace race::kernels::cpu {
namespace {

float row_max(const float* x, int64_t n) {
  vec16 m = vec16{} - std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const vec16 v = load_vec<vec16>(x + i);
    m = v > m ? v : m;
  }
  float result = -std::numeric_limits<float>::infinity();
  for (int k = 0; k < 16; ++k) result = std::max(result, m[k]);
  for (; i < n; ++i) result = std::max(result, x[i]);
  return result;
}

// e (n) = exp(x - shift); e may be x.
void exp_shifted(float* e, const float* x, float shift, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store_vec<vec16>(e + i, exp16(load_vec<vec16>(x + i) - shift));
  if (i < n) store_partial(e + i, exp16(load_partial(x + i, n - i) - shift), n - i);
}

}  // namespace

int64_t count_targets(const int32_t* targets, int64_t rows) {
  if (rows < 0) fail("count_targets: rows = {} must be >= 0", rows);
  if (rows > 0 && targets == nullptr) fail("count_targets: targets is null");
  int64_t count = 0;
  for (int64_t n = 0; n < rows; ++n) count += targets[n] != kIgnoreTarget ? 1 : 0;
  return count;
}

CrossEntropyStats softmax_cross_entropy(float* dlogits, float* losses, const float* logits,
                                        const int32_t* targets, int64_t rows, int64_t vocab,
                                        float grad_scale) {
  if (rows < 0) fail("softmax_cross_entropy: rows = {} must be >= 0", rows);
  if (vocab < 1 || vocab > int64_t{1} << 31)
    fail("softmax_cross_entropy: vocab = {} must be in [1, 2^31]", vocab);
  CrossEntropyStats stats;
  if (rows == 0) return stats;
  if (logits == nullptr) fail("softmax_cross_entropy: logits is null");
  if (targets == nullptr) fail("softmax_cross_entropy: targets is null");
  for (int64_t n = 0; n < rows; ++n)
    if (targets[n] != kIgnoreTarget && (targets[n] < 0 || targets[n] >= vocab))
      fail("softmax_cross_entropy: target {} at row {} is outside [0, {}) and is not the ignore index {}",
           targets[n], n, vocab, kIgnoreTarget);

  // Allocated here, not in the parallel region, which an exception (bad_alloc) must never leave.
  std::vector<double> row_loss(static_cast<size_t>(rows));  // (N) summed in row order afterwards
  // (threads, V) exp of the current row, when there is no dlogits to hold it
  std::vector<float> scratch(dlogits == nullptr ? static_cast<size_t>(omp_get_max_threads() * vocab) : 0);
#pragma omp parallel
  {
    float* own = dlogits == nullptr ? scratch.data() + omp_get_thread_num() * vocab : nullptr;  // (V)
#pragma omp for schedule(static)
    for (int64_t n = 0; n < rows; ++n) {
      const float* l = logits + n * vocab;                            // (V)
      float* d = dlogits != nullptr ? dlogits + n * vocab : nullptr;  // (V)
      const int32_t target = targets[n];
      if (target == kIgnoreTarget) {
        row_loss[n] = 0.0;
        if (d != nullptr) std::fill(d, d + vocab, 0.f);
        continue;
      }
      const float target_logit = l[target];  // read before d, which may be l, is overwritten
      const float max = row_max(l, vocab);
      float* e = d != nullptr ? d : own;
      exp_shifted(e, l, max, vocab);
      double sum = 0.0;
#pragma omp simd reduction(+ : sum)
      for (int64_t v = 0; v < vocab; ++v) sum += static_cast<double>(e[v]);
      row_loss[n] = std::log(sum) + static_cast<double>(max) - static_cast<double>(target_logit);
      if (d != nullptr) {
        const float scale = static_cast<float>(static_cast<double>(grad_scale) / sum);
        for (int64_t v = 0; v < vocab; ++v) d[v] *= scale;
        d[target] -= grad_scale;
      }
    }
  }
  for (int64_t n = 0; n < rows; ++n) {
    if (losses != nullptr) losses[n] = static_cast<float>(row_loss[n]);
    if (targets[n] != kIgnoreTarget) {
      stats.loss_sum += row_loss[n];
      ++stats.count;
    }
  }
  return stats;
}

}  // namespace race::kernels::cpu
