// The optimizer on the CPU: AdamW on a flat fp32 parameter buffer, and the global gradient norm and
// clipping scale that come before it. AdamW as torch.optim.AdamW (decoupled weight decay, bias correction):
//   g = grad_scale * grad
//   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
//   p = p (1 - lr weight_decay) - (lr / (1 - beta1^step)) m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// Which tensors decay is the caller's business: call once per range of the buffer with its own
// weight_decay (0 for norms, biases and embeddings).
#pragma once

#include <cstdint>

namespace race::kernels::cpu {

struct AdamWOptions {
  float lr = 0.f;
  float beta1 = 0.f;
  float beta2 = 0.f;
  float eps = 0.f;
  float weight_decay = 0.f;
  int64_t step = 0;        // 1 for the first update: the bias corrections use beta^step
  float grad_scale = 1.f;  // applied to grads on the fly: the clipping scale, with no extra pass over them
};

// params, m, v (n) updated in place; grads (n) read. m and v start as zeros. Elementwise, so bit-identical
// for any thread count. Throws race::Error for lr < 0, betas outside [0, 1), eps <= 0, weight_decay < 0,
// step < 1 or a non-finite grad_scale, naming the value.
void adamw_step(float* params, const float* grads, float* m, float* v, int64_t n,
                const AdamWOptions& options);

// sqrt(sum_i grads[i]^2) over the flat buffer (n): fp64 partial sums over fixed blocks of the buffer added
// in block order, so the result is bit-identical for any thread count. NaN or inf in grads shows in it.
double grad_norm(const float* grads, int64_t n);

// The factor that brings a gradient of norm `norm` to at most max_norm (torch.nn.utils.clip_grad_norm_):
// min(1, max_norm / (norm + 1e-6)). max_norm <= 0 turns clipping off (1). A non-finite norm gives NaN, so a
// NaN or inf gradient cannot pass silently as a zero update: the caller checks the norm first.
float clip_scale(double norm, double max_norm);

}  // namespace race::kernels::cpu
