// Timing of one RACE layer on the GPU for race-bench attention --device cuda.
#include "cuda_layer_bench.h"

#include <new>
#include <stdexcept>
#include <vector>

#include "kernels/cuda/device_info.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/device_timer.h"
#include "kernels/cuda/race_attention_cuda.h"
#include "kernels/cuda/softmax_attention_cuda.h"

namespace race::bench {

namespace cuda = race::kernels::cuda;

std::string cuda_unavailable_reason() {
  const auto query = cuda::query_devices();
  return query.devices.empty() ? query.unavailable_reason : std::string();
}

std::int64_t cuda_device_memory_bytes() {
  const auto query = cuda::query_devices();
  return query.devices.empty() ? 0 : query.devices.front().memory_bytes;
}

namespace {

// Times `forward` alone and `forward` then `backward`, config.repeats times each, after one untimed warm-up.
// `fill` draws the inputs before each pass, untimed: an in-place backward has written over them.
template <typename Fill, typename Forward, typename Backward>
void time_passes(int repeats, LayerTiming& timing, Fill&& fill, Forward&& forward, Backward&& backward) {
  fill();
  forward();
  backward();
  cuda::synchronize_device();
  cuda::DeviceTimer timer;
  for (int r = 0; r < repeats; ++r) {
    fill();
    timer.start();
    forward();
    timing.forward_seconds.push_back(timer.stop());
    timer.start();
    forward();
    backward();
    timing.forward_backward_seconds.push_back(timer.stop());
  }
  cuda::synchronize_device();
}

}  // namespace

LayerTiming time_layer_cuda(const LayerConfig& c, std::int64_t seq_len) {
  const auto query = cuda::query_devices();
  if (query.devices.empty()) throw std::runtime_error("race-bench: no CUDA device: " + query.unavailable_reason);
  const bool bf16 = c.dtype == "bf16";
  const cuda::DType dtype = bf16 ? cuda::DType::bf16 : cuda::DType::f32;
  const std::int64_t n = c.batch * c.heads * seq_len * c.head_dim, bytes = n * c.element_bytes();
  const std::int64_t queries = c.batch * c.heads * seq_len;
  LayerTiming timing;
  timing.memory_bandwidth_gbs = query.devices.front().memory_bandwidth_gbs;
  try {
    // In place: the gradients go over q, k, v and dout is the forward's out (4 tensors, not 8).
    const std::int64_t own = c.in_place ? 0 : bytes;
    cuda::DeviceBuffer q(bytes), k(bytes), v(bytes), out(bytes), own_dout(own), own_dq(own), own_dk(own),
        own_dv(own);
    void* dout = c.in_place ? out.data() : own_dout.data();
    void* dq = c.in_place ? q.data() : own_dq.data();
    void* dk = c.in_place ? k.data() : own_dk.data();
    void* dv = c.in_place ? v.data() : own_dv.data();
    const auto fill = [&] {
      cuda::fill_normal(q, n, bf16, c.seed * 8 + 0, 0.5f);
      cuda::fill_normal(k, n, bf16, c.seed * 8 + 1, 0.5f);
      cuda::fill_normal(v, n, bf16, c.seed * 8 + 2, 1.f);
      if (!c.in_place) cuda::fill_normal(own_dout, n, bf16, c.seed * 8 + 3, 1.f);
    };
    if (!c.is_race()) {
      const kernels::SoftmaxAttentionShape shape{c.batch, c.heads, seq_len, c.head_dim};
      kernels::SoftmaxAttentionOptions options;
      options.causal = c.causal;
      options.window = c.window;
      cuda::SoftmaxCudaInputs inputs;
      inputs.dtype = dtype;
      inputs.q = q.data();
      inputs.k = k.data();
      inputs.v = v.data();
      cuda::DeviceBuffer lse(queries * 4);
      // lse, and the backward's dout . out per query
      timing.device_bytes = 8 * bytes + 2 * queries * 4;
      time_passes(
          c.repeats, timing, fill,
          [&] { cuda::softmax_attention_forward(shape, options, inputs, out.data(), static_cast<float*>(lse.data())); },
          [&] {
            cuda::softmax_attention_backward(shape, options, inputs, out.data(), static_cast<const float*>(lse.data()),
                                             dout, {dq, dk, dv});
          });
      return timing;
    }
    const kernels::RaceAttentionShape shape = race_shape(c, seq_len);
    const kernels::RaceAttentionOptions options = race_options(c);
    timing.device_bytes = (c.in_place ? 4 : 8) * bytes + cuda::race_attention_scratch_bytes(shape, true);
    const std::int64_t plane_count = std::int64_t{c.tables} * c.bits * c.head_dim;
    cuda::DeviceBuffer planes(plane_count * 4), beta(c.heads * 4);
    cuda::fill_normal(planes, plane_count, false, c.seed * 8 + 4, 1.f);
    const std::vector<float> betas(static_cast<std::size_t>(c.heads), static_cast<float>(c.beta));
    beta.upload(betas.data(), beta.bytes());
    cuda::RaceCudaInputs inputs;
    inputs.dtype = dtype;
    inputs.q = q.data();
    inputs.k = k.data();
    inputs.v = v.data();
    inputs.planes = static_cast<const float*>(planes.data());
    inputs.beta = static_cast<const float*>(beta.data());
    const cuda::RaceCudaGradients grads{dq, dk, dv, nullptr};
    time_passes(
        c.repeats, timing, fill, [&] { cuda::race_attention_forward(shape, options, inputs, out.data()); },
        [&] { cuda::race_attention_backward(shape, options, inputs, dout, grads); });
  } catch (const std::runtime_error& e) {
    // Device memory running out ends a sweep the way host memory does.
    if (std::string(e.what()).find("cudaErrorMemoryAllocation") != std::string::npos) throw std::bad_alloc();
    throw;
  }
  return timing;
}

}  // namespace race::bench
