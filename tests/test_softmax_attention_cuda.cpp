// The CUDA flash softmax attention (kernels/cuda/softmax_attention_cuda.h) on a GPU against the fp64
// reference: relative RMS error at most 1e-4 with fp32 tensors and 2e-2 with bf16 tensors (the reference
// then gets the bf16-rounded inputs) on out, lse, dq, dk and dv; causal and bidirectional, full and windowed,
// key mask and segment ids, T never a multiple of the tile (32); NaN-prefilled outputs; bit-identical reruns.
// Skips without a CUDA device; the argument checks run wherever the CUDA toolkit was found.
#include <gtest/gtest.h>

#ifdef RACE_HAVE_CUDA

#include <cmath>
#include <memory>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/device_info.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/softmax_attention_cuda.h"
#include "reference/softmax_reference.h"
#include "cuda_buffers.h"
#include "test_support.h"

namespace {

namespace kc = race::kernels::cuda;
using kc::DeviceBuffer;
using kc::DType;
using race::test::download;
using race::test::upload;

struct Case {
  int64_t B = 1, H = 1, T = 100, D = 64;
  bool causal = true;
  int64_t window = 0;
  bool mask = false;
  bool segments = false;
  DType dtype = DType::f32;

  std::string name() const {
    std::string n = "T";
    n += std::to_string(T);
    n += "_D";
    n += std::to_string(D);
    n += causal ? "_causal" : "_bidir";
    if (window > 0) {
      n += "_window";
      n += std::to_string(window);
    }
    if (mask) n += "_mask";
    if (segments) n += "_seg";
    n += dtype == DType::bf16 ? "_bf16" : "_fp32";
    return n;
  }
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name(); }

struct Result {
  std::vector<float> out, lse, dq, dk, dv;
};

struct Data {
  race::kernels::SoftmaxAttentionShape shape;
  race::kernels::SoftmaxAttentionOptions options;
  std::vector<float> q, k, v, dout;
  std::vector<uint8_t> mask;
  std::vector<int32_t> segments;
};

Data make_data(const Case& c) {
  std::mt19937_64 rng(0x50F7 + static_cast<uint64_t>(c.T * 13 + c.D));
  Data d;
  d.shape = {c.B, c.H, c.T, c.D};
  d.options.causal = c.causal;
  d.options.window = c.window;
  const int64_t n = c.B * c.H * c.T * c.D;
  for (auto* x : {&d.q, &d.k, &d.v, &d.dout}) {
    *x = race::test::normal(rng, n);
    if (c.dtype == DType::bf16) *x = kc::from_bf16(kc::to_bf16(*x));
  }
  if (c.mask)
    for (int64_t i = 0; i < c.B * c.T; ++i) d.mask.push_back(rng() % 10 < 3 ? 0 : 1);
  if (c.segments)
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t t = 0; t < c.T; ++t) d.segments.push_back(static_cast<int32_t>(t * 5 / c.T) % 2);
  return d;
}

Result run_on_device(const Data& d, DType dtype) {
  const int64_t n = static_cast<int64_t>(d.q.size()), rows_t = d.shape.batch * d.shape.heads * d.shape.seq_len;
  const int64_t esize = dtype == DType::bf16 ? 2 : 4;
  auto q = upload(d.q, dtype), k = upload(d.k, dtype), v = upload(d.v, dtype), dout = upload(d.dout, dtype);
  DeviceBuffer mask(static_cast<int64_t>(d.mask.size())), segments(static_cast<int64_t>(d.segments.size() * 4));
  if (!d.mask.empty()) mask.upload(d.mask.data(), mask.bytes());
  if (!d.segments.empty()) segments.upload(d.segments.data(), segments.bytes());
  DeviceBuffer out(n * esize), lse(rows_t * 4), dq(n * esize), dk(n * esize), dv(n * esize);
  for (DeviceBuffer* b : {&out, &lse, &dq, &dk, &dv}) b->fill_nan();
  kc::SoftmaxCudaInputs in;
  in.dtype = dtype;
  in.q = q->data();
  in.k = k->data();
  in.v = v->data();
  in.key_mask = d.mask.empty() ? nullptr : static_cast<const uint8_t*>(mask.data());
  in.segment_ids = d.segments.empty() ? nullptr : static_cast<const int32_t*>(segments.data());
  kc::softmax_attention_forward(d.shape, d.options, in, out.data(), static_cast<float*>(lse.data()));
  kc::softmax_attention_backward(d.shape, d.options, in, out.data(), static_cast<const float*>(lse.data()),
                                 dout->data(), {dq.data(), dk.data(), dv.data()});
  kc::synchronize_device();
  return {download(out, n, dtype), download(lse, rows_t, DType::f32), download(dq, n, dtype), download(dk, n, dtype),
          download(dv, n, dtype)};
}

class SoftmaxAttentionCuda : public ::testing::TestWithParam<Case> {};

TEST_P(SoftmaxAttentionCuda, MatchesTheFp64Reference) {
  std::string why;
  if (!race::test::have_cuda_device(&why)) GTEST_SKIP() << "no GPU: " << why;
  const Case& c = GetParam();
  const Data d = make_data(c);
  const Result got = run_on_device(d, c.dtype);
  const race::kernels::SoftmaxAttentionInputs inputs{d.q.data(), d.k.data(), d.v.data(),
                                                     d.mask.empty() ? nullptr : d.mask.data(),
                                                     d.segments.empty() ? nullptr : d.segments.data()};
  const auto in64 = race::reference::to_fp64(d.shape, inputs);
  const auto ref = race::reference::softmax_attention_forward(d.shape, d.options, in64);
  const auto grads = race::reference::softmax_attention_backward(d.shape, d.options, in64, race::test::widen(d.dout));
  std::vector<float> lse;
  std::vector<double> ref_lse;
  for (size_t i = 0; i < got.lse.size(); ++i) {
    if (std::isinf(ref.lse[i])) {
      EXPECT_TRUE(std::isinf(got.lse[i]) && got.lse[i] < 0) << "query " << i << " sees no key";
    } else {
      lse.push_back(got.lse[i]);
      ref_lse.push_back(ref.lse[i]);
    }
  }
  const double tolerance = c.dtype == DType::bf16 ? 2e-2 : 1e-4;
  const double errors[] = {race::test::relative_rms(got.out, ref.out), race::test::relative_rms(lse, ref_lse),
                           race::test::relative_rms(got.dq, grads.dq), race::test::relative_rms(got.dk, grads.dk),
                           race::test::relative_rms(got.dv, grads.dv)};
  std::printf("[ cmp ] %-40s out %.1e lse %.1e dq %.1e dk %.1e dv %.1e\n", c.name().c_str(), errors[0], errors[1],
              errors[2], errors[3], errors[4]);
  for (double e : errors) EXPECT_LE(e, tolerance);
}

std::vector<Case> cases() {
  std::vector<Case> cs;
  for (DType dtype : {DType::f32, DType::bf16})
    for (bool causal : {true, false}) {
      cs.push_back({.T = 1, .causal = causal, .dtype = dtype});
      cs.push_back({.T = 333, .causal = causal, .dtype = dtype});
      cs.push_back({.T = 333, .causal = causal, .window = 70, .dtype = dtype});
      cs.push_back({.B = 2, .H = 2, .T = 201, .D = 128, .causal = causal, .mask = true, .segments = true,
                    .dtype = dtype});
      cs.push_back({.T = 2049, .D = 128, .causal = causal, .window = 500, .dtype = dtype});
    }
  return cs;
}

INSTANTIATE_TEST_SUITE_P(Cases, SoftmaxAttentionCuda, ::testing::ValuesIn(cases()),
                         [](const auto& param_info) { return param_info.param.name(); });

TEST(SoftmaxAttentionCudaRuns, AreBitIdentical) {
  std::string why;
  if (!race::test::have_cuda_device(&why)) GTEST_SKIP() << "no GPU: " << why;
  const Data d = make_data({.B = 2, .H = 2, .T = 1000, .D = 64, .mask = true, .segments = true});
  const Result a = run_on_device(d, DType::f32), b = run_on_device(d, DType::f32);
  EXPECT_TRUE(race::test::bit_equal(a.out, b.out));
  EXPECT_TRUE(race::test::bit_equal(a.dq, b.dq));
  EXPECT_TRUE(race::test::bit_equal(a.dk, b.dk));
  EXPECT_TRUE(race::test::bit_equal(a.dv, b.dv));
}

TEST(SoftmaxAttentionCudaArguments, AreCheckedBeforeAnyDeviceWork) {
  race::kernels::SoftmaxAttentionShape shape{1, 1, 0, 64};
  kc::SoftmaxCudaInputs in;
  EXPECT_THROW(kc::softmax_attention_forward(shape, {}, in, nullptr, nullptr), std::invalid_argument);
  shape.seq_len = 8;
  race::kernels::SoftmaxAttentionOptions options;
  options.window = -1;
  EXPECT_THROW(kc::softmax_attention_forward(shape, options, in, nullptr, nullptr), std::invalid_argument);
  EXPECT_THROW(kc::softmax_attention_forward(shape, {}, in, nullptr, nullptr), std::invalid_argument);  // no q
}

}  // namespace

#else

TEST(SoftmaxAttentionCuda, NeedsTheCudaToolkit) { GTEST_SKIP() << "built without the CUDA toolkit"; }

#endif
