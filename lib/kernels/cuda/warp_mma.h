// Tensor-core products of the CUDA RACE attention kernels, written once for the device and the host: a block's
// warps compute out (m, n) = sum_t a_t (m, k_t) b_t (k_t, n) over fp32 operands in shared memory, one output
// tile of 16 x 8 per warp at a time, with the warp-level instruction
//   mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32   (D (16 x 8) += A (16 x 8) B (8 x 8), fp32 accumulators)
// which sm_80 and sm_90a both have.
//
// Precision, 3xTF32: tf32 keeps 10 mantissa bits, so one tf32 product per term has a relative error near 1e-3,
// ten times what the kernels are held to against the fp64 reference (1e-4 relative RMS with fp32 tensors). So
// each operand is split x = big + small with big = tf32(x) and small = tf32(x - big) (x - big is exact in fp32),
// and D += a_small b_big + a_big b_small + a_big b_big: three instructions per 8-wide step instead of one, an
// error near fp32's (the a_small b_small term is below 2^-22 relative), and one instruction shape throughout.
//
// Fragments follow the PTX ISA's layout for m16n8k8 with .tf32 (section "Matrix Fragments for mma.m16n8k8"),
// with g = lane / 4 and t = lane % 4 (the lane within the warp):
//   A (16 x 8, row): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)
//   B (8 x 8, col):  b0 (t, g), b1 (t + 4, g)
//   C, D (16 x 8):   c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)
// Each lane builds its own fragments from shared memory by this mapping; the Block's mma_tf32 combines the
// warp's 32 fragments. CudaBlock runs the instruction; the host tests' block emulates it from the same
// documented layout, written out separately there, so a wrong index here fails those tests.
//
// Work split: tiles in row-major tile order, tile i to warp i mod warps; control flow inside a tile depends only
// on the sizes, so every lane of a warp executes the same mma_tf32 calls (mma.sync needs the whole warp).
// Operands outside their (rows, cols) read as zero and are never loaded, so any sizes work (e.g. a chunk of 5
// tokens). Deterministic: each output element comes from one lane, the k steps and terms run in a fixed order,
// no atomics. The Block needs lanes() a multiple of 32 and, for mma_tf32, the m16n8k8 tf32 semantics above.
//
// C++17 and no CUDA headers: the host compiler includes this file too.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/cuda/host_device.h"

namespace race::kernels::cuda::mma {

constexpr int kWarp = 32;   // lanes per warp
constexpr int kTileM = 16;  // output rows per tile
constexpr int kTileN = 8;   // output columns per tile
constexpr int kTileK = 8;   // reduction depth per instruction

RACE_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
#endif
}

RACE_HD float bits_float(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
#endif
}

// x rounded to tf32 as the fp32 bit pattern whose low 13 bits are zero: cvt.rna.tf32.f32, i.e. to nearest with
// ties away from zero. The host version does the same on the bits: adding half a tf32 ulp (bit 12) to the
// magnitude and truncating rounds ties away from zero, and a carry into the exponent is the correct rounding
// (up to infinity past the largest tf32). Infinities pass unchanged; NaN becomes the canonical NaN.
RACE_HD uint32_t to_tf32(float x) {
#if defined(__CUDA_ARCH__)
  uint32_t bits;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(bits) : "f"(x));
  return bits;
#else
  uint32_t bits = float_bits(x);
  if ((bits & 0x7f800000u) == 0x7f800000u) return (bits & 0x007fffffu) != 0 ? 0x7fffffffu : bits;
  return (bits + 0x1000u) & 0xffffe000u;
#endif
}

// The 3xTF32 split of x: big = tf32(x), small = tf32(x - big).
struct Split {
  uint32_t big, small;
};
RACE_HD Split split(float x) {
  const uint32_t big = to_tf32(x);
  return {big, to_tf32(x - bits_float(big))};
}

// An fp32 (rows, cols) matrix in shared memory, element (r, c) at at[r * row_stride + c * col_stride], read as
// zero outside rows x cols.
struct View {
  const float* at;
  int64_t rows, cols, row_stride, col_stride;

  RACE_HD float operator()(int64_t r, int64_t c) const {
    return r < rows && c < cols ? at[r * row_stride + c * col_stride] : 0.f;
  }
};

// A row-major (rows, cols) matrix.
RACE_HD View row_major(const float* at, int64_t rows, int64_t cols) { return {at, rows, cols, cols, 1}; }

// The transpose, (cols, rows), of a row-major (rows, cols) matrix.
RACE_HD View transposed(const float* at, int64_t rows, int64_t cols) { return {at, cols, rows, 1, cols}; }

// One term a (m, k) b (k, n) of a product; k = a.cols = b.rows.
struct Term {
  View a, b;
};

// acc (this lane's c0..c3 of the 16 x 8 tile at (row0, col0)) += a b over the term's k, 8 at a time.
template <class Block>
RACE_HD void tile_term(const Block& blk, const Term& term, int64_t row0, int64_t col0, float acc[4]) {
  const int lane = blk.warp_lane(), g = lane >> 2, t = lane & 3;
  const int64_t r0 = row0 + g, r1 = row0 + g + 8, c = col0 + g;
  for (int64_t k0 = 0; k0 < term.a.cols; k0 += kTileK) {
    const Split a[4] = {split(term.a(r0, k0 + t)), split(term.a(r1, k0 + t)), split(term.a(r0, k0 + t + 4)),
                        split(term.a(r1, k0 + t + 4))};
    const Split b[2] = {split(term.b(k0 + t, c)), split(term.b(k0 + t + 4, c))};
    const uint32_t a_big[4] = {a[0].big, a[1].big, a[2].big, a[3].big};
    const uint32_t a_small[4] = {a[0].small, a[1].small, a[2].small, a[3].small};
    const uint32_t b_big[2] = {b[0].big, b[1].big}, b_small[2] = {b[0].small, b[1].small};
    // The small corrections first, so they are not added to an already large accumulator one at a time later.
    blk.mma_tf32(acc, a_small, b_big);
    blk.mma_tf32(acc, a_big, b_small);
    blk.mma_tf32(acc, a_big, b_big);
  }
}

// out (m, n) = sum of the `count` terms a_t b_t; store(i, j, value) is called once per output element, by the
// lane that holds it. Runs on all lanes of the block, no barrier inside (like race_tile.h's functions).
template <class Block, class Store>
RACE_HD void gemm(const Block& blk, int64_t m, int64_t n, const Term* terms, int count, Store store) {
  const int64_t tiles_m = (m + kTileM - 1) / kTileM, tiles_n = (n + kTileN - 1) / kTileN;
  const int lane = blk.warp_lane(), g = lane >> 2, t = lane & 3;
  for (int64_t tile = blk.warp(); tile < tiles_m * tiles_n; tile += blk.warps()) {
    const int64_t row0 = tile / tiles_n * kTileM, col0 = tile % tiles_n * kTileN;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int i = 0; i < count; ++i) tile_term(blk, terms[i], row0, col0, acc);
    for (int r = 0; r < 4; ++r) {
      const int64_t i = row0 + g + (r >= 2 ? 8 : 0), j = col0 + 2 * t + (r & 1);
      if (i < m && j < n) store(i, j, acc[r]);
    }
  }
}

}  // namespace race::kernels::cuda::mma
