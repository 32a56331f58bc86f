// model::CudaOps against model::CpuOps. With a GPU: every Ops method on identical random inputs (shapes that
// are not multiples of the kernels' block sizes, ignored targets, masks, in-place calls), the argument
// errors, an out-of-memory error, a tiny hybrid Gpt's loss and every gradient, and 10 AdamW steps of it.
// Tolerances (relative RMS): 1e-6 for elementwise math (both sides fp32, different exp implementations),
// 1e-5 for reductions and products (different summation orders), 1e-4 for attention and the whole model
// (the attention kernels' own bound). Layout moves and the embedding backward (the CPU's order) are exact.
// The bf16 operands (ops.h's Operand), with a GPU: every typed output in bf16 is CpuOps' fp32 output
// rounded to nearest even (within one bf16 ulp where the fp32 results differ in their last bits; bit for bit
// for the layout moves, bf16 heads among them), the rounding itself is the host's kernels::cuda::to_bf16 bit
// for bit, the linear layer on bf16 operands matches an fp64 product of the same rounded values to
// fp32-accumulation accuracy, pooling reads bf16 rows, RoPE turns bf16 heads (in place too), attention on
// bf16 q, k, v and gradients matches CpuOps on the same values within the outputs' bf16 rounding (5e-3), and
// mixed types within a call and a bf16 output over an input are errors.
// Without a GPU: the per-element math, the per-thread work items (the column sums' two stages among them,
// for every item) and the block programs the kernels share with the host (elementwise_math.h, work_items.h,
// block_programs.h; the programs on blocks of host threads with a barrier), against the fp64 references and
// CpuOps, with fp32 and bf16 outputs and inputs; the column-major products the linear layer asks of cuBLASLt
// (gemm_layout.h), computed naively, against CpuOps, and its size checks; the out-of-memory and mixed
// operand messages; and CudaOps' error when there is no device.
#include <gtest/gtest.h>

#ifdef RACE_HAVE_CUDA

#include <cuda_runtime.h>

#include <barrier>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/adamw_cuda.h"
#include "emulated_bf16_ops.h"
#include "kernels/cuda/block_programs.h"
#include "kernels/cuda/cublaslt_api.h"
#include "kernels/cuda/device_info.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/elementwise_math.h"
#include "kernels/cuda/gemm_layout.h"
#include "kernels/cuda/work_items.h"
#include "model/cpu_ops.h"
#include "model/cuda_ops.h"
#include "model/gpt.h"
#include "reference/adamw_reference.h"
#include "reference/gelu_reference.h"
#include "reference/rope_reference.h"
#include "test_support.h"

// bf16 on the host, for the block programs and work items templated on their element type: stored as
// kernels::cuda::to_bf16 rounds (to nearest even, as the device's __float2bfloat16_rn), so a program's bf16
// output can be compared with its fp32 output rounded.
struct HostBf16 {
  uint16_t bits;
};

namespace race::kernels::cuda::tile {
template <>
struct Element<HostBf16> {
  static float load(const HostBf16* p) { return from_bf16({p->bits})[0]; }
  static void store(HostBf16* p, float x) { p->bits = to_bf16({x})[0]; }
};
}  // namespace race::kernels::cuda::tile

namespace {

namespace gemm = race::kernels::cuda::gemm;
namespace math = race::kernels::cuda::math;
namespace items = race::kernels::cuda::items;
using race::kernels::cuda::from_bf16;
using race::kernels::cuda::to_bf16;
using race::model::CpuOps;
using race::model::CudaOps;
using race::model::ElementType;
using race::model::Operand;
using race::model::OperandOut;
using race::test::relative_rms;
using race::test::widen;

bool have_device() { return !race::kernels::cuda::query_devices().devices.empty(); }

std::vector<HostBf16> host_bf16(const std::vector<float>& x) {  // rounded to nearest even
  std::vector<HostBf16> out;
  for (const uint16_t bits : to_bf16(x)) out.push_back({bits});
  return out;
}
std::vector<uint16_t> bits_of(const std::vector<HostBf16>& x) {
  std::vector<uint16_t> out;
  for (const HostBf16 v : x) out.push_back(v.bits);
  return out;
}

// A bf16 value's place on a line where neighbouring bf16 values are 1 apart (+0 and -0 both at 0).
int bf16_order(uint16_t bits) { return (bits & 0x8000u) != 0 ? -static_cast<int>(bits & 0x7FFFu) : static_cast<int>(bits); }

// got (bf16) against want (CpuOps' fp32) rounded to nearest even: every element within one bf16 ulp (the
// backends' fp32 results differ in their last bits, and a rounding boundary between them moves the bf16
// result by one), and at least 99% of them identical, which rounding toward zero instead (off by one in
// about half the elements) fails.
void expect_rounded(const std::vector<uint16_t>& got, const std::vector<float>& want) {
  const std::vector<uint16_t> rounded = to_bf16(want);
  ASSERT_EQ(got.size(), rounded.size());
  int64_t same = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const int off = std::abs(bf16_order(got[i]) - bf16_order(rounded[i]));
    EXPECT_LE(off, 1) << "element " << i << ": 0x" << std::hex << got[i] << ", want 0x" << rounded[i];
    if (off > 1) return;
    same += off == 0;
  }
  EXPECT_GE(static_cast<double>(same), 0.99 * static_cast<double>(got.size()));
}

// ---- host: the shared per-element math ----

TEST(CudaOpsMath, GeluMatchesTheFp64Reference) {
  std::mt19937_64 rng(1);
  const auto x = race::test::normal(rng, 4099, 3.0), dy = race::test::normal(rng, 4099);
  std::vector<float> y(x.size()), dx(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    y[i] = math::gelu_forward(x[i]);
    dx[i] = math::gelu_backward(dy[i], x[i]);
  }
  EXPECT_LE(relative_rms(y, race::reference::gelu_forward(widen(x))), 1e-6);
  EXPECT_LE(relative_rms(dx, race::reference::gelu_backward(widen(dy), widen(x))), 1e-6);
}

TEST(CudaOpsMath, DropoutMaskIsCpuOpsMask) {
  std::mt19937_64 rng(2);
  const int64_t n = 10007;
  const float p = 0.3f;
  const uint64_t seed = 12345;
  const auto x = race::test::normal(rng, n);
  CpuOps cpu;
  float* buffer = cpu.allocate(n);
  cpu.dropout(buffer, x.data(), n, p, seed);
  std::vector<float> want(buffer, buffer + n), got(static_cast<size_t>(n));
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = math::dropout_keep(seed, i, math::dropout_threshold(p));
    got[i] = keep ? x[i] * (1.f / (1.f - p)) : 0.f;
    kept += keep;
  }
  EXPECT_TRUE(race::test::bit_equal(got, want));
  EXPECT_NEAR(static_cast<double>(kept) / n, 1.0 - p, 0.02);
}

TEST(CudaOpsMath, AdamWUpdateMatchesTheFp64ReferenceOverTenSteps) {
  std::mt19937_64 rng(3);
  const int64_t n = 1000;
  auto params = race::test::normal(rng, n);
  std::vector<float> m(n, 0.f), v(n, 0.f);
  race::reference::AdamWState state{widen(params), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  for (int64_t step = 1; step <= 10; ++step) {
    const auto grads = race::test::normal(rng, n);
    const auto c = math::adamw_constants(1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f);
    for (int64_t i = 0; i < n; ++i) math::adamw_update(params[i], m[i], v[i], grads[i], c);
    race::reference::adamw_step(state, widen(grads), 1e-2, 0.9, 0.95, 1e-8, 0.1, step, 0.5);
  }
  EXPECT_LE(relative_rms(params, state.params), 1e-6);
  EXPECT_LE(relative_rms(m, state.m), 1e-6);
  EXPECT_LE(relative_rms(v, state.v), 1e-6);
}

TEST(CudaOpsMath, AdamWChunksCoverEveryRangeElementOnce) {
  // Gaps, empty ranges first, inside and last, and ranges of 1, kAdamWChunk - 1, kAdamWChunk and more.
  const int64_t C = race::kernels::cuda::kAdamWChunk;
  std::vector<race::kernels::cuda::AdamWRange> ranges = {{0, 0}, {0, 1}, {3, C - 1}, {3 + C - 1, 0},
                                                         {C + 5, C},  {2 * C + 5, 3 * C + 7}, {6 * C, 0}};
  const int64_t chunks = race::kernels::cuda::number_adamw_chunks(ranges);
  EXPECT_EQ(chunks, 1 + 1 + 1 + 4);
  std::vector<int> hits(static_cast<size_t>(6 * C), 0);
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const auto& r = ranges[race::kernels::cuda::adamw_range_of_chunk(ranges.data(), static_cast<int64_t>(ranges.size()), chunk)];
    const int64_t begin = (chunk - r.first_chunk) * C, end = std::min(begin + C, r.count);
    ASSERT_LT(begin, end) << "chunk " << chunk << " has no elements";
    for (int64_t i = r.offset + begin; i < r.offset + end; ++i) ++hits[static_cast<size_t>(i)];
  }
  std::vector<int> want(hits.size(), 0);
  for (const auto& r : ranges) std::fill_n(want.begin() + r.offset, r.count, 1);
  EXPECT_EQ(hits, want);
}

TEST(CudaOpsMath, RopeAngleIsPositionTimesInverseFrequency) {
  EXPECT_DOUBLE_EQ(math::rope_angle(7, 0, 8, 10000.f), 7.0);
  EXPECT_NEAR(math::rope_angle(1000000, 3, 8, 10000.f), 1e6 * std::pow(10000.0, -6.0 / 8.0), 1e-6);
}

// ---- host: the kernels' independent work items, every item in a loop ----

TEST(CudaOpsWorkItems, HeadsPlaceMovesAsCpuOps) {
  std::mt19937_64 rng(4);
  const int64_t B = 2, T = 7, H = 3, D = 5, C = H * D, n = B * H * T * D;
  const auto qkv = race::test::normal(rng, B * T * 3 * C);
  CpuOps cpu;
  float *q = cpu.allocate(n), *k = cpu.allocate(n), *v = cpu.allocate(n), *rows = cpu.allocate(B * T * C);
  cpu.split_heads(q, k, v, qkv.data(), B, T, H, D);
  cpu.heads_to_rows(rows, k, B, T, H, D);
  std::vector<float> got(static_cast<size_t>(3 * n)), got_rows(static_cast<size_t>(B * T * C));
  for (int64_t i = 0; i < B * T * 3 * C; ++i) {
    const auto place = items::heads_place(i, T, H, D, 3);
    got[place.part * n + place.offset] = qkv[i];
  }
  std::vector<float> want(q, q + n);
  want.insert(want.end(), k, k + n);
  want.insert(want.end(), v, v + n);
  EXPECT_TRUE(race::test::bit_equal(got, want));
  for (int64_t i = 0; i < B * T * C; ++i) got_rows[i] = k[items::heads_place(i, T, H, D, 1).offset];
  EXPECT_TRUE(race::test::bit_equal(got_rows, std::vector<float>(rows, rows + B * T * C)));
}

// The moves with bf16 heads or rows, every element: CpuOps' fp32 moves rounded, bit for bit (a move rounds
// once, or not at all when the values are bf16 already).
TEST(CudaOpsWorkItems, LayoutMovesWithBf16AreCpuOpsRoundedBitForBit) {
  std::mt19937_64 rng(14);
  const int64_t B = 2, T = 7, H = 3, D = 5, C = H * D, n = B * H * T * D, parts = 3;
  const auto qkv = race::test::normal(rng, B * T * 3 * C);
  CpuOps cpu;
  std::vector<float> q(n), k(n), v(n);
  cpu.split_heads(q.data(), k.data(), v.data(), qkv.data(), B, T, H, D);
  std::vector<HostBf16> q16(n), k16(n), v16(n);
  for (int64_t i = 0; i < B * T * 3 * C; ++i)
    items::row_element_to_heads(q16.data(), k16.data(), v16.data(), qkv.data(), i, T, H, D, parts);
  EXPECT_EQ(bits_of(q16), to_bf16(q));
  EXPECT_EQ(bits_of(k16), to_bf16(k));
  EXPECT_EQ(bits_of(v16), to_bf16(v));

  // From bf16 heads (values drawn and rounded) into fp32 and bf16 rows.
  const auto hq = host_bf16(race::test::normal(rng, n)), hk = host_bf16(race::test::normal(rng, n)),
             hv = host_bf16(race::test::normal(rng, n));
  const auto wq = from_bf16(bits_of(hq)), wk = from_bf16(bits_of(hk)), wv = from_bf16(bits_of(hv));
  std::vector<float> merged(B * T * 3 * C), got(B * T * 3 * C, 7.f);
  std::vector<HostBf16> got16(B * T * 3 * C, HostBf16{0xFFFF});
  cpu.merge_heads(merged.data(), wq.data(), wk.data(), wv.data(), B, T, H, D);
  for (int64_t i = 0; i < B * T * 3 * C; ++i) {
    items::heads_element_to_row(got.data(), hq.data(), hk.data(), hv.data(), i, T, H, D, parts);
    items::heads_element_to_row(got16.data(), hq.data(), hk.data(), hv.data(), i, T, H, D, parts);
  }
  EXPECT_TRUE(race::test::bit_equal(got, merged));
  EXPECT_EQ(bits_of(got16), to_bf16(merged));

  std::vector<float> rows(B * T * C), got_rows(B * T * C, 7.f);
  std::vector<HostBf16> rows16(B * T * C, HostBf16{0xFFFF});
  cpu.heads_to_rows(rows.data(), wk.data(), B, T, H, D);
  for (int64_t i = 0; i < B * T * C; ++i) {
    items::heads_element_to_row(got_rows.data(), hk.data(), static_cast<const HostBf16*>(nullptr),
                                static_cast<const HostBf16*>(nullptr), i, T, H, D, 1);
    items::heads_element_to_row(rows16.data(), hk.data(), static_cast<const HostBf16*>(nullptr),
                                static_cast<const HostBf16*>(nullptr), i, T, H, D, 1);
  }
  EXPECT_TRUE(race::test::bit_equal(got_rows, rows));
  EXPECT_EQ(bits_of(rows16), to_bf16(rows));

  // fp32 rows into bf16 heads.
  const auto source = race::test::normal(rng, B * T * C);
  std::vector<float> heads(n);
  std::vector<HostBf16> heads16(n, HostBf16{0xFFFF});
  cpu.rows_to_heads(heads.data(), source.data(), B, T, H, D);
  for (int64_t i = 0; i < B * T * C; ++i)
    items::row_element_to_heads(heads16.data(), static_cast<HostBf16*>(nullptr), static_cast<HostBf16*>(nullptr),
                                source.data(), i, T, H, D, 1);
  EXPECT_EQ(bits_of(heads16), to_bf16(heads));
}

TEST(CudaOpsWorkItems, RopePairsMatchTheFp64Reference) {
  std::mt19937_64 rng(5);
  const int64_t B = 2, H = 3, T = 9, D = 12;
  const auto x = race::test::normal(rng, B * H * T * D);
  std::vector<int32_t> positions(B * T);
  for (int64_t i = 0; i < B * T; ++i) positions[i] = static_cast<int32_t>((i % 5) * 200003);
  for (bool given : {false, true}) {
    const int32_t* pos = given ? positions.data() : nullptr;
    const std::vector<int32_t> ref_pos = given ? positions : std::vector<int32_t>{};
    std::vector<float> out(x.size()), back(x.size());
    for (int64_t p = 0; p < B * H * T * D / 2; ++p) items::rope_pair(out.data(), x.data(), pos, p, H, T, D, 10000.f, 1.f);
    EXPECT_LE(relative_rms(out, race::reference::rope_forward(widen(x), ref_pos, B, H, T, D, 10000.0)), 1e-6);
    back = out;
    for (int64_t p = 0; p < B * H * T * D / 2; ++p)  // in place, as the kernel allows
      items::rope_pair(back.data(), back.data(), pos, p, H, T, D, 10000.f, -1.f);
    EXPECT_LE(relative_rms(back, race::reference::rope_backward(widen(out), ref_pos, B, H, T, D, 10000.0)), 1e-6);
  }
}

// On bf16 heads: CpuOps' fp32 rotation of the same values, rounded (within one bf16 ulp, expect_rounded), the
// backward in place.
TEST(CudaOpsWorkItems, RopePairsOnBf16AreCpuOpsRounded) {
  std::mt19937_64 rng(15);
  const int64_t B = 2, H = 3, T = 9, D = 12, n = B * H * T * D;
  const auto x16 = host_bf16(race::test::normal(rng, n));
  const auto x = from_bf16(bits_of(x16));
  std::vector<int32_t> positions(B * T);
  for (int64_t i = 0; i < B * T; ++i) positions[i] = static_cast<int32_t>((i % 5) * 200003);
  CpuOps cpu;
  for (bool given : {false, true}) {
    const int32_t* pos = given ? positions.data() : nullptr;
    std::vector<HostBf16> out16(n, HostBf16{0xFFFF});
    std::vector<float> want(n);
    for (int64_t p = 0; p < n / 2; ++p) items::rope_pair(out16.data(), x16.data(), pos, p, H, T, D, 10000.f, 1.f);
    cpu.rope_forward(want.data(), x.data(), pos, B, H, T, D, 10000.f);
    expect_rounded(bits_of(out16), want);
    const auto turned = from_bf16(bits_of(out16));
    cpu.rope_backward(want.data(), turned.data(), pos, B, H, T, D, 10000.f);
    for (int64_t p = 0; p < n / 2; ++p)  // in place
      items::rope_pair(out16.data(), out16.data(), pos, p, H, T, D, 10000.f, -1.f);
    expect_rounded(bits_of(out16), want);
  }
}

TEST(CudaOpsWorkItems, EmbeddingBackwardColumnsInSlicesAreCpuOpsBitForBit) {
  std::mt19937_64 rng(6);
  const int64_t n = 97, V = 11, C = 13, slices = 4, rows_per_slice = (V + slices - 1) / slices;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 5) % V);
  const auto dout = race::test::normal(rng, n * C), start = race::test::normal(rng, V * C);
  std::vector<float> want = start, got = start;
  CpuOps cpu;
  cpu.embedding_backward(want.data(), ids.data(), dout.data(), n, V, C);
  for (int64_t slice = 0; slice < slices; ++slice)
    for (int64_t c = 0; c < C; ++c)
      items::embedding_backward_column(got.data(), ids.data(), dout.data(), n, C, c, slice * rows_per_slice,
                                       (slice + 1) * rows_per_slice);
  EXPECT_TRUE(race::test::bit_equal(got, want));
}

TEST(CudaOpsWorkItems, PoolingChannelsAreCpuOpsBitForBit) {
  std::mt19937_64 rng(7);
  const int64_t B = 3, T = 6, C = 5;
  std::vector<uint8_t> mask(B * T, 1);
  for (int64_t t = 0; t < T; ++t) {
    mask[T + t] = static_cast<uint8_t>(t % 2);  // row 1: some tokens
    mask[2 * T + t] = 0;                        // row 2: none (pools to 0)
  }
  const auto rows = race::test::normal(rng, B * T * C), dpooled = race::test::normal(rng, B * C);
  CpuOps cpu;
  for (bool cls : {false, true})
    for (const uint8_t* key_mask : {static_cast<const uint8_t*>(nullptr), static_cast<const uint8_t*>(mask.data())}) {
      std::vector<float> want(B * C), got(B * C), want_d(B * T * C), got_d(B * T * C, 7.f);
      cpu.pool_forward(want.data(), rows.data(), key_mask, B, T, C, cls);
      cpu.pool_backward(want_d.data(), dpooled.data(), key_mask, B, T, C, cls);
      for (int64_t item = 0; item < B * C; ++item) {
        items::pool_forward_channel(got.data(), rows.data(), key_mask, item, T, C, cls);
        items::pool_backward_channel(got_d.data(), dpooled.data(), key_mask, item, T, C, cls);
      }
      EXPECT_TRUE(race::test::bit_equal(got, want));
      EXPECT_TRUE(race::test::bit_equal(got_d, want_d));
    }
}

// The forward from bf16 rows: CpuOps' pooling of the same values widened to fp32, bit for bit.
TEST(CudaOpsWorkItems, PoolingChannelsFromBf16RowsAreCpuOpsBitForBit) {
  std::mt19937_64 rng(17);
  const int64_t B = 3, T = 6, C = 5;
  std::vector<uint8_t> mask(B * T, 1);
  for (int64_t t = 0; t < T; ++t) mask[T + t] = static_cast<uint8_t>(t % 2);
  const auto rows = host_bf16(race::test::normal(rng, B * T * C, 3.0));
  const auto values = from_bf16(bits_of(rows));
  CpuOps cpu;
  for (bool cls : {false, true})
    for (const uint8_t* key_mask : {static_cast<const uint8_t*>(nullptr), static_cast<const uint8_t*>(mask.data())}) {
      std::vector<float> want(B * C), got(B * C, 7.f);
      cpu.pool_forward(want.data(), values.data(), key_mask, B, T, C, cls);
      for (int64_t item = 0; item < B * C; ++item)
        items::pool_forward_channel(got.data(), rows.data(), key_mask, item, T, C, cls);
      EXPECT_TRUE(race::test::bit_equal(got, want));
    }
}

// ---- host: the column sums' two stages (work_items.h), every item ----

// Both stages for every item onto outs[k] (cols each). Stage 1 runs its items in reverse: they are
// independent, so the order a GPU happens to run them in cannot change the result. The partials start as
// NaN, so one that stage 1 never writes shows.
template <class Terms>
void run_column_sums(std::vector<std::vector<float>>& outs, const Terms& terms, int64_t rows, int64_t cols) {
  const int64_t chunks = items::column_chunks(rows);
  std::vector<double> partial(static_cast<size_t>(Terms::kSums * chunks * cols),
                              std::numeric_limits<double>::quiet_NaN());  // (kSums, chunks, cols)
  for (int64_t chunk = chunks - 1; chunk >= 0; --chunk)
    for (int64_t c = cols - 1; c >= 0; --c)
      items::column_chunk_sums(partial.data(), terms, rows, cols, chunk, c);
  for (int k = 0; k < Terms::kSums; ++k)
    for (int64_t c = 0; c < cols; ++c)
      items::column_total(outs[k].data(), partial.data() + k * chunks * cols, chunks, cols, c);
}

// Each got[c] against want[c] = start[c] + the fp64 sum of its terms, within `bound` times magnitude[c] =
// |start[c]| + the sum of the terms' magnitudes: the fp64 sums are exact to far below that, so what remains
// is the two fp32 roundings (of the sum, then of the addition), at most 2^-23 of the magnitude; the bounds
// below allow twice that.
void expect_sums(const std::vector<float>& got, const std::vector<double>& want,
                 const std::vector<double>& magnitude, double bound) {
  for (size_t c = 0; c < got.size(); ++c)
    EXPECT_LE(std::abs(static_cast<double>(got[c]) - want[c]), bound * magnitude[c]) << "column " << c;
}

// Rows and columns that do not divide the chunk (256 rows) or the kernel's tile (256 columns).
const std::vector<int64_t> kSumRows = {1, 7, items::kColumnChunkRows - 1, items::kColumnChunkRows + 1,
                                       3 * items::kColumnChunkRows + 5};
const std::vector<int64_t> kSumCols = {1, 33, 769};

TEST(CudaOpsColumnSums, ColumnSumsMatchTheFp64Reference) {
  std::mt19937_64 rng(20);
  for (const int64_t rows : kSumRows)
    for (const int64_t cols : kSumCols) {
      SCOPED_TRACE(testing::Message() << "rows " << rows << " cols " << cols);
      const auto dy = race::test::normal(rng, rows * cols), start = race::test::normal(rng, cols);
      std::vector<double> want = widen(start), magnitude(static_cast<size_t>(cols));
      for (int64_t c = 0; c < cols; ++c) {
        magnitude[c] = std::abs(want[c]);
        for (int64_t n = 0; n < rows; ++n) {
          want[c] += dy[n * cols + c];
          magnitude[c] += std::abs(dy[n * cols + c]);
        }
      }
      std::vector<std::vector<float>> got = {start};  // accumulated onto non-zero values
      run_column_sums(got, items::ColumnTerms<float>{dy.data()}, rows, cols);
      expect_sums(got[0], want, magnitude, 0x1p-22);
    }
}

// The linear layer's bias gradient from a bf16 dy: the same sums of the bf16 values, widened exactly.
TEST(CudaOpsColumnSums, ColumnSumsOfBf16DyMatchTheFp64Reference) {
  std::mt19937_64 rng(22);
  for (const int64_t rows : kSumRows)
    for (const int64_t cols : kSumCols) {
      SCOPED_TRACE(testing::Message() << "rows " << rows << " cols " << cols);
      const auto dy = host_bf16(race::test::normal(rng, rows * cols));
      const auto values = from_bf16(bits_of(dy));
      const auto start = race::test::normal(rng, cols);
      std::vector<double> want = widen(start), magnitude(static_cast<size_t>(cols));
      for (int64_t c = 0; c < cols; ++c) {
        magnitude[c] = std::abs(want[c]);
        for (int64_t n = 0; n < rows; ++n) {
          want[c] += values[n * cols + c];
          magnitude[c] += std::abs(values[n * cols + c]);
        }
      }
      std::vector<std::vector<float>> got = {start};
      run_column_sums(got, items::ColumnTerms<HostBf16>{dy.data()}, rows, cols);
      expect_sums(got[0], want, magnitude, 0x1p-22);
    }
}

// LayerNorm's dweight += sum_n dy xhat and dbias += sum_n dy, with xhat = (x - mean) rstd taken in fp64 by
// the reference: the terms' own fp32 rounding (three operations) adds up to 3 * 2^-24 of the magnitude.
TEST(CudaOpsColumnSums, LayerNormParamSumsMatchTheFp64Reference) {
  std::mt19937_64 rng(21);
  CpuOps cpu;
  for (const int64_t rows : kSumRows)
    for (const int64_t C : kSumCols) {
      SCOPED_TRACE(testing::Message() << "rows " << rows << " channels " << C);
      const auto x = race::test::normal(rng, rows * C, 2.0, 3.0), dy = race::test::normal(rng, rows * C);
      const auto dw0 = race::test::normal(rng, C), db0 = race::test::normal(rng, C);
      std::vector<float> y(static_cast<size_t>(rows * C)), mean(static_cast<size_t>(rows)),
          rstd(static_cast<size_t>(rows));
      cpu.layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), nullptr, nullptr, rows, C, 1e-5f);
      std::vector<double> want_w = widen(dw0), want_b = widen(db0), mag_w(static_cast<size_t>(C)),
                          mag_b(static_cast<size_t>(C));
      for (int64_t c = 0; c < C; ++c) {
        mag_w[c] = std::abs(want_w[c]);
        mag_b[c] = std::abs(want_b[c]);
        for (int64_t n = 0; n < rows; ++n) {
          const double g = dy[n * C + c], xhat = (double(x[n * C + c]) - mean[n]) * rstd[n];
          want_w[c] += g * xhat;
          want_b[c] += g;
          mag_w[c] += std::abs(g * xhat);
          mag_b[c] += std::abs(g);
        }
      }
      std::vector<std::vector<float>> got = {dw0, db0};
      const items::LayerNormParamTerms terms{dy.data(), x.data(), mean.data(), rstd.data()};
      run_column_sums(got, terms, rows, C);
      expect_sums(got[0], want_w, mag_w, 0x1p-22 + 3 * 0x1p-24);
      expect_sums(got[1], want_b, mag_b, 0x1p-22);
    }
}

// ---- host: the linear layer's column-major products (gemm_layout.h) ----

// D = op(A) op(B) + beta D (+ bias[i] on row i), column-major as g describes, naively in fp64 on the raw
// row-major buffers: what cuBLASLt computes for GemmContext, given the same descriptors.
std::vector<float> column_major_product(const gemm::ColumnMajorGemm& g, const float* a, const float* b,
                                        float beta, std::vector<float> d, const float* bias) {
  for (int64_t j = 0; j < g.n; ++j)
    for (int64_t i = 0; i < g.m; ++i) {
      double sum = 0.0;
      for (int64_t kk = 0; kk < g.k; ++kk) {
        const float av = g.transpose_a ? a[kk + i * g.lda] : a[i + kk * g.lda];  // op(A)(i, kk)
        const float bv = g.transpose_b ? b[j + kk * g.ldb] : b[kk + j * g.ldb];  // op(B)(kk, j)
        sum += double(av) * bv;
      }
      float& out = d[i + j * g.ldc];
      out = static_cast<float>(sum + beta * double(out) + (bias != nullptr ? double(bias[i]) : 0.0));
    }
  return d;
}

// Every product GemmContext asks of cuBLASLt, with its operands in the order it passes them, against CpuOps:
// sizes not multiples of 8, a single row, a single input or output, with and without bias, and dW
// accumulated onto non-zero values.
TEST(CudaOpsGemmLayout, ColumnMajorProductsMatchCpuOps) {
  std::mt19937_64 rng(8);
  struct Shape {
    int64_t rows, in, out;
  };
  for (const Shape s : {Shape{37, 45, 70}, Shape{1, 13, 5}, Shape{9, 1, 3}, Shape{6, 11, 1}}) {
    SCOPED_TRACE(testing::Message() << "rows " << s.rows << " in " << s.in << " out " << s.out);
    const auto x = race::test::normal(rng, s.rows * s.in), w = race::test::normal(rng, s.out * s.in),
               b = race::test::normal(rng, s.out), dy = race::test::normal(rng, s.rows * s.out),
               dw0 = race::test::normal(rng, s.out * s.in);
    CpuOps cpu;
    for (const float* bias : {static_cast<const float*>(nullptr), b.data()}) {
      std::vector<float> y(s.rows * s.out);
      cpu.linear_forward(y.data(), x.data(), w.data(), bias, s.rows, s.in, s.out);
      const auto got = column_major_product(gemm::forward_gemm(s.rows, s.in, s.out), w.data(), x.data(), 0.f,
                                            std::vector<float>(y.size(), 9.f), bias);
      EXPECT_LE(relative_rms(got, widen(y)), 1e-6);
    }
    std::vector<float> dx(s.rows * s.in), dw = dw0;
    cpu.linear_backward(dx.data(), dw.data(), nullptr, dy.data(), x.data(), w.data(), s.rows, s.in, s.out);
    const auto got_dx = column_major_product(gemm::input_grad_gemm(s.rows, s.in, s.out), w.data(), dy.data(),
                                             0.f, std::vector<float>(dx.size(), 9.f), nullptr);
    const auto got_dw = column_major_product(gemm::weight_grad_gemm(s.rows, s.in, s.out), x.data(), dy.data(),
                                             1.f, dw0, nullptr);
    EXPECT_LE(relative_rms(got_dx, widen(dx)), 1e-6);
    EXPECT_LE(relative_rms(got_dw, widen(dw)), 1e-6);
  }
}

// cuBLASLt is opened at run time (kernels/cuda/cublaslt_api.h): the library is found and holds every function
// GemmContext calls under the names it asks for. No GPU is needed to check that.
TEST(CudaOpsGemmLayout, CublasLtOpensWithEveryFunction) {
  const race::kernels::cuda::CublasLtApi& api = race::kernels::cuda::cublaslt();
  for (const void* function :
       {reinterpret_cast<const void*>(api.Create), reinterpret_cast<const void*>(api.Destroy),
        reinterpret_cast<const void*>(api.GetStatusName), reinterpret_cast<const void*>(api.GetStatusString),
        reinterpret_cast<const void*>(api.Matmul), reinterpret_cast<const void*>(api.MatmulAlgoGetHeuristic),
        reinterpret_cast<const void*>(api.MatmulDescCreate), reinterpret_cast<const void*>(api.MatmulDescDestroy),
        reinterpret_cast<const void*>(api.MatmulDescSetAttribute),
        reinterpret_cast<const void*>(api.MatmulPreferenceCreate),
        reinterpret_cast<const void*>(api.MatmulPreferenceDestroy),
        reinterpret_cast<const void*>(api.MatmulPreferenceSetAttribute),
        reinterpret_cast<const void*>(api.MatrixLayoutCreate), reinterpret_cast<const void*>(api.MatrixLayoutDestroy)})
    EXPECT_NE(function, nullptr);
  EXPECT_STREQ(api.GetStatusName(CUBLAS_STATUS_NOT_SUPPORTED), "CUBLAS_STATUS_NOT_SUPPORTED");
}

TEST(CudaOpsGemmLayout, StoredShapesFollowTheTransposes) {
  const auto f = gemm::forward_gemm(5, 7, 3), w = gemm::weight_grad_gemm(5, 7, 3);
  EXPECT_EQ(f.a_rows(), 7);  // W stored as the column-major (in, out) W^T
  EXPECT_EQ(f.a_cols(), 3);
  EXPECT_EQ(f.b_rows(), 7);  // x stored as x^T (in, N)
  EXPECT_EQ(f.b_cols(), 5);
  EXPECT_EQ(w.b_rows(), 3);  // dy stored as dy^T (out, N)
  EXPECT_EQ(w.b_cols(), 5);
  EXPECT_EQ(w.k, 5);  // the rows are the reduction of dW
}

TEST(CudaOpsGemmLayout, AlignmentIsTheLargestPowerOfTwoUpTo256) {
  EXPECT_EQ(gemm::alignment_bytes(0), 256u);
  EXPECT_EQ(gemm::alignment_bytes(4096), 256u);
  EXPECT_EQ(gemm::alignment_bytes(4096 + 4), 4u);
  EXPECT_EQ(gemm::alignment_bytes(4096 + 48), 16u);
  EXPECT_EQ(gemm::alignment_bytes(128), 128u);
  EXPECT_EQ(gemm::alignment_bytes(3), 1u);
}

TEST(CudaOpsGemmLayout, SizesAreCheckedIn64Bits) {
  EXPECT_EQ(gemm::size_error("linear_forward", 0, 1, 1), "");
  EXPECT_EQ(gemm::size_error("linear_forward", int64_t{1} << 40, 1024, 1024), "");  // past 2^31 rows is fine
  EXPECT_TRUE(race::test::contains(gemm::size_error("linear_forward", -1, 4, 4),
                                   "rows must be >= 0, in and out >= 1"));
  EXPECT_TRUE(race::test::contains(gemm::size_error("linear_backward", 4, 0, 4),
                                   "linear_backward (CUDA): rows = 4, in = 0"));
  EXPECT_TRUE(race::test::contains(gemm::size_error("linear_forward", int64_t{1} << 40, int64_t{1} << 21, 8),
                                   "does not fit a 64-bit integer"));
  EXPECT_TRUE(race::test::contains(gemm::size_error("linear_forward", 1, int64_t{1} << 31, int64_t{1} << 31),
                                   "does not fit a 64-bit integer"));
}

// ---- host: the block programs on emulated blocks ----

// A CUDA block emulated by `lanes` host threads; sync is a barrier.
struct HostBlock {
  int id, count;
  std::barrier<>* barrier;
  int lane() const { return id; }
  int lanes() const { return count; }
  void sync() const { barrier->arrive_and_wait(); }
};

// Runs program(block, shared) on one emulated block; shared memory starts as NaN so a read before a write shows.
template <class Shared, class Program>
void run_block(int lanes, int64_t shared_count, Program program) {
  std::vector<Shared> shared(static_cast<size_t>(shared_count), std::numeric_limits<Shared>::quiet_NaN());
  std::barrier<> barrier(lanes);
  std::vector<std::thread> threads;
  for (int lane = 0; lane < lanes; ++lane)
    threads.emplace_back([&, lane] { program(HostBlock{lane, lanes, &barrier}, shared.data()); });
  for (auto& t : threads) t.join();
}

constexpr int kLanes = 8;

TEST(CudaOpsBlockPrograms, LayerNormRowsMatchCpuOps) {
  std::mt19937_64 rng(9);
  const int64_t rows = 5, C = 37;
  const auto x = race::test::normal(rng, rows * C, 2.0, 3.0), w = race::test::normal(rng, C),
             b = race::test::normal(rng, C), dy = race::test::normal(rng, rows * C),
             dx0 = race::test::normal(rng, rows * C);
  CpuOps cpu;
  std::vector<float> y(rows * C), mean(rows), rstd(rows), dx = dx0;
  std::vector<float> got_y(rows * C), got_mean(rows), got_rstd(rows), got_dx = dx0;
  cpu.layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows, C, 1e-5f);
  cpu.layernorm_backward(dx.data(), nullptr, nullptr, dy.data(), x.data(), w.data(), mean.data(), rstd.data(), rows, C);
  for (int64_t r = 0; r < rows; ++r) {
    run_block<double>(kLanes, kLanes, [&](const HostBlock& block, double* shared) {
      race::kernels::cuda::programs::layernorm_forward_row(block, shared, got_y.data() + r * C, &got_mean[r],
                                                           &got_rstd[r], x.data() + r * C, w.data(), b.data(), C,
                                                           1e-5f);
    });
    run_block<double>(kLanes, kLanes, [&](const HostBlock& block, double* shared) {
      race::kernels::cuda::programs::layernorm_backward_row(block, shared, got_dx.data() + r * C, dy.data() + r * C,
                                                            x.data() + r * C, w.data(), got_mean[r], got_rstd[r], C);
    });
  }
  EXPECT_LE(relative_rms(got_y, widen(y)), 1e-6);
  EXPECT_LE(relative_rms(got_mean, widen(mean)), 1e-7);
  EXPECT_LE(relative_rms(got_rstd, widen(rstd)), 1e-7);
  EXPECT_LE(relative_rms(got_dx, widen(dx)), 1e-6);
}

// The residual add fused into the row program, with the sum written over one of its inputs (the residual
// stream updated in place): the same bits as CpuOps' fused forward.
TEST(CudaOpsBlockPrograms, ResidualLayerNormRowsMatchCpuOps) {
  std::mt19937_64 rng(19);
  const int64_t rows = 4, C = 45;
  const auto x = race::test::normal(rng, rows * C, 2.0, 1.0), r = race::test::normal(rng, rows * C, 3.0),
             w = race::test::normal(rng, C), b = race::test::normal(rng, C);
  CpuOps cpu;
  std::vector<float> sum(rows * C), y(rows * C), mean(rows), rstd(rows);
  cpu.residual_layernorm_forward(sum.data(), y.data(), mean.data(), rstd.data(), x.data(), r.data(), w.data(),
                                 b.data(), rows, C, 1e-5f);
  std::vector<float> stream = x, got_y(rows * C), got_mean(rows), got_rstd(rows);
  for (int64_t row = 0; row < rows; ++row)
    run_block<double>(kLanes, kLanes, [&](const HostBlock& block, double* shared) {
      race::kernels::cuda::programs::residual_layernorm_forward_row(
          block, shared, stream.data() + row * C, got_y.data() + row * C, &got_mean[row], &got_rstd[row],
          stream.data() + row * C, r.data() + row * C, w.data(), b.data(), C, 1e-5f);
    });
  EXPECT_TRUE(race::test::bit_equal(stream, sum));
  EXPECT_TRUE(race::test::bit_equal(got_y, y));
  EXPECT_TRUE(race::test::bit_equal(got_mean, mean));
  EXPECT_TRUE(race::test::bit_equal(got_rstd, rstd));
}

TEST(CudaOpsBlockPrograms, CrossEntropyRowsMatchCpuOps) {
  std::mt19937_64 rng(10);
  const int64_t rows = 7, V = 53;
  const std::vector<int32_t> targets = {3, -1, 52, 0, 17, -1, 9};
  const auto logits = race::test::normal(rng, rows * V, 4.0);
  CpuOps cpu;
  std::vector<float> want(rows * V), got(rows * V, 5.f), in_place = logits;
  int64_t count = 0;
  const double want_loss = cpu.cross_entropy(want.data(), logits.data(), targets.data(), rows, V, 0.25f, &count);
  double got_loss = 0.0, in_place_loss = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    run_block<double>(kLanes, kLanes, [&](const HostBlock& block, double* shared) {
      const double loss = race::kernels::cuda::programs::cross_entropy_row(block, shared, got.data() + r * V,
                                                                           logits.data() + r * V, targets[r], V, 0.25f);
      const double again = race::kernels::cuda::programs::cross_entropy_row(
          block, shared, in_place.data() + r * V, in_place.data() + r * V, targets[r], V, 0.25f);
      if (block.lane() == 0) got_loss += loss, in_place_loss += again;
    });
  }
  EXPECT_NEAR(got_loss, want_loss, 1e-6 * want_loss);
  EXPECT_NEAR(in_place_loss, want_loss, 1e-6 * want_loss);
  EXPECT_LE(relative_rms(got, widen(want)), 1e-6);
  EXPECT_LE(relative_rms(in_place, widen(want)), 1e-6);
}

TEST(CudaOpsBlockPrograms, RaceDecodeHeadsMatchCpuOps) {
  std::mt19937_64 rng(11);
  const int64_t H = 2, D = 8;
  const race::kernels::RaceAttentionShape shape{1, H, 1, D, 2, 2, true};
  const int64_t S = shape.buckets(), lp = 4;
  const auto planes = race::test::normal(rng, H * lp * D);
  const std::vector<float> beta = {0.8f, 1.3f};
  CpuOps cpu;
  for (auto estimator : {race::kernels::RaceEstimator::bucket, race::kernels::RaceEstimator::ratio}) {
    race::kernels::RaceAttentionOptions options;
    options.estimator = estimator;
    std::vector<float> a(H * S, 0.f), bsum(H * S * D, 0.f), out(H * D), got_a = a, got_b = bsum, got_out(H * D);
    for (int step = 0; step < 4; ++step) {
      const auto q = race::test::normal(rng, H * D), k = race::test::normal(rng, H * D),
                 v = race::test::normal(rng, H * D);
      cpu.race_attention_decode(shape, options, q.data(), k.data(), v.data(), planes.data(), beta.data(), a.data(),
                                bsum.data(), out.data());
      for (int64_t h = 0; h < H; ++h) {
        const race::kernels::cuda::programs::RaceDecodeHead head{
            q.data() + h * D,     k.data() + h * D,     v.data() + h * D, planes.data() + h * lp * D, beta[h],
            got_a.data() + h * S, got_b.data() + h * S * D, got_out.data() + h * D, D, 2, 2,
            estimator == race::kernels::RaceEstimator::ratio, options.eps};
        run_block<float>(4, race::kernels::cuda::programs::race_decode_shared_floats(2, 2),
                         [&](const HostBlock& block, float* shared) {
                           race::kernels::cuda::programs::race_decode_head(block, shared, head);
                         });
      }
      EXPECT_LE(relative_rms(got_out, widen(out)), 1e-5);
      EXPECT_LE(relative_rms(got_a, widen(a)), 1e-5);
      EXPECT_LE(relative_rms(got_b, widen(bsum)), 1e-5);
    }
  }
}

TEST(CudaOpsBlockPrograms, SoftmaxDecodeHeadsMatchCpuOps) {
  std::mt19937_64 rng(12);
  const int64_t H = 2, D = 8, capacity = 3, window = 3;
  CpuOps cpu;
  std::vector<float> keys(H * capacity * D, 0.f), values = keys, got_keys = keys, got_values = keys, out(H * D),
                                                  got_out(H * D);
  for (int64_t position = 0; position < 6; ++position) {
    const auto q = race::test::normal(rng, H * D), k = race::test::normal(rng, H * D), v = race::test::normal(rng, H * D);
    cpu.softmax_attention_decode(H, D, window, 0.3f, q.data(), k.data(), v.data(), keys.data(), values.data(), capacity,
                                 position, out.data());
    const int64_t first = std::max<int64_t>(0, position - window + 1);
    std::vector<double> scores(static_cast<size_t>(position - first + 1));
    for (int64_t h = 0; h < H; ++h) {
      const race::kernels::cuda::programs::SoftmaxDecodeHead head{
          q.data() + h * D, k.data() + h * D, v.data() + h * D, got_keys.data() + h * capacity * D,
          got_values.data() + h * capacity * D, scores.data(), got_out.data() + h * D, D, capacity, first, position,
          0.3f};
      run_block<double>(4, 4, [&](const HostBlock& block, double* shared) {
        race::kernels::cuda::programs::softmax_decode_head(block, shared, head);
      });
    }
    EXPECT_LE(relative_rms(got_out, widen(out)), 1e-6);
    EXPECT_TRUE(race::test::bit_equal(got_keys, keys) && race::test::bit_equal(got_values, values));
  }
}

// With a bf16 y the row program computes the same fp32 y and rounds it: the fp32 program's y rounded to
// nearest even, bit for bit, and the same mean and rstd (which LayerNormRowsMatchCpuOps holds to CpuOps').
TEST(CudaOpsBlockPrograms, LayerNormRowsWithBf16YAreTheFp32RowsRounded) {
  std::mt19937_64 rng(23);
  const int64_t rows = 5, C = 37;
  const auto x = race::test::normal(rng, rows * C, 2.0, 3.0), w = race::test::normal(rng, C),
             b = race::test::normal(rng, C);
  std::vector<float> y(rows * C), mean(rows), rstd(rows), got_mean(rows), got_rstd(rows);
  std::vector<HostBf16> got_y(rows * C, HostBf16{0xFFFF});
  for (int64_t r = 0; r < rows; ++r)
    run_block<double>(kLanes, kLanes, [&](const HostBlock& block, double* shared) {
      race::kernels::cuda::programs::layernorm_forward_row(block, shared, y.data() + r * C, &mean[r], &rstd[r],
                                                           x.data() + r * C, w.data(), b.data(), C, 1e-5f);
      race::kernels::cuda::programs::layernorm_forward_row(block, shared, got_y.data() + r * C, &got_mean[r],
                                                           &got_rstd[r], x.data() + r * C, w.data(), b.data(), C,
                                                           1e-5f);
    });
  EXPECT_EQ(bits_of(got_y), to_bf16(y));
  EXPECT_TRUE(race::test::bit_equal(got_mean, mean));
  EXPECT_TRUE(race::test::bit_equal(got_rstd, rstd));
}

// The fused residual forward with a bf16 y: CpuOps' fp32 results (which the fp32 program matches bit for
// bit), y rounded to nearest even.
TEST(CudaOpsBlockPrograms, ResidualLayerNormRowsWithBf16YAreCpuOpsRounded) {
  std::mt19937_64 rng(24);
  const int64_t rows = 4, C = 45;
  const auto x = race::test::normal(rng, rows * C, 2.0, 1.0), r = race::test::normal(rng, rows * C, 3.0),
             w = race::test::normal(rng, C), b = race::test::normal(rng, C);
  CpuOps cpu;
  std::vector<float> sum(rows * C), y(rows * C), mean(rows), rstd(rows);
  cpu.residual_layernorm_forward(sum.data(), y.data(), mean.data(), rstd.data(), x.data(), r.data(), w.data(),
                                 b.data(), rows, C, 1e-5f);
  std::vector<float> stream = x, got_mean(rows), got_rstd(rows);
  std::vector<HostBf16> got_y(rows * C, HostBf16{0xFFFF});
  for (int64_t row = 0; row < rows; ++row)
    run_block<double>(kLanes, kLanes, [&](const HostBlock& block, double* shared) {
      race::kernels::cuda::programs::residual_layernorm_forward_row(
          block, shared, stream.data() + row * C, got_y.data() + row * C, &got_mean[row], &got_rstd[row],
          stream.data() + row * C, r.data() + row * C, w.data(), b.data(), C, 1e-5f);
    });
  EXPECT_TRUE(race::test::bit_equal(stream, sum));
  EXPECT_EQ(bits_of(got_y), to_bf16(y));
  EXPECT_TRUE(race::test::bit_equal(got_mean, mean));
  EXPECT_TRUE(race::test::bit_equal(got_rstd, rstd));
}

// A bf16 dlogits: the fp32 program's gradient rounded to nearest even (zero rows for ignored targets), and
// the same losses.
TEST(CudaOpsBlockPrograms, CrossEntropyRowsWithBf16DlogitsAreTheFp32RowsRounded) {
  std::mt19937_64 rng(25);
  const int64_t rows = 7, V = 53;
  const std::vector<int32_t> targets = {3, -1, 52, 0, 17, -1, 9};
  const auto logits = race::test::normal(rng, rows * V, 4.0);
  std::vector<float> want(rows * V, 5.f);
  std::vector<HostBf16> got(rows * V, HostBf16{0xFFFF});
  std::vector<double> want_loss(rows), got_loss(rows);
  for (int64_t r = 0; r < rows; ++r)
    run_block<double>(kLanes, kLanes, [&](const HostBlock& block, double* shared) {
      const double loss = race::kernels::cuda::programs::cross_entropy_row(
          block, shared, want.data() + r * V, logits.data() + r * V, targets[r], V, 0.25f);
      const double again = race::kernels::cuda::programs::cross_entropy_row(
          block, shared, got.data() + r * V, logits.data() + r * V, targets[r], V, 0.25f);
      if (block.lane() == 0) want_loss[r] = loss, got_loss[r] = again;
    });
  EXPECT_EQ(bits_of(got), to_bf16(want));
  EXPECT_EQ(got_loss, want_loss);
  EXPECT_EQ(got[V].bits, 0u);  // row 1 is ignored: +0
}

TEST(CudaOps, MixedOperandsMessageNamesEveryOperandType) {
  const float fp32[2] = {};
  const uint16_t bf16[2] = {};
  const Operand a(fp32), b(bf16, ElementType::bf16);
  const std::string message = race::model::mixed_operands_message("linear_backward", {{"dy", b}, {"x", a}, {"w", b}});
  EXPECT_TRUE(race::test::contains(message, "linear_backward (CUDA)")) << message;
  EXPECT_TRUE(race::test::contains(message, "dy is bf16, x is fp32, w is bf16")) << message;
  EXPECT_TRUE(race::test::contains(message, "hint: ")) << message;
  EXPECT_EQ(race::model::mixed_operands_message("linear_forward", {{"x", b}, {"w", b}}), "");
  EXPECT_EQ(race::model::mixed_operands_message("linear_forward", {{"x", a}, {"w", a}}), "");
  // x unread (null): not compared
  EXPECT_EQ(race::model::mixed_operands_message("linear_backward",
                                                {{"dy", b}, {"x", Operand(nullptr, ElementType::fp32)}, {"w", b}}),
            "");
}

TEST(CudaOps, OutOfMemoryMessageNamesTheRequestAndTheDevice) {
  const std::string message =
      race::model::device_out_of_memory_message(int64_t{3} << 30, int64_t{1} << 30, int64_t{80} << 30);
  EXPECT_TRUE(race::test::contains(message, "3221225472 bytes (3072.0 MiB)")) << message;
  EXPECT_TRUE(race::test::contains(message, "1024.0 MiB free of 81920.0 MiB")) << message;
  EXPECT_TRUE(race::test::contains(message, "reduce the batch size")) << message;
}

TEST(CudaOps, WithoutADeviceConstructionIsAnError) {
  if (have_device()) GTEST_SKIP() << "a CUDA device is present";
  race::test::expect_error([] { CudaOps ops; }, "no usable CUDA device");
}

// ---- device: CudaOps against CpuOps ----

class CudaOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_device()) GTEST_SKIP() << "no CUDA device";
    gpu_ = std::make_unique<CudaOps>();
  }

  // The same host data in a buffer of each backend.
  struct Floats {
    float* cpu;
    float* gpu;
    int64_t n;
  };
  Floats floats(const std::vector<float>& host) {
    const auto n = static_cast<int64_t>(host.size());
    Floats f{cpu_.allocate(n), gpu_->allocate(n), n};
    cpu_.copy_from_host(f.cpu, host.data(), n);
    gpu_->copy_from_host(f.gpu, host.data(), n);
    return f;
  }
  Floats random(int64_t n, double scale = 1.0) { return floats(race::test::normal(rng_, n, scale)); }
  Floats zeros(int64_t n) { return floats(std::vector<float>(static_cast<size_t>(n), 0.f)); }
  struct Ints {
    int32_t* cpu;
    int32_t* gpu;
  };
  Ints ints(const std::vector<int32_t>& host) {
    const auto n = static_cast<int64_t>(host.size());
    Ints i{cpu_.allocate_ints(n), gpu_->allocate_ints(n)};
    cpu_.copy_ints_from_host(i.cpu, host.data(), n);
    gpu_->copy_ints_from_host(i.gpu, host.data(), n);
    return i;
  }
  struct Bytes {
    uint8_t* cpu;
    uint8_t* gpu;
  };
  Bytes bytes(const std::vector<uint8_t>& host) {
    const auto n = static_cast<int64_t>(host.size());
    Bytes b{cpu_.allocate_bytes(n), gpu_->allocate_bytes(n)};
    cpu_.copy_bytes_from_host(b.cpu, host.data(), n);
    gpu_->copy_bytes_from_host(b.gpu, host.data(), n);
    return b;
  }
  std::vector<float> gpu_values(const Floats& f) {
    std::vector<float> out(static_cast<size_t>(f.n));
    gpu_->copy_to_host(out.data(), f.gpu, f.n);
    return out;
  }
  std::vector<float> cpu_values(const Floats& f) { return {f.cpu, f.cpu + f.n}; }
  double error(const Floats& f) { return relative_rms(gpu_values(f), widen(cpu_values(f))); }
  bool identical(const Floats& f) { return race::test::bit_equal(gpu_values(f), cpu_values(f)); }

  // Host values rounded to bf16 (to nearest even, kernels::cuda::to_bf16): on the device as a bf16 operand,
  // and widened back to fp32 in a CpuOps buffer, so both backends compute on the very same values.
  struct Bf16s {
    float* cpu;
    OperandOut gpu;
    int64_t n;
  };
  Bf16s bf16s(const std::vector<float>& host) {
    const auto n = static_cast<int64_t>(host.size());
    const std::vector<uint16_t> bits = to_bf16(host);
    const std::vector<float> values = from_bf16(bits);
    Bf16s b{cpu_.allocate(n), {gpu_->allocate_bytes(2 * n), ElementType::bf16}, n};
    cpu_.copy_from_host(b.cpu, values.data(), n);
    EXPECT_EQ(cudaMemcpy(b.gpu.data, bits.data(), 2 * bits.size(), cudaMemcpyHostToDevice), cudaSuccess);
    return b;
  }
  Bf16s random_bf16s(int64_t n, double scale = 1.0) { return bf16s(race::test::normal(rng_, n, scale)); }
  // n bf16 elements (not yet written: 0xFFFF, a NaN, so an element a kernel misses shows) on the device.
  OperandOut bf16_out(int64_t n) {
    const OperandOut out{gpu_->allocate_bytes(2 * n), ElementType::bf16};
    EXPECT_EQ(cudaMemset(out.data, 0xFF, static_cast<size_t>(2 * n)), cudaSuccess);
    return out;
  }
  static std::vector<uint16_t> bits_at(const void* device, int64_t n) {
    std::vector<uint16_t> bits(static_cast<size_t>(n));
    EXPECT_EQ(cudaMemcpy(bits.data(), device, 2 * bits.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    return bits;
  }

  std::mt19937_64 rng_{42};
  CpuOps cpu_;
  std::unique_ptr<CudaOps> gpu_;
};

TEST_F(CudaOpsTest, ElementwiseOps) {
  const int64_t n = 1000003;  // not a multiple of the 256-thread blocks
  auto x = random(n, 2.0), dy = random(n), y = zeros(n), dx = random(n);
  cpu_.fill(y.cpu, 0.25f, n);
  gpu_->fill(y.gpu, 0.25f, n);
  EXPECT_TRUE(identical(y));
  cpu_.add(y.cpu, x.cpu, n);
  gpu_->add(y.gpu, x.gpu, n);
  EXPECT_TRUE(identical(y));
  cpu_.gelu_forward(y.cpu, x.cpu, n);
  gpu_->gelu_forward(y.gpu, x.gpu, n);
  EXPECT_LE(error(y), 1e-6);
  cpu_.gelu_backward(dx.cpu, dy.cpu, x.cpu, n);
  gpu_->gelu_backward(dx.gpu, dy.gpu, x.gpu, n);
  EXPECT_LE(error(dx), 1e-6);
  cpu_.exp_forward(y.cpu, x.cpu, n);
  gpu_->exp_forward(y.gpu, x.gpu, n);
  EXPECT_LE(error(y), 1e-6);
  cpu_.exp_backward(dx.cpu, dy.cpu, y.cpu, n);
  gpu_->exp_backward(dx.gpu, dy.gpu, y.gpu, n);
  EXPECT_LE(error(dx), 1e-6);
  cpu_.dropout(x.cpu, x.cpu, n, 0.2f, 99);  // in place
  gpu_->dropout(x.gpu, x.gpu, n, 0.2f, 99);
  EXPECT_TRUE(identical(x));
}

// Shapes that are not multiples of cuBLASLt's tiles, a single row, many rows (db's column sums over 274
// chunks), and buffers offset by one float (4-byte alignment, so the heuristic must pick algorithms that
// allow it, and a bias too misaligned for the epilogue is added before the product); every optional pointer
// null in turn; dW and db accumulated onto random values; the same
// backward twice is bit-identical (one algorithm per shape, no reduction in the output buffer, db's sums in
// a fixed order).
TEST_F(CudaOpsTest, Linear) {
  struct Shape {
    int64_t rows, in, out;
  };
  for (const Shape s : {Shape{37, 45, 70}, Shape{1, 13, 5}, Shape{1, 768, 2304}, Shape{4099, 33, 17},
                        Shape{9, 1, 1}, Shape{70001, 8, 257}}) {
    SCOPED_TRACE(testing::Message() << "rows " << s.rows << " in " << s.in << " out " << s.out);
    const int64_t rows = s.rows, in = s.in, out = s.out;
    auto x = random(rows * in + 1);                                            // (N * in + 1)
    auto w = random(out * in, 0.2), b = random(out + 1);  // (out, in), (out + 1)
    auto dy = random(rows * out);                          // (N, out)
    auto y = zeros(rows * out), dx = zeros(rows * in);                         // (N, out), (N, in)
    auto dw = random(out * in), db = random(out);             // (out, in), (out): accumulated into
    const auto x1 = Floats{x.cpu + 1, x.gpu + 1, rows * in};  // (N, in), 4-byte aligned
    // The bias aligned (the epilogue) and 4-byte aligned (added before the product).
    for (const int64_t bias_offset : {int64_t{-1}, int64_t{0}, int64_t{1}}) {
      const bool with_bias = bias_offset >= 0;
      cpu_.linear_forward(y.cpu, x1.cpu, w.cpu, with_bias ? b.cpu + bias_offset : nullptr, rows, in, out);
      gpu_->linear_forward(y.gpu, x1.gpu, w.gpu, with_bias ? b.gpu + bias_offset : nullptr, rows, in, out);
      EXPECT_LE(error(y), 1e-5) << "bias offset " << bias_offset;
    }
    cpu_.linear_backward(dx.cpu, dw.cpu, db.cpu, dy.cpu, x1.cpu, w.cpu, rows, in, out);
    gpu_->linear_backward(dx.gpu, dw.gpu, db.gpu, dy.gpu, x1.gpu, w.gpu, rows, in, out);
    EXPECT_LE(error(dx), 1e-5);
    EXPECT_LE(error(dw), 1e-5);  // accumulated onto random values
    EXPECT_LE(error(db), 1e-5);
    cpu_.linear_backward(nullptr, dw.cpu, nullptr, dy.cpu, x1.cpu, w.cpu, rows, in, out);
    gpu_->linear_backward(nullptr, dw.gpu, nullptr, dy.gpu, x1.gpu, w.gpu, rows, in, out);
    EXPECT_LE(error(dw), 1e-5);
    cpu_.linear_backward(dx.cpu, nullptr, db.cpu, dy.cpu, nullptr, w.cpu, rows, in, out);  // x unused
    gpu_->linear_backward(dx.gpu, nullptr, db.gpu, dy.gpu, nullptr, w.gpu, rows, in, out);
    EXPECT_LE(error(dx), 1e-5);
    EXPECT_LE(error(db), 1e-5);
    cpu_.linear_backward(nullptr, nullptr, db.cpu, dy.cpu, nullptr, nullptr, rows, in, out);
    gpu_->linear_backward(nullptr, nullptr, db.gpu, dy.gpu, nullptr, nullptr, rows, in, out);
    EXPECT_LE(error(db), 1e-5);
    // The same accumulation twice from the same start: the same bits.
    const auto start = race::test::normal(rng_, out * in), bias_start = race::test::normal(rng_, out);
    auto first = floats(start), second = floats(start);                  // (out, in) each
    auto first_db = floats(bias_start), second_db = floats(bias_start);  // (out) each
    gpu_->linear_backward(nullptr, first.gpu, first_db.gpu, dy.gpu, x1.gpu, w.gpu, rows, in, out);
    gpu_->linear_backward(nullptr, second.gpu, second_db.gpu, dy.gpu, x1.gpu, w.gpu, rows, in, out);
    EXPECT_TRUE(race::test::bit_equal(gpu_values(first), gpu_values(second)));
    EXPECT_TRUE(race::test::bit_equal(gpu_values(first_db), gpu_values(second_db)));
  }
  race::test::expect_error([&] { gpu_->linear_forward(nullptr, nullptr, nullptr, nullptr, 2, 0, 3); },
                           "linear_forward (CUDA): rows = 2, in = 0, out = 3");
  race::test::expect_error([&] { gpu_->linear_forward(nullptr, nullptr, nullptr, nullptr, 2, 3, 3); },
                           "must not be null");
}

// bf16 products: within bf16 rounding of the CPU's fp32 (relative RMS 1e-2 where an operand's rounding is
// 2^-9), and measurably not fp32 (at least 1e-5 off, where fp32 products agree to about 1e-7): a precision
// that was asked for but not applied fails here. cuBLASLt may pick TF32 instead (about 3e-4 off), which
// passes too. Every leading dimension is a multiple of 16 bytes, as the tensor-core kernels need; with
// others cuBLASLt may fall back to fp32 kernels, which is correct but not what this test looks for.
TEST_F(CudaOpsTest, LinearInBf16RoundsTheOperands) {
  gpu_ = std::make_unique<CudaOps>(0, race::kernels::cuda::GemmPrecision::bf16);
  const int64_t rows = 4099, in = 768, out = 260;
  auto x = random(rows * in), w = random(out * in, 0.05), b = random(out);  // (N, in), (out, in), (out)
  auto dy = random(rows * out);                                             // (N, out)
  auto y = zeros(rows * out), dx = zeros(rows * in), dw = zeros(out * in), db = zeros(out);
  cpu_.linear_forward(y.cpu, x.cpu, w.cpu, b.cpu, rows, in, out);
  gpu_->linear_forward(y.gpu, x.gpu, w.gpu, b.gpu, rows, in, out);
  cpu_.linear_backward(dx.cpu, dw.cpu, db.cpu, dy.cpu, x.cpu, w.cpu, rows, in, out);
  gpu_->linear_backward(dx.gpu, dw.gpu, db.gpu, dy.gpu, x.gpu, w.gpu, rows, in, out);
  for (const auto& [name, f] : {std::pair{"y", y}, std::pair{"dx", dx}, std::pair{"dw", dw}}) {
    EXPECT_LE(error(f), 1e-2) << name;
    EXPECT_GE(error(f), 1e-5) << name << ": no reduced-precision (bf16 or TF32) rounding shows";
  }
  EXPECT_LE(error(db), 1e-5);  // a column sum of dy, not a product: fp32 either way
}

// Also many rows (the parameter gradients' column sums over 274 chunks), and the same backward twice from
// the same start gives the same bits.
TEST_F(CudaOpsTest, LayerNorm) {
  struct Shape {
    int64_t rows, C;
  };
  for (const Shape s : {Shape{33, 300}, Shape{70001, 257}}) {
    SCOPED_TRACE(testing::Message() << "rows " << s.rows << " channels " << s.C);
    const int64_t rows = s.rows, C = s.C;
    auto x = random(rows * C, 3.0), w = random(C), b = random(C), dy = random(rows * C);  // (N, C), (C), (C)
    auto y = zeros(rows * C), mean = zeros(rows), rstd = zeros(rows), dx = random(rows * C), dw = random(C),
         db = random(C);
    for (bool affine : {false, true}) {
      cpu_.layernorm_forward(y.cpu, mean.cpu, rstd.cpu, x.cpu, affine ? w.cpu : nullptr,
                             affine ? b.cpu : nullptr, rows, C, 1e-5f);
      gpu_->layernorm_forward(y.gpu, mean.gpu, rstd.gpu, x.gpu, affine ? w.gpu : nullptr,
                              affine ? b.gpu : nullptr, rows, C, 1e-5f);
      EXPECT_LE(error(y), 1e-6);
      EXPECT_LE(error(mean), 1e-6);
      EXPECT_LE(error(rstd), 1e-6);
      cpu_.layernorm_backward(dx.cpu, dw.cpu, db.cpu, dy.cpu, x.cpu, affine ? w.cpu : nullptr, mean.cpu,
                              rstd.cpu, rows, C);
      gpu_->layernorm_backward(dx.gpu, dw.gpu, db.gpu, dy.gpu, x.gpu, affine ? w.gpu : nullptr, mean.gpu,
                               rstd.gpu, rows, C);
      EXPECT_LE(error(dx), 1e-5);
      EXPECT_LE(error(dw), 1e-5);
      EXPECT_LE(error(db), 1e-5);
    }
    cpu_.layernorm_backward(dx.cpu, nullptr, db.cpu, dy.cpu, x.cpu, w.cpu, mean.cpu, rstd.cpu, rows, C);
    gpu_->layernorm_backward(dx.gpu, nullptr, db.gpu, dy.gpu, x.gpu, w.gpu, mean.gpu, rstd.gpu, rows, C);
    EXPECT_LE(error(db), 1e-5);  // dbias alone: dy's column sum
    // Fused with the residual add, in place on the stream (x) as the model calls it.
    auto r = random(rows * C);
    cpu_.residual_layernorm_forward(x.cpu, y.cpu, mean.cpu, rstd.cpu, x.cpu, r.cpu, w.cpu, b.cpu, rows, C, 1e-5f);
    gpu_->residual_layernorm_forward(x.gpu, y.gpu, mean.gpu, rstd.gpu, x.gpu, r.gpu, w.gpu, b.gpu, rows, C, 1e-5f);
    EXPECT_LE(error(x), 1e-7);
    EXPECT_LE(error(y), 1e-6);
    EXPECT_LE(error(mean), 1e-6);
    EXPECT_LE(error(rstd), 1e-6);
    const auto dx_start = race::test::normal(rng_, rows * C), param_start = race::test::normal(rng_, C);
    auto dx1 = floats(dx_start), dx2 = floats(dx_start);  // (N, C) each
    auto dw1 = floats(param_start), dw2 = floats(param_start), db1 = floats(param_start),
         db2 = floats(param_start);  // (C) each
    gpu_->layernorm_backward(dx1.gpu, dw1.gpu, db1.gpu, dy.gpu, x.gpu, w.gpu, mean.gpu, rstd.gpu, rows, C);
    gpu_->layernorm_backward(dx2.gpu, dw2.gpu, db2.gpu, dy.gpu, x.gpu, w.gpu, mean.gpu, rstd.gpu, rows, C);
    EXPECT_TRUE(race::test::bit_equal(gpu_values(dx1), gpu_values(dx2)));
    EXPECT_TRUE(race::test::bit_equal(gpu_values(dw1), gpu_values(dw2)));
    EXPECT_TRUE(race::test::bit_equal(gpu_values(db1), gpu_values(db2)));
  }
}

TEST_F(CudaOpsTest, EmbeddingWithRepeatedIds) {
  const int64_t n = 301, V = 17, C = 270;
  std::vector<int32_t> host_ids(n);
  for (int64_t i = 0; i < n; ++i) host_ids[i] = static_cast<int32_t>((i * 7) % V);
  auto ids = ints(host_ids);
  auto table = random(V * C), out = random(n * C), dout = random(n * C), dtable = random(V * C);
  for (bool accumulate : {true, false}) {
    cpu_.embedding_forward(out.cpu, ids.cpu, table.cpu, n, V, C, accumulate);
    gpu_->embedding_forward(out.gpu, ids.gpu, table.gpu, n, V, C, accumulate);
    EXPECT_TRUE(identical(out));
  }
  cpu_.embedding_backward(dtable.cpu, ids.cpu, dout.cpu, n, V, C);
  gpu_->embedding_backward(dtable.gpu, ids.gpu, dout.gpu, n, V, C);
  EXPECT_TRUE(identical(dtable));  // every row gets its updates in the CPU's order
  host_ids[123] = static_cast<int32_t>(V);
  auto bad = ints(host_ids);
  race::test::expect_error([&] { gpu_->embedding_forward(out.gpu, bad.gpu, table.gpu, n, V, C, false); },
                           "id 17 at position 123");
}

TEST_F(CudaOpsTest, CrossEntropyWithIgnoredTargets) {
  const int64_t rows = 29, V = 1001;
  std::vector<int32_t> host_targets(rows);
  for (int64_t i = 0; i < rows; ++i) host_targets[i] = i % 4 == 1 ? -1 : static_cast<int32_t>((i * 37) % V);
  auto targets = ints(host_targets);
  auto logits = random(rows * V, 3.0), dlogits = random(rows * V);
  int64_t cpu_count = 0, gpu_count = 0;
  const double cpu_loss = cpu_.cross_entropy(dlogits.cpu, logits.cpu, targets.cpu, rows, V, 0.1f, &cpu_count);
  const double gpu_loss = gpu_->cross_entropy(dlogits.gpu, logits.gpu, targets.gpu, rows, V, 0.1f, &gpu_count);
  EXPECT_EQ(gpu_count, cpu_count);
  EXPECT_EQ(gpu_count, 22);
  EXPECT_NEAR(gpu_loss, cpu_loss, 1e-6 * std::fabs(cpu_loss));
  EXPECT_LE(error(dlogits), 1e-5);
  // No gradient (evaluation), then in place (dlogits = logits).
  EXPECT_NEAR(gpu_->cross_entropy(nullptr, logits.gpu, targets.gpu, rows, V, 1.f, &gpu_count), cpu_loss,
              1e-6 * std::fabs(cpu_loss));
  cpu_.cross_entropy(logits.cpu, logits.cpu, targets.cpu, rows, V, 1.f, &cpu_count);
  gpu_->cross_entropy(logits.gpu, logits.gpu, targets.gpu, rows, V, 1.f, &gpu_count);
  EXPECT_LE(error(logits), 1e-5);
  host_targets[5] = -2;
  auto bad = ints(host_targets);
  race::test::expect_error([&] { gpu_->cross_entropy(nullptr, logits.gpu, bad.gpu, rows, V, 1.f, &gpu_count); },
                           "target -2 at position 5");
}

TEST_F(CudaOpsTest, HeadLayoutsAreExactMoves) {
  const int64_t B = 2, T = 13, H = 3, D = 5, C = H * D;
  auto qkv = random(B * T * 3 * C), q = zeros(B * H * T * D), k = zeros(B * H * T * D), v = zeros(B * H * T * D);
  auto merged = zeros(B * T * 3 * C), rows = zeros(B * T * C), heads = zeros(B * H * T * D);
  cpu_.split_heads(q.cpu, k.cpu, v.cpu, qkv.cpu, B, T, H, D);
  gpu_->split_heads(q.gpu, k.gpu, v.gpu, qkv.gpu, B, T, H, D);
  EXPECT_TRUE(identical(q) && identical(k) && identical(v));
  cpu_.merge_heads(merged.cpu, q.cpu, k.cpu, v.cpu, B, T, H, D);
  gpu_->merge_heads(merged.gpu, q.gpu, k.gpu, v.gpu, B, T, H, D);
  EXPECT_TRUE(identical(merged));
  EXPECT_TRUE(race::test::bit_equal(gpu_values(merged), cpu_values(qkv)));
  cpu_.heads_to_rows(rows.cpu, k.cpu, B, T, H, D);
  gpu_->heads_to_rows(rows.gpu, k.gpu, B, T, H, D);
  EXPECT_TRUE(identical(rows));
  cpu_.rows_to_heads(heads.cpu, rows.cpu, B, T, H, D);
  gpu_->rows_to_heads(heads.gpu, rows.gpu, B, T, H, D);
  EXPECT_TRUE(identical(heads));
}

TEST_F(CudaOpsTest, RopeWithAndWithoutPositions) {
  const int64_t B = 2, H = 3, T = 37, D = 10;
  std::vector<int32_t> host_positions(B * T);
  for (int64_t i = 0; i < B * T; ++i) host_positions[i] = static_cast<int32_t>((i % 11) * 90001);
  auto positions = ints(host_positions);
  auto x = random(B * H * T * D), out = zeros(B * H * T * D);
  for (bool given : {false, true}) {
    cpu_.rope_forward(out.cpu, x.cpu, given ? positions.cpu : nullptr, B, H, T, D, 10000.f);
    gpu_->rope_forward(out.gpu, x.gpu, given ? positions.gpu : nullptr, B, H, T, D, 10000.f);
    EXPECT_LE(error(out), 1e-6);
    cpu_.rope_backward(out.cpu, out.cpu, given ? positions.cpu : nullptr, B, H, T, D, 10000.f);  // in place
    gpu_->rope_backward(out.gpu, out.gpu, given ? positions.gpu : nullptr, B, H, T, D, 10000.f);
    EXPECT_LE(error(out), 1e-6);
  }
  host_positions[40] = -3;
  auto bad = ints(host_positions);
  race::test::expect_error([&] { gpu_->rope_forward(out.gpu, x.gpu, bad.gpu, B, H, T, D, 10000.f); },
                           "position -3 at position 40");
  race::test::expect_error([&] { gpu_->rope_forward(out.gpu, x.gpu, nullptr, B, H, T, 7, 10000.f); },
                           "head_dim = 7");
}

TEST_F(CudaOpsTest, RaceAndSoftmaxAttentionForwardAndBackward) {
  const int64_t B = 2, H = 3, T = 37, D = 16;
  race::kernels::RaceAttentionShape shape{B, H, T, D, 2, 3, true};
  std::vector<uint8_t> host_mask(B * T, 1);
  host_mask[B * T - 1] = host_mask[B * T - 2] = 0;
  auto mask = bytes(host_mask);
  auto q = random(B * H * T * D), k = random(B * H * T * D), v = random(B * H * T * D);
  auto planes = random(H * 2 * 3 * D), beta = floats({0.6f, 1.f, 1.4f}), dout = random(B * H * T * D);
  auto out = zeros(B * H * T * D), dq = zeros(B * H * T * D), dk = zeros(B * H * T * D),
       dv = zeros(B * H * T * D), dbeta = zeros(H), lse = zeros(B * H * T);
  for (auto estimator : {race::kernels::RaceEstimator::bucket, race::kernels::RaceEstimator::ratio}) {
    race::kernels::RaceAttentionOptions options;
    options.estimator = estimator;
    cpu_.race_attention_forward(shape, options, {q.cpu, k.cpu, v.cpu, planes.cpu, beta.cpu, mask.cpu, nullptr},
                                out.cpu);
    gpu_->race_attention_forward(shape, options, {q.gpu, k.gpu, v.gpu, planes.gpu, beta.gpu, mask.gpu, nullptr},
                                 out.gpu);
    EXPECT_LE(error(out), 1e-4);
    cpu_.race_attention_backward(shape, options, {q.cpu, k.cpu, v.cpu, planes.cpu, beta.cpu, mask.cpu, nullptr},
                                 dout.cpu, {dq.cpu, dk.cpu, dv.cpu, dbeta.cpu});
    gpu_->race_attention_backward(shape, options, {q.gpu, k.gpu, v.gpu, planes.gpu, beta.gpu, mask.gpu, nullptr},
                                  dout.gpu, {dq.gpu, dk.gpu, dv.gpu, dbeta.gpu});
    EXPECT_LE(error(dq), 1e-4);
    EXPECT_LE(error(dk), 1e-4);
    EXPECT_LE(error(dv), 1e-4);
    EXPECT_LE(error(dbeta), 1e-4);
  }
  for (int64_t window : {0, 5}) {
    const race::kernels::SoftmaxAttentionShape s{B, H, T, D};
    const race::kernels::SoftmaxAttentionOptions options{true, window, 0.f};
    cpu_.softmax_attention_forward(s, options, {q.cpu, k.cpu, v.cpu, mask.cpu, nullptr}, out.cpu, lse.cpu);
    gpu_->softmax_attention_forward(s, options, {q.gpu, k.gpu, v.gpu, mask.gpu, nullptr}, out.gpu, lse.gpu);
    EXPECT_LE(error(out), 1e-4);
    EXPECT_LE(error(lse), 1e-5);
    cpu_.softmax_attention_backward(s, options, {q.cpu, k.cpu, v.cpu, mask.cpu, nullptr}, out.cpu, lse.cpu,
                                    dout.cpu, {dq.cpu, dk.cpu, dv.cpu});
    gpu_->softmax_attention_backward(s, options, {q.gpu, k.gpu, v.gpu, mask.gpu, nullptr}, out.gpu, lse.gpu,
                                     dout.gpu, {dq.gpu, dk.gpu, dv.gpu});
    EXPECT_LE(error(dq), 1e-4);
    EXPECT_LE(error(dk), 1e-4);
    EXPECT_LE(error(dv), 1e-4);
    gpu_->softmax_attention_forward(s, options, {q.gpu, k.gpu, v.gpu, mask.gpu, nullptr}, out.gpu, nullptr);
    EXPECT_LE(error(out), 1e-4);  // without lse
  }
}

TEST_F(CudaOpsTest, DecodingFiveTokens) {
  const int64_t H = 3, D = 16, steps = 5;
  race::kernels::RaceAttentionShape shape{1, H, 1, D, 2, 3, true};
  auto planes = random(H * 2 * 3 * D), beta = floats({0.6f, 1.f, 1.4f});
  const int64_t S = shape.buckets();
  auto key_sums = zeros(H * S), value_sums = zeros(H * S * D), out = zeros(H * D);
  const int64_t capacity = 3;  // a ring smaller than the sequence: window 3
  auto keys = zeros(H * capacity * D), values = zeros(H * capacity * D), full_keys = zeros(H * steps * D),
       full_values = zeros(H * steps * D);
  for (auto estimator : {race::kernels::RaceEstimator::bucket, race::kernels::RaceEstimator::ratio}) {
    race::kernels::RaceAttentionOptions options;
    options.estimator = estimator;
    for (int64_t t = 0; t < steps; ++t) {
      auto q = random(H * D), k = random(H * D), v = random(H * D);
      cpu_.race_attention_decode(shape, options, q.cpu, k.cpu, v.cpu, planes.cpu, beta.cpu, key_sums.cpu,
                                 value_sums.cpu, out.cpu);
      gpu_->race_attention_decode(shape, options, q.gpu, k.gpu, v.gpu, planes.gpu, beta.gpu, key_sums.gpu,
                                  value_sums.gpu, out.gpu);
      EXPECT_LE(error(out), 1e-5);
      EXPECT_LE(error(key_sums), 1e-5);
      EXPECT_LE(error(value_sums), 1e-5);
    }
  }
  for (int64_t t = 0; t < steps; ++t) {
    auto q = random(H * D), k = random(H * D), v = random(H * D);
    cpu_.softmax_attention_decode(H, D, 3, 0.25f, q.cpu, k.cpu, v.cpu, keys.cpu, values.cpu, capacity, t, out.cpu);
    gpu_->softmax_attention_decode(H, D, 3, 0.25f, q.gpu, k.gpu, v.gpu, keys.gpu, values.gpu, capacity, t, out.gpu);
    EXPECT_LE(error(out), 1e-5);
    EXPECT_TRUE(identical(keys) && identical(values));
    cpu_.softmax_attention_decode(H, D, 0, 0.25f, q.cpu, k.cpu, v.cpu, full_keys.cpu, full_values.cpu, steps, t,
                                  out.cpu);
    gpu_->softmax_attention_decode(H, D, 0, 0.25f, q.gpu, k.gpu, v.gpu, full_keys.gpu, full_values.gpu, steps, t,
                                   out.gpu);
    EXPECT_LE(error(out), 1e-5);
  }
  race::test::expect_error(
      [&] {
        gpu_->softmax_attention_decode(H, D, 0, 0.25f, out.gpu, out.gpu, out.gpu, keys.gpu, values.gpu, capacity,
                                       capacity, out.gpu);
      },
      "cannot hold position 3");
}

TEST_F(CudaOpsTest, PoolingMeanAndCls) {
  const int64_t B = 3, T = 11, C = 300;
  std::vector<uint8_t> host_mask(B * T, 1);
  for (int64_t t = 0; t < T; ++t) host_mask[T + t] = t % 3 == 0;  // row 1: some tokens
  for (int64_t t = 0; t < T; ++t) host_mask[2 * T + t] = 0;       // row 2: none (pools to 0)
  auto mask = bytes(host_mask);
  auto rows = random(B * T * C), dpooled = random(B * C), pooled = zeros(B * C), drows = random(B * T * C);
  for (bool cls : {false, true})
    for (bool masked : {false, true}) {
      cpu_.pool_forward(pooled.cpu, rows.cpu, masked ? mask.cpu : nullptr, B, T, C, cls);
      gpu_->pool_forward(pooled.gpu, rows.gpu, masked ? mask.gpu : nullptr, B, T, C, cls);
      EXPECT_LE(error(pooled), 1e-6);
      cpu_.pool_backward(drows.cpu, dpooled.cpu, masked ? mask.cpu : nullptr, B, T, C, cls);
      gpu_->pool_backward(drows.gpu, dpooled.gpu, masked ? mask.gpu : nullptr, B, T, C, cls);
      EXPECT_LE(error(drows), 1e-6);
    }
}

TEST_F(CudaOpsTest, GradNormAndAdamW) {
  const int64_t n = 300007;
  auto params = random(n), m = zeros(n), v = zeros(n);
  // Tensors of odd sizes with gaps between them (left alone), an empty one, decay on some, and one range
  // of several chunks: one launch must update each as the CPU's per-range loop does.
  const std::vector<race::model::ParamRange> ranges = {
      {0, 1, true}, {5, 4097, false}, {4102, 0, true}, {4102, 9000, true}, {20000, 280007, false}};
  const double cpu_norm0 = cpu_.grad_norm(params.cpu, n);
  EXPECT_NEAR(gpu_->grad_norm(params.gpu, n), cpu_norm0, 1e-12 * cpu_norm0);
  EXPECT_EQ(gpu_->grad_norm(params.gpu, n), gpu_->grad_norm(params.gpu, n));  // same bits every run
  for (int64_t step = 1; step <= 10; ++step) {
    auto grads = random(n);
    race::model::AdamWStep adam;
    adam.lr = 1e-2f;
    adam.weight_decay = 0.1f;
    adam.step = step;
    adam.grad_scale = 0.7f;
    cpu_.adamw(params.cpu, grads.cpu, m.cpu, v.cpu, ranges, adam);
    gpu_->adamw(params.gpu, grads.gpu, m.gpu, v.gpu, ranges, adam);
  }
  EXPECT_LE(error(params), 1e-6);
  EXPECT_LE(error(m), 1e-6);
  EXPECT_LE(error(v), 1e-6);
  race::model::AdamWStep bad;
  bad.step = 0;
  race::test::expect_error([&] { gpu_->adamw(params.gpu, params.gpu, m.gpu, v.gpu, ranges, bad); }, "step = 0");

  // A range's copy (the model's bf16 product weights; fp32 too) receives the updated values rounded, in the
  // same launch: bit for bit the host's rounding of what the update left in params.
  const OperandOut bf16_copy = bf16_out(9000), fp32_copy = {gpu_->allocate(4097), ElementType::fp32};
  std::vector<race::model::ParamRange> with_copies = ranges;
  with_copies[1].copy = fp32_copy;
  with_copies[3].copy = bf16_copy;
  auto grads = random(n);
  race::model::AdamWStep adam;
  adam.lr = 1e-2f;
  adam.step = 11;
  gpu_->adamw(params.gpu, grads.gpu, m.gpu, v.gpu, with_copies, adam);
  const std::vector<float> updated = gpu_values(params);
  EXPECT_EQ(bits_at(bf16_copy.data, 9000), to_bf16({updated.begin() + 4102, updated.begin() + 13102}));
  std::vector<float> fp32_copied(4097);
  gpu_->copy_to_host(fp32_copied.data(), static_cast<const float*>(fp32_copy.data), 4097);
  EXPECT_EQ(fp32_copied, std::vector<float>(updated.begin() + 5, updated.begin() + 4102));
}

TEST_F(CudaOpsTest, OutOfMemoryIsAnErrorNamingTheRequest) {
  const int64_t floats = int64_t{1} << 45;  // 128 TiB
  const std::string message = race::test::error_of([&] { gpu_->allocate(floats); });
  EXPECT_TRUE(race::test::contains(message, "CUDA out of memory: could not allocate 140737488355328 bytes"))
      << message;
  float* after = gpu_->allocate(16);  // the device is still usable
  EXPECT_NE(after, nullptr);
}

// How close the CUDA run must stay to the host's: relative loss at every step, relative RMS of every
// gradient at step 1, relative RMS of the parameters after the 10 steps (< 0: not compared); at step 1, also
// the relative loss and the relative RMS of all gradients together (< 0: only the bounds above).
struct Agreement {
  double loss, gradients, parameters;
  double first_loss = -1.0, all_gradients = -1.0;
};

// A hybrid model (RACE with learned beta, windowed softmax, RoPE, tied embeddings) on a host reference and on
// the GPU from the same initialisation and batch: the loss, every gradient, then 10 AdamW steps through
// Gpt::adamw with a range per tensor, as race-train updates (so bf16 weight copies are written by AdamW).
void train_tiny_gpt_on_both(race::model::Ops& cpu, CudaOps& gpu, const Agreement& within) {
  using race::model::AttentionKind;
  race::model::ModelSpec spec;
  spec.vocab_size = 61;
  spec.max_seq_len = 32;
  spec.d_model = 32;
  spec.heads = 2;
  spec.mlp_hidden = 40;
  spec.seed = 5;
  race::model::AttentionSpec race_layer, softmax_layer;
  race_layer.kind = AttentionKind::race;
  race_layer.tables = 2;
  race_layer.bits = 3;
  race_layer.learned_beta = true;
  softmax_layer.kind = AttentionKind::softmax;
  softmax_layer.window = 6;
  spec.layers = {race_layer, softmax_layer};
  const int64_t B = 2, T = 19;
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    tokens[i] = static_cast<int32_t>((i * 13 + 5) % spec.vocab_size);
    targets[i] = i % 5 == 2 ? -1 : static_cast<int32_t>((i * 29 + 1) % spec.vocab_size);
  }
  race::model::Batch batch;
  batch.tokens = tokens.data();
  batch.targets = targets.data();
  race::model::Gpt cpu_model(cpu, spec, B, T), gpu_model(gpu, spec, B, T);
  cpu_model.initialize();
  gpu_model.initialize();
  const int64_t n = cpu_model.parameter_count();
  float* cpu_m = cpu.allocate(n);
  float* cpu_v = cpu.allocate(n);
  float* gpu_m = gpu.allocate(n);
  float* gpu_v = gpu.allocate(n);
  std::vector<float> gpu_host(static_cast<size_t>(n));
  for (int64_t step = 1; step <= 10; ++step) {
    cpu_model.zero_gradients();
    gpu_model.zero_gradients();
    const auto cpu_loss = cpu_model.forward_backward(batch, 1.f / 30.f);
    const auto gpu_loss = gpu_model.forward_backward(batch, 1.f / 30.f);
    ASSERT_EQ(gpu_loss.count, cpu_loss.count);
    EXPECT_NEAR(gpu_loss.sum, cpu_loss.sum, within.loss * std::fabs(cpu_loss.sum)) << "step " << step;
    if (step == 1) {
      if (within.first_loss >= 0) {
        EXPECT_NEAR(gpu_loss.sum, cpu_loss.sum, within.first_loss * std::fabs(cpu_loss.sum));
      }
      gpu.copy_to_host(gpu_host.data(), gpu_model.gradients(), n);
      if (within.all_gradients >= 0) {
        const std::vector<float> want(cpu_model.gradients(), cpu_model.gradients() + n);
        EXPECT_LE(relative_rms(gpu_host, widen(want)), within.all_gradients);
      }
      for (const auto& p : cpu_model.params()) {
        const std::vector<float> got(gpu_host.begin() + p.offset, gpu_host.begin() + p.offset + p.size);
        const std::vector<float> want(cpu_model.gradients() + p.offset, cpu_model.gradients() + p.offset + p.size);
        EXPECT_LE(relative_rms(got, widen(want)), within.gradients) << p.name;
      }
    }
    race::model::AdamWStep adam;
    adam.lr = 1e-2f;
    adam.step = step;
    adam.weight_decay = 0.1f;
    const auto ranges = race::model::adamw_ranges(cpu_model.params(), [](const auto& p) { return p.weight_decay; });
    cpu_model.adamw(cpu_m, cpu_v, ranges, adam);
    gpu_model.adamw(gpu_m, gpu_v, ranges, adam);
  }
  if (within.parameters < 0) return;
  gpu.copy_to_host(gpu_host.data(), gpu_model.parameter_values(), n);
  const std::vector<float> cpu_params(cpu_model.parameter_values(), cpu_model.parameter_values() + n);
  EXPECT_LE(relative_rms(gpu_host, widen(cpu_params)), within.parameters);
}

// ---- device: bf16 product operands ----

// The rounding itself: the host's to_bf16 bit for bit, on normal draws and on ties (to even, both ways, both
// signs), the largest float (to infinity), infinities, subnormals and -0. NaNs are left out: the host keeps
// the payload and the device makes its canonical NaN. An fp32 target is a copy.
TEST_F(CudaOpsTest, ToOperandsRoundsToNearestEvenAsTheHost) {
  const uint32_t special_bits[] = {0x3F808000u, 0x3F818000u, 0xBF808000u, 0xBF818000u, 0x3F80FFFFu, 0x3F807FFFu,
                                   0x7F7FFFFFu, 0xFF7FFFFFu, 0x7F800000u, 0xFF800000u, 0x00008000u, 0x00018000u,
                                   0x00000001u, 0x80000000u, 0x00000000u};
  std::vector<float> host = race::test::normal(rng_, 100003, 10.0);
  for (const uint32_t bits : special_bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    host.push_back(f);
  }
  const auto n = static_cast<int64_t>(host.size());
  auto x = floats(host);
  CudaOps bf16(0, race::kernels::cuda::GemmPrecision::bf16);
  EXPECT_EQ(bf16.operand_type(), ElementType::bf16);
  const int64_t before = bf16.allocated_bytes();
  const OperandOut operands = bf16.allocate_operands(n);
  EXPECT_EQ(operands.type, ElementType::bf16);
  EXPECT_EQ(bf16.allocated_bytes() - before, 2 * n);
  EXPECT_EQ(bits_at(operands.data, n), std::vector<uint16_t>(static_cast<size_t>(n), 0));  // zero-filled
  float* x_there = bf16.allocate(n);
  bf16.copy_from_host(x_there, host.data(), n);
  bf16.to_operands(operands, x_there, n);
  EXPECT_EQ(bits_at(operands.data, n), to_bf16(host));
  race::test::expect_error([&] { bf16.to_operands(OperandOut{x_there, ElementType::bf16}, x_there, n); },
                           "overlaps");

  EXPECT_EQ(gpu_->operand_type(), ElementType::fp32);
  const OperandOut copies = gpu_->allocate_operands(n);
  EXPECT_EQ(copies.type, ElementType::fp32);
  gpu_->to_operands(copies, x.gpu, n);
  EXPECT_TRUE(race::test::bit_equal(gpu_values(Floats{nullptr, static_cast<float*>(copies.data), n}), host));
}

// Every typed output in bf16 against CpuOps' fp32 output rounded, on the fp32 inputs of the fp32 tests.
TEST_F(CudaOpsTest, Bf16OutputsAreCpuOpsRounded) {
  const int64_t rows = 67, C = 300, n = rows * C;
  auto x = random(n, 3.0), w = random(C), b = random(C), r = random(n), dy = random(n);
  auto y = zeros(n), mean = zeros(rows), rstd = zeros(rows), residual = zeros(n);
  const OperandOut y16 = bf16_out(n);
  cpu_.layernorm_forward(y.cpu, mean.cpu, rstd.cpu, x.cpu, w.cpu, b.cpu, rows, C, 1e-5f);
  gpu_->layernorm_forward(y16, mean.gpu, rstd.gpu, x.gpu, w.gpu, b.gpu, rows, C, 1e-5f);
  expect_rounded(bits_at(y16.data, n), cpu_values(y));
  EXPECT_LE(error(mean), 1e-6);
  EXPECT_LE(error(rstd), 1e-6);
  cpu_.residual_layernorm_forward(residual.cpu, y.cpu, mean.cpu, rstd.cpu, x.cpu, r.cpu, w.cpu, b.cpu, rows, C, 1e-5f);
  gpu_->residual_layernorm_forward(residual.gpu, y16, mean.gpu, rstd.gpu, x.gpu, r.gpu, w.gpu, b.gpu, rows, C, 1e-5f);
  expect_rounded(bits_at(y16.data, n), cpu_values(y));
  EXPECT_LE(error(residual), 1e-7);
  race::test::expect_error(
      [&] { gpu_->layernorm_forward({x.gpu, ElementType::bf16}, mean.gpu, rstd.gpu, x.gpu, w.gpu, b.gpu, rows, C, 1e-5f); },
      "the bf16 y overlaps the fp32 x");

  cpu_.gelu_forward(y.cpu, x.cpu, n);
  gpu_->gelu_forward(y16, x.gpu, n);
  expect_rounded(bits_at(y16.data, n), cpu_values(y));
  cpu_.gelu_backward(y.cpu, dy.cpu, x.cpu, n);
  gpu_->gelu_backward(y16, dy.gpu, x.gpu, n);
  expect_rounded(bits_at(y16.data, n), cpu_values(y));
  race::test::expect_error([&] { gpu_->gelu_backward({dy.gpu, ElementType::bf16}, dy.gpu, x.gpu, n); },
                           "the bf16 dx overlaps the fp32 dy");
}

TEST_F(CudaOpsTest, CrossEntropyWithBf16Dlogits) {
  const int64_t rows = 29, V = 1001;
  std::vector<int32_t> host_targets(rows);
  for (int64_t i = 0; i < rows; ++i) host_targets[i] = i % 4 == 1 ? -1 : static_cast<int32_t>((i * 37) % V);
  auto targets = ints(host_targets);
  auto logits = random(rows * V, 3.0), dlogits = zeros(rows * V);
  const OperandOut dlogits16 = bf16_out(rows * V);
  int64_t cpu_count = 0, gpu_count = 0;
  const double cpu_loss = cpu_.cross_entropy(dlogits.cpu, logits.cpu, targets.cpu, rows, V, 0.1f, &cpu_count);
  const double gpu_loss = gpu_->cross_entropy(dlogits16, logits.gpu, targets.gpu, rows, V, 0.1f, &gpu_count);
  EXPECT_EQ(gpu_count, cpu_count);
  EXPECT_NEAR(gpu_loss, cpu_loss, 1e-6 * std::fabs(cpu_loss));
  expect_rounded(bits_at(dlogits16.data, rows * V), cpu_values(dlogits));
  // In place is for fp32 only: bf16 stores would overwrite logits other threads still read.
  race::test::expect_error(
      [&] { gpu_->cross_entropy({logits.gpu, ElementType::bf16}, logits.gpu, targets.gpu, rows, V, 1.f, &gpu_count); },
      "the bf16 dlogits overlaps the fp32 logits");
  race::test::expect_error(
      [&] {
        gpu_->cross_entropy({logits.gpu + rows * V / 2, ElementType::bf16}, logits.gpu, targets.gpu, rows, V, 1.f,
                            &gpu_count);
      },
      "overlaps");
}

// The moves to rows write each element once, rounded: CpuOps' fp32 rows rounded, bit for bit.
TEST_F(CudaOpsTest, HeadLayoutsToBf16RowsAreRoundedMoves) {
  const int64_t B = 2, T = 13, H = 3, D = 5, C = H * D;
  auto q = random(B * H * T * D), k = random(B * H * T * D), v = random(B * H * T * D);
  auto merged = zeros(B * T * 3 * C), rows = zeros(B * T * C);
  const OperandOut merged16 = bf16_out(B * T * 3 * C), rows16 = bf16_out(B * T * C);
  cpu_.merge_heads(merged.cpu, q.cpu, k.cpu, v.cpu, B, T, H, D);
  gpu_->merge_heads(merged16, q.gpu, k.gpu, v.gpu, B, T, H, D);
  EXPECT_EQ(bits_at(merged16.data, B * T * 3 * C), to_bf16(cpu_values(merged)));
  cpu_.heads_to_rows(rows.cpu, k.cpu, B, T, H, D);
  gpu_->heads_to_rows(rows16, k.gpu, B, T, H, D);
  EXPECT_EQ(bits_at(rows16.data, B * T * C), to_bf16(cpu_values(rows)));
}

// With bf16 heads: split_heads and rows_to_heads write CpuOps' fp32 heads rounded, merge_heads and
// heads_to_rows move bf16 heads into fp32 rows (CpuOps' rows of the same values, bit for bit) and bf16 rows
// (the same, rounded: exact); q, k, v of one call in mixed types are an error.
TEST_F(CudaOpsTest, HeadLayoutsWithBf16HeadsAreRoundedMoves) {
  const int64_t B = 2, T = 13, H = 3, D = 5, C = H * D, n = B * H * T * D;
  auto qkv = random(B * T * 3 * C), rows = random(B * T * C);
  auto q = zeros(n), k = zeros(n), v = zeros(n);
  const OperandOut q16 = bf16_out(n), k16 = bf16_out(n), v16 = bf16_out(n);
  cpu_.split_heads(q.cpu, k.cpu, v.cpu, qkv.cpu, B, T, H, D);
  gpu_->split_heads(q16, k16, v16, qkv.gpu, B, T, H, D);
  EXPECT_EQ(bits_at(q16.data, n), to_bf16(cpu_values(q)));
  EXPECT_EQ(bits_at(k16.data, n), to_bf16(cpu_values(k)));
  EXPECT_EQ(bits_at(v16.data, n), to_bf16(cpu_values(v)));

  const Bf16s hq = random_bf16s(n), hk = random_bf16s(n), hv = random_bf16s(n);
  auto merged = zeros(B * T * 3 * C);
  const OperandOut merged16 = bf16_out(B * T * 3 * C);
  cpu_.merge_heads(merged.cpu, hq.cpu, hk.cpu, hv.cpu, B, T, H, D);
  gpu_->merge_heads(merged.gpu, hq.gpu, hk.gpu, hv.gpu, B, T, H, D);
  EXPECT_TRUE(identical(merged));
  gpu_->merge_heads(merged16, hq.gpu, hk.gpu, hv.gpu, B, T, H, D);
  EXPECT_EQ(bits_at(merged16.data, B * T * 3 * C), to_bf16(cpu_values(merged)));

  auto moved = zeros(B * T * C);
  const OperandOut moved16 = bf16_out(B * T * C);
  cpu_.heads_to_rows(moved.cpu, hk.cpu, B, T, H, D);
  gpu_->heads_to_rows(moved.gpu, hk.gpu, B, T, H, D);
  EXPECT_TRUE(identical(moved));
  gpu_->heads_to_rows(moved16, hk.gpu, B, T, H, D);
  EXPECT_EQ(bits_at(moved16.data, B * T * C), to_bf16(cpu_values(moved)));

  auto heads = zeros(n);
  const OperandOut heads16 = bf16_out(n);
  cpu_.rows_to_heads(heads.cpu, rows.cpu, B, T, H, D);
  gpu_->rows_to_heads(heads16, rows.gpu, B, T, H, D);
  EXPECT_EQ(bits_at(heads16.data, n), to_bf16(cpu_values(heads)));

  race::test::expect_error([&] { gpu_->merge_heads(merged.gpu, hq.gpu, k.gpu, hv.gpu, B, T, H, D); },
                           "merge_heads (CUDA): q, k and v must all be fp32 or all bf16, but q is bf16, k is fp32, v is bf16");
  race::test::expect_error([&] { gpu_->split_heads(q16, k16, v.gpu, qkv.gpu, B, T, H, D); },
                           "q is bf16, k is bf16, v is fp32");
}

// RoPE on bf16 heads: CpuOps' fp32 rotation of the same values rounded (expect_rounded), forward and, in
// place, backward; out and x of different types are an error.
TEST_F(CudaOpsTest, RopeOnBf16Heads) {
  const int64_t B = 2, H = 3, T = 37, D = 10, n = B * H * T * D;
  std::vector<int32_t> host_positions(B * T);
  for (int64_t i = 0; i < B * T; ++i) host_positions[i] = static_cast<int32_t>((i % 11) * 90001);
  auto positions = ints(host_positions);
  const Bf16s x16 = random_bf16s(n, 2.0);
  const OperandOut out16 = bf16_out(n);
  auto out = zeros(n);
  for (bool given : {false, true}) {
    cpu_.rope_forward(out.cpu, x16.cpu, given ? positions.cpu : nullptr, B, H, T, D, 10000.f);
    gpu_->rope_forward(out16, x16.gpu, given ? positions.gpu : nullptr, B, H, T, D, 10000.f);
    expect_rounded(bits_at(out16.data, n), cpu_values(out));
    const std::vector<float> turned = from_bf16(bits_at(out16.data, n));  // what the GPU turns back
    cpu_.copy_from_host(out.cpu, turned.data(), n);
    cpu_.rope_backward(out.cpu, out.cpu, given ? positions.cpu : nullptr, B, H, T, D, 10000.f);
    gpu_->rope_backward(out16, out16, given ? positions.gpu : nullptr, B, H, T, D, 10000.f);  // in place
    expect_rounded(bits_at(out16.data, n), cpu_values(out));
  }
  race::test::expect_error([&] { gpu_->rope_forward(out16, out.gpu, nullptr, B, H, T, D, 10000.f); },
                           "out is bf16, x is fp32");
  race::test::expect_error([&] { gpu_->rope_backward(out.gpu, x16.gpu, nullptr, B, H, T, D, 10000.f); },
                           "dx is fp32, dout is bf16");
}

// Attention on bf16 q, k, v, dout (and bf16 out, dq, dk, dv) against CpuOps on the same values widened to
// fp32 (the softmax backward also on the GPU's bf16 out, widened). Each bf16 output is the kernel's fp32
// value rounded once (at most 2^-8 of it off), and the fp32 kernels agree within 1e-4 (the fp32 test above),
// so each output's error may exceed the error of rounding the CPU's own result by 3e-4 at most; a second
// rounding inside a kernel would add about 1e-3. dbeta and lse, fp32 from the same inputs, within 5e-4 and
// 1e-5. Tensors of mixed types are an error naming each.
TEST_F(CudaOpsTest, RaceAndSoftmaxAttentionOnBf16Tensors) {
  const int64_t B = 2, H = 3, T = 37, D = 16, n = B * H * T * D;
  race::kernels::RaceAttentionShape shape{B, H, T, D, 2, 3, true};
  std::vector<uint8_t> host_mask(B * T, 1);
  host_mask[B * T - 1] = host_mask[B * T - 2] = 0;
  auto mask = bytes(host_mask);
  const Bf16s q = random_bf16s(n), k = random_bf16s(n), v = random_bf16s(n), dout = random_bf16s(n);
  auto planes = random(H * 2 * 3 * D), beta = floats({0.6f, 1.f, 1.4f});
  auto out = zeros(n), dq = zeros(n), dk = zeros(n), dv = zeros(n), dbeta = zeros(H), lse = zeros(B * H * T);
  auto out_seen = zeros(n);  // the CPU's copy of the GPU's bf16 out, widened
  const OperandOut out16 = bf16_out(n), dq16 = bf16_out(n), dk16 = bf16_out(n), dv16 = bf16_out(n);
  const auto expect_rounded_once = [&](OperandOut got, const Floats& want, const char* name) {
    const std::vector<float> cpu = cpu_values(want);
    const double rounding = relative_rms(from_bf16(to_bf16(cpu)), widen(cpu));
    EXPECT_LE(relative_rms(from_bf16(bits_at(got.data, n)), widen(cpu)), rounding + 3e-4) << name;
  };
  for (auto estimator : {race::kernels::RaceEstimator::bucket, race::kernels::RaceEstimator::ratio}) {
    race::kernels::RaceAttentionOptions options;
    options.estimator = estimator;
    cpu_.race_attention_forward(shape, options, {q.cpu, k.cpu, v.cpu, planes.cpu, beta.cpu, mask.cpu, nullptr},
                                out.cpu);
    gpu_->race_attention_forward(shape, options, {q.gpu, k.gpu, v.gpu, planes.gpu, beta.gpu, mask.gpu, nullptr},
                                 out16);
    expect_rounded_once(out16, out, "out");
    cpu_.race_attention_backward(shape, options, {q.cpu, k.cpu, v.cpu, planes.cpu, beta.cpu, mask.cpu, nullptr},
                                 dout.cpu, {dq.cpu, dk.cpu, dv.cpu, dbeta.cpu});
    gpu_->race_attention_backward(shape, options, {q.gpu, k.gpu, v.gpu, planes.gpu, beta.gpu, mask.gpu, nullptr},
                                  dout.gpu, {dq16, dk16, dv16, dbeta.gpu});
    expect_rounded_once(dq16, dq, "dq");
    expect_rounded_once(dk16, dk, "dk");
    expect_rounded_once(dv16, dv, "dv");
    EXPECT_LE(error(dbeta), 5e-4);
  }
  for (int64_t window : {0, 5}) {
    const race::kernels::SoftmaxAttentionShape s{B, H, T, D};
    const race::kernels::SoftmaxAttentionOptions options{true, window, 0.f};
    cpu_.softmax_attention_forward(s, options, {q.cpu, k.cpu, v.cpu, mask.cpu, nullptr}, out.cpu, lse.cpu);
    gpu_->softmax_attention_forward(s, options, {q.gpu, k.gpu, v.gpu, mask.gpu, nullptr}, out16, lse.gpu);
    expect_rounded_once(out16, out, "out");
    EXPECT_LE(error(lse), 1e-5);
    const std::vector<float> seen = from_bf16(bits_at(out16.data, n));
    cpu_.copy_from_host(out_seen.cpu, seen.data(), n);
    cpu_.softmax_attention_backward(s, options, {q.cpu, k.cpu, v.cpu, mask.cpu, nullptr}, out_seen.cpu, lse.cpu,
                                    dout.cpu, {dq.cpu, dk.cpu, dv.cpu});
    gpu_->softmax_attention_backward(s, options, {q.gpu, k.gpu, v.gpu, mask.gpu, nullptr}, out16, lse.gpu,
                                     dout.gpu, {dq16, dk16, dv16});
    expect_rounded_once(dq16, dq, "dq");
    expect_rounded_once(dk16, dk, "dk");
    expect_rounded_once(dv16, dv, "dv");
  }

  race::kernels::RaceAttentionOptions options;
  race::test::expect_error(
      [&] {
        gpu_->race_attention_forward(shape, options,
                                     {q.gpu, dk.gpu, v.gpu, planes.gpu, beta.gpu, mask.gpu, nullptr}, out16);
      },
      "race_attention_forward (CUDA): an attention call's q, k, v, out, dout and gradients must all be fp32 or all "
      "bf16, but q is bf16, k is fp32, v is bf16, out is bf16");
  race::test::expect_error(
      [&] {
        gpu_->race_attention_backward(shape, options,
                                      {q.gpu, k.gpu, v.gpu, planes.gpu, beta.gpu, mask.gpu, nullptr}, dout.gpu,
                                      {dq.gpu, dk16, dv16, dbeta.gpu});
      },
      "dq is fp32");
  const race::kernels::SoftmaxAttentionShape s{B, H, T, D};
  const race::kernels::SoftmaxAttentionOptions softmax_options{true, 0, 0.f};
  race::test::expect_error(
      [&] { gpu_->softmax_attention_forward(s, softmax_options, {q.gpu, k.gpu, v.gpu}, out.gpu, lse.gpu); },
      "q is bf16, k is bf16, v is bf16, out is fp32");
  race::test::expect_error(
      [&] {
        gpu_->softmax_attention_backward(s, softmax_options, {q.gpu, k.gpu, v.gpu}, out16, lse.gpu, dq.gpu,
                                         {dq16, dk16, dv16});
      },
      "dout is fp32");
}

TEST_F(CudaOpsTest, PoolingFromBf16Rows) {
  const int64_t B = 3, T = 11, C = 300;
  std::vector<uint8_t> host_mask(B * T, 1);
  for (int64_t t = 0; t < T; ++t) host_mask[T + t] = t % 3 == 0;
  for (int64_t t = 0; t < T; ++t) host_mask[2 * T + t] = 0;
  auto mask = bytes(host_mask);
  const Bf16s rows = random_bf16s(B * T * C);
  auto pooled = zeros(B * C);
  for (bool cls : {false, true})
    for (bool masked : {false, true}) {
      cpu_.pool_forward(pooled.cpu, rows.cpu, masked ? mask.cpu : nullptr, B, T, C, cls);
      gpu_->pool_forward(pooled.gpu, rows.gpu, masked ? mask.gpu : nullptr, B, T, C, cls);
      EXPECT_LE(error(pooled), 1e-6);
    }
}

// The linear layer on bf16 operands, with either GemmPrecision (bf16 operands take the same path): y, dx, dW
// (accumulated onto random values) and db against fp64 products of the very same bf16 values, within 1e-5
// (fp32 sums over k <= 768: about 1e-6 expected; a bf16 rounding anywhere in the sums or outputs would be
// about 4e-3). Shapes with leading dimensions that are multiples of 8 elements (16 bytes, the tensor cores'
// layout) and one that is not, and the bias through the epilogue and misaligned (added before the product).
// The same backward twice gives the same bits.
TEST_F(CudaOpsTest, LinearOnBf16OperandsMatchesTheFp64Product) {
  struct Shape {
    int64_t rows, in, out;
  };
  for (const auto precision : {race::kernels::cuda::GemmPrecision::fp32, race::kernels::cuda::GemmPrecision::bf16})
    for (const Shape s : {Shape{300, 256, 136}, Shape{515, 768, 264}, Shape{37, 45, 70}}) {
      SCOPED_TRACE(testing::Message() << "precision " << static_cast<int>(precision) << " rows " << s.rows << " in "
                                      << s.in << " out " << s.out);
      gpu_ = std::make_unique<CudaOps>(0, precision);
      const int64_t rows = s.rows, in = s.in, out = s.out;
      const Bf16s x = random_bf16s(rows * in), w = random_bf16s(out * in, 0.1), dy = random_bf16s(rows * out);
      const auto host = [](const Bf16s& b) { return std::vector<double>(b.cpu, b.cpu + b.n); };
      const std::vector<double> xv = host(x), wv = host(w), dyv = host(dy);
      auto b = random(out + 1), y = zeros(rows * out), dx = zeros(rows * in), dw = random(out * in), db = random(out);
      std::vector<double> want_y(rows * out), want_dx(rows * in), want_dw = widen(cpu_values(dw)),
                          want_db = widen(cpu_values(db));
      for (int64_t n = 0; n < rows; ++n)
        for (int64_t o = 0; o < out; ++o) {
          double sum = 0.0;
          for (int64_t i = 0; i < in; ++i) sum += xv[n * in + i] * wv[o * in + i];
          want_y[n * out + o] = sum;
          want_db[o] += dyv[n * out + o];
        }
      for (int64_t n = 0; n < rows; ++n)
        for (int64_t i = 0; i < in; ++i) {
          double sum = 0.0;
          for (int64_t o = 0; o < out; ++o) sum += dyv[n * out + o] * wv[o * in + i];
          want_dx[n * in + i] = sum;
        }
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) {
          double sum = 0.0;
          for (int64_t n = 0; n < rows; ++n) sum += dyv[n * out + o] * xv[n * in + i];
          want_dw[o * in + i] += sum;
        }
      const std::vector<float> bias = cpu_values(b);
      for (const int64_t bias_offset : {int64_t{0}, int64_t{1}}) {  // 256-byte aligned, then 4-byte aligned
        gpu_->linear_forward(y.gpu, x.gpu, w.gpu, b.gpu + bias_offset, rows, in, out);
        std::vector<double> want = want_y;
        for (int64_t n = 0; n < rows; ++n)
          for (int64_t o = 0; o < out; ++o) want[n * out + o] += bias[o + bias_offset];
        EXPECT_LE(relative_rms(gpu_values(y), want), 1e-5) << "bias offset " << bias_offset;
      }
      gpu_->linear_backward(dx.gpu, dw.gpu, db.gpu, dy.gpu, x.gpu, w.gpu, rows, in, out);
      EXPECT_LE(relative_rms(gpu_values(dx), want_dx), 1e-5);
      EXPECT_LE(relative_rms(gpu_values(dw), want_dw), 1e-5);
      EXPECT_LE(relative_rms(gpu_values(db), want_db), 1e-6);
      const auto start = race::test::normal(rng_, out * in);
      auto first = floats(start), second = floats(start);
      gpu_->linear_backward(nullptr, first.gpu, nullptr, dy.gpu, x.gpu, w.gpu, rows, in, out);
      gpu_->linear_backward(nullptr, second.gpu, nullptr, dy.gpu, x.gpu, w.gpu, rows, in, out);
      EXPECT_TRUE(race::test::bit_equal(gpu_values(first), gpu_values(second)));
    }
}

TEST_F(CudaOpsTest, LinearWithMixedOperandTypesIsAnError) {
  const int64_t rows = 8, in = 16, out = 8;
  const Bf16s x = random_bf16s(rows * in), dy = random_bf16s(rows * out);
  auto w = random(out * in), y = zeros(rows * out), dw = zeros(out * in);
  race::test::expect_error([&] { gpu_->linear_forward(y.gpu, x.gpu, w.gpu, nullptr, rows, in, out); },
                           "x is bf16, w is fp32");
  race::test::expect_error(
      [&] { gpu_->linear_backward(nullptr, dw.gpu, nullptr, dy.gpu, x.gpu, w.gpu, rows, in, out); },
      "dy is bf16, x is bf16, w is fp32");
}

TEST_F(CudaOpsTest, TinyGptTrainsTheSameOnBothBackends) { train_tiny_gpt_on_both(cpu_, *gpu_, {1e-4, 1e-4, 1e-4}); }

// With bf16 operands: the loss within 2% at every step and every gradient within 2e-2 (issue 5's bf16 bound).
// Emulated on the CPU (tests/emulated_bf16_ops.h, every operand rounded where CudaOps rounds), this model
// stayed within 6.9e-3 of fp32 in loss over the 10 steps and 7.6e-3 on every gradient (a review's run).
// After 10 steps AdamW's sign-like updates can differ where a gradient is near zero, so the parameters are
// not compared.
TEST_F(CudaOpsTest, TinyGptTrainsWithBf16ProductsWithinBf16Tolerance) {
  CudaOps bf16(0, race::kernels::cuda::GemmPrecision::bf16);
  train_tiny_gpt_on_both(cpu_, bf16, {2e-2, 2e-2, -1.0});
}

// Against the CPU emulation of bf16 operands, which rounds at the same points, step 1 is held much tighter:
// what is left is the backends' fp32 differences moving a bf16 rounding by one ulp here and there, and an
// operand view read after it was overwritten, or a tensor of the wrong type, fails. Later steps are held
// only as tightly as against fp32: AdamW amplifies single flips. Measured on the host by perturbing every
// rounded value of the emulation by a relative 1e-6 or 1e-5 (3 seeds each): step-1 loss within 6.5e-6,
// all step-1 gradients within 1.8e-3, the worst tensor 5.2e-3, the loss over 10 steps within 6.8e-3.
TEST_F(CudaOpsTest, TinyGptWithBf16OperandsFollowsTheCpuEmulation) {
  CudaOps bf16(0, race::kernels::cuda::GemmPrecision::bf16);
  race::test::EmulatedBf16Ops emulated;
  Agreement within{2e-2, 2e-2, -1.0};
  within.first_loss = 1e-4, within.all_gradients = 4e-3;
  train_tiny_gpt_on_both(emulated, bf16, within);
}

}  // namespace

#endif  // RACE_HAVE_CUDA
