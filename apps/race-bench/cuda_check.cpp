// race-bench check on the GPU: copies a check's fp32 tensors to the device, runs the CUDA RACE kernels,
// copies the results back.
#include "cuda_check.h"

#include <memory>
#include <stdexcept>

#include "kernels/cuda/device_info.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/device_timer.h"
#include "kernels/cuda/race_attention_cuda.h"

namespace race::bench {

namespace cuda = race::kernels::cuda;

namespace {

// A device copy of `count` host elements (none when host is null).
template <class T>
std::unique_ptr<cuda::DeviceBuffer> to_device(const T* host, std::int64_t count) {
  if (host == nullptr) return nullptr;
  auto buffer = std::make_unique<cuda::DeviceBuffer>(count * std::int64_t{sizeof(T)});
  buffer->upload(host, buffer->bytes());
  return buffer;
}

void* data_of(const std::unique_ptr<cuda::DeviceBuffer>& b) { return b ? b->data() : nullptr; }

}  // namespace

CudaCheckTimes race_check_cuda(const kernels::RaceAttentionShape& shape, const kernels::RaceAttentionOptions& options,
                               const kernels::RaceAttentionInputs& in, const float* dout, float* out,
                               const kernels::RaceAttentionGradients& grads) {
  const auto query = cuda::query_devices();
  if (query.devices.empty()) throw std::runtime_error("race-bench check: no CUDA device: " + query.unavailable_reason);
  const std::int64_t n = shape.batch * shape.heads * shape.seq_len * shape.head_dim;
  const std::int64_t bt = shape.batch * shape.seq_len;
  const std::int64_t planes = (shape.planes_per_head ? shape.heads : 1) * shape.tables * shape.bits * shape.head_dim;
  const auto q = to_device(in.q, n), k = to_device(in.k, n), v = to_device(in.v, n);
  const auto planes_d = to_device(in.planes, planes), beta = to_device(in.beta, shape.heads);
  const auto mask = to_device(in.key_mask, bt);
  const auto segments = to_device(in.segment_ids, bt);
  cuda::RaceCudaInputs inputs;
  inputs.q = q->data();
  inputs.k = k->data();
  inputs.v = v->data();
  inputs.planes = static_cast<const float*>(planes_d->data());
  inputs.beta = static_cast<const float*>(beta->data());
  inputs.key_mask = static_cast<const uint8_t*>(data_of(mask));
  inputs.segment_ids = static_cast<const int32_t*>(data_of(segments));

  CudaCheckTimes times;
  cuda::DeviceTimer timer;
  cuda::DeviceBuffer out_d(n * 4);
  timer.start();
  cuda::race_attention_forward(shape, options, inputs, out_d.data());
  times.forward_seconds = timer.stop();
  out_d.download(out, n * 4);
  if (dout == nullptr) return times;

  const auto dout_d = to_device(dout, n);
  cuda::DeviceBuffer dq(n * 4), dk(n * 4), dv(n * 4), dbeta(shape.heads * 4);
  timer.start();
  cuda::race_attention_backward(shape, options, inputs, dout_d->data(),
                                {dq.data(), dk.data(), dv.data(), static_cast<float*>(dbeta.data())});
  times.backward_seconds = timer.stop();
  dq.download(grads.dq, n * 4);
  dk.download(grads.dk, n * 4);
  dv.download(grads.dv, n * 4);
  if (grads.dbeta != nullptr) dbeta.download(grads.dbeta, shape.heads * 4);
  return times;
}

}  // namespace race::bench
