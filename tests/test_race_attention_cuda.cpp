// The CUDA RACE attention kernels (kernels/cuda/race_attention_cuda.h) on a GPU against the fp64 reference:
// relative RMS error at most 1e-4 with fp32 tensors and 2e-2 with bf16 tensors (the reference then gets the
// bf16-rounded inputs) on out, dq, dk, dv and dbeta, over the cases of race_cuda_cases.h (every feature, T
// never a multiple of the chunk) plus a long row whose spans hold several chunks; outputs are prefilled with
// NaN so an element never written shows; two runs are bit-identical. Skips without a CUDA device; the
// bf16 conversion and the argument checks run everywhere the CUDA toolkit was found.
#include <gtest/gtest.h>

#ifdef RACE_HAVE_CUDA

#include <cmath>
#include <limits>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/device_info.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/race_attention_cuda.h"
#include "cuda_buffers.h"
#include "race_cuda_cases.h"
#include "test_support.h"

namespace {

namespace kc = race::kernels::cuda;
using kc::DeviceBuffer;
using kc::DType;
using race::test::download;
using race::test::upload;
using race::test::upload_raw;

// The case's tensors rounded to bf16 (what the kernel then sees), for the reference.
race::test::RaceCaseData rounded_to_bf16(race::test::RaceCaseData d) {
  for (auto* x : {&d.q, &d.k, &d.v, &d.dout}) *x = kc::from_bf16(kc::to_bf16(*x));
  return d;
}

// in_place: the backward writes dq, dk, dv over q, k, v (race_attention_cuda.h allows it).
race::test::RaceResult run_on_device(const race::test::RaceCaseData& d, DType dtype, bool in_place = false) {
  const int64_t n = d.size(), esize = dtype == DType::bf16 ? 2 : 4;
  auto q = upload(d.q, dtype), k = upload(d.k, dtype), v = upload(d.v, dtype), dout = upload(d.dout, dtype);
  auto planes = upload_raw(d.planes), beta = upload_raw(d.beta);
  auto mask = upload_raw(d.key_mask);
  auto segments = upload_raw(d.segment_ids);
  DeviceBuffer out(n * esize), dq(n * esize), dk(n * esize), dv(n * esize), dbeta(d.shape.heads * 4);
  for (DeviceBuffer* b : {&out, &dq, &dk, &dv, &dbeta}) b->fill_nan();
  kc::RaceCudaInputs in;
  in.dtype = dtype;
  in.q = q->data();
  in.k = k->data();
  in.v = v->data();
  in.planes = static_cast<const float*>(planes->data());
  in.beta = static_cast<const float*>(beta->data());
  in.key_mask = d.key_mask.empty() ? nullptr : static_cast<const uint8_t*>(mask->data());
  in.segment_ids = d.segment_ids.empty() ? nullptr : static_cast<const int32_t*>(segments->data());
  kc::race_attention_forward(d.shape, d.options, in, out.data());
  const kc::RaceCudaGradients grads{in_place ? q->data() : dq.data(), in_place ? k->data() : dk.data(),
                                    in_place ? v->data() : dv.data(), static_cast<float*>(dbeta.data())};
  kc::race_attention_backward(d.shape, d.options, in, dout->data(), grads);
  kc::synchronize_device();
  return {download(out, n, dtype), download(in_place ? *q : dq, n, dtype), download(in_place ? *k : dk, n, dtype),
          download(in_place ? *v : dv, n, dtype), download(dbeta, d.shape.heads, DType::f32)};
}

std::vector<race::test::RaceCase> device_cases() {
  auto cases = race::test::race_cuda_cases();
  // 70001 tokens in one row: 2188 chunks over 1024 spans, so spans of 3 chunks carry state inside a span.
  cases.push_back({.T = 70001, .D = 64, .causal = true, .segments = true});
  cases.push_back({.T = 70001, .D = 64, .causal = false, .mask = true});
  return cases;
}

struct DeviceCase {
  race::test::RaceCase c;
  DType dtype;
};

void PrintTo(const DeviceCase& d, std::ostream* os) { *os << d.c.name() << (d.dtype == DType::bf16 ? "_bf16" : "_fp32"); }

std::vector<DeviceCase> all_device_cases() {
  std::vector<DeviceCase> out;
  for (DType dtype : {DType::f32, DType::bf16})
    for (const auto& c : device_cases()) out.push_back({c, dtype});
  return out;
}

class RaceAttentionCuda : public ::testing::TestWithParam<DeviceCase> {};

TEST_P(RaceAttentionCuda, MatchesTheFp64Reference) {
  std::string why;
  if (!race::test::have_cuda_device(&why)) GTEST_SKIP() << "no GPU: " << why;
  const auto& [c, dtype] = GetParam();
  const auto drawn = race::test::make_race_case(c, 0xD15C + static_cast<uint64_t>(c.T * 31 + c.D));
  const auto d = dtype == DType::bf16 ? rounded_to_bf16(drawn) : drawn;
  const auto got = run_on_device(d, dtype);
  std::string label = c.name();
  label += dtype == DType::bf16 ? "_bf16" : "_fp32";
  race::test::expect_matches_reference(label, d, got, race::test::race_reference(d),
                                       dtype == DType::bf16 ? 2e-2 : 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Cases, RaceAttentionCuda, ::testing::ValuesIn(all_device_cases()),
                         [](const auto& param_info) {
                           std::string n = param_info.param.c.name();
                           n += param_info.param.dtype == DType::bf16 ? "_bf16" : "_fp32";
                           return n;
                         });

TEST(RaceAttentionCudaRuns, AreBitIdentical) {
  std::string why;
  if (!race::test::have_cuda_device(&why)) GTEST_SKIP() << "no GPU: " << why;
  const race::test::RaceCase c{.B = 2, .H = 2, .T = 3001, .D = 32, .mask = true, .segments = true, .learned = true};
  const auto d = race::test::make_race_case(c, 77);
  const auto a = run_on_device(d, DType::f32), b = run_on_device(d, DType::f32);
  for (auto [x, y] : {std::pair{&a.out, &b.out}, {&a.dq, &b.dq}, {&a.dk, &b.dk}, {&a.dv, &b.dv}, {&a.dbeta, &b.dbeta}})
    EXPECT_TRUE(race::test::bit_equal(*x, *y));
}

// Gradients over the inputs give the same bits as into separate buffers, in both directions and dtypes.
TEST(RaceAttentionCudaInPlace, GivesTheSameBitsAsSeparateGradients) {
  std::string why;
  if (!race::test::have_cuda_device(&why)) GTEST_SKIP() << "no GPU: " << why;
  for (const bool causal : {true, false})
    for (const DType dtype : {DType::f32, DType::bf16}) {
      const race::test::RaceCase c{.B = 2, .H = 2, .T = 3001, .D = 32, .causal = causal, .mask = true,
                                   .segments = true};
      const auto d = rounded_to_bf16(race::test::make_race_case(c, 78));
      const auto separate = run_on_device(d, dtype), in_place = run_on_device(d, dtype, true);
      for (auto [x, y] : {std::pair{&separate.dq, &in_place.dq}, {&separate.dk, &in_place.dk},
                          {&separate.dv, &in_place.dv}, {&separate.dbeta, &in_place.dbeta}})
        EXPECT_TRUE(race::test::bit_equal(*x, *y)) << c.name() << (dtype == DType::bf16 ? " bf16" : " fp32");
    }
}

TEST(RaceAttentionCudaArguments, AreValidatedBeforeAnyDeviceWork) {
  race::kernels::RaceAttentionShape shape;
  shape.seq_len = 0;
  kc::RaceCudaInputs in;
  // The shape is checked first (race::Error from kernels::validate), then the pointers: no GPU needed.
  race::test::expect_error([&] { kc::race_attention_forward(shape, {}, in, nullptr); }, "seq_len");
  shape.seq_len = 10;
  EXPECT_THROW(kc::race_attention_forward(shape, {}, in, reinterpret_cast<void*>(16)), std::invalid_argument);
}

TEST(RaceAttentionCudaSharedMemory, FitsAnA100AtTheIssueShape) {
  race::kernels::RaceAttentionShape shape;
  shape.head_dim = 128;
  shape.tables = 3;
  shape.bits = 3;
  const int64_t bytes = kc::race_attention_shared_bytes(shape);
  EXPECT_GT(bytes, 100 * 1024);
  EXPECT_LE(bytes, 163 * 1024);  // an sm_80 block's opt-in maximum
}

TEST(Bf16, RoundsToNearestEvenAndKeepsSpecials) {
  const std::vector<float> x = {1.0f, 1.00390625f, 1.01171875f, -2.5f};
  const auto h = kc::to_bf16(x);
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to even (1). 1 + 3 * 2^-8 ties up to 1 + 2^-6.
  EXPECT_EQ(h[0], 0x3F80);
  EXPECT_EQ(h[1], 0x3F80);
  EXPECT_EQ(h[2], 0x3F82);
  EXPECT_EQ(kc::from_bf16(h)[3], -2.5f);
  const auto nan = kc::to_bf16({std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()});
  EXPECT_TRUE(std::isnan(kc::from_bf16(nan)[0]));
  EXPECT_TRUE(std::isinf(kc::from_bf16(nan)[1]));
}

}  // namespace

#else

TEST(RaceAttentionCuda, NeedsTheCudaToolkit) { GTEST_SKIP() << "built without the CUDA toolkit"; }

#endif
