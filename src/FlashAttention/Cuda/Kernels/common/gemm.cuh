// Warpgroup GEMMs over 128-byte-swizzled shared-memory tiles, built from the generated wgmma wrappers.
// Tiles are stored as "slabs": 64 columns (128 bytes of 16-bit values) by R rows, R·128 bytes each, one after
// another `slab` bytes apart; TMA writes them (CU_TENSOR_MAP_SWIZZLE_128B, box {64, R}) and wgmma reads them
// with SBO = 1024 (8 rows). The layouts are proved against the CPU by the lab's probe kernels
// (probes/primitives.cu) on every `flashattn verify --device cuda`.
#pragma once
#include "common/ptx.cuh"
#include "common/numeric.cuh"
#include "common/wgmma.cuh"

namespace fa {

// The descriptor of k16 step kk of a K-major (K contiguous) operand: +32 bytes inside a slab, the next slab after 4
// steps. LBO is unused with this swizzle.
__device__ __forceinline__ uint64_t kmajor_step_desc(uint32_t tile, uint32_t slab, int kk) {
  return smem_desc_sw128(tile + (kk / 4) * slab + (kk % 4) * 32, 16, 1024);
}

// C (64 x N) = A (64 x K) · B (N x K)ᵀ, or += when `accumulate`. A and B are K-major.
template <typename E, int N, int K>
__device__ __forceinline__ void gemm_ss_kmajor(uint32_t a, uint32_t a_slab, uint32_t b, uint32_t b_slab,
                                               float (&c)[N / 2], bool accumulate) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk)
    WgmmaSS<E, N>::template run<0>(kmajor_step_desc(a, a_slab, kk), kmajor_step_desc(b, b_slab, kk), c, (accumulate || kk > 0) ? 1 : 0);
}

// C (64 x N) = A (64 x K, registers) · B (N x K)ᵀ, B K-major (as in gemm_ss_kmajor), or += when `accumulate`.
template <typename E, int N, int K>
__device__ __forceinline__ void gemm_rs_kmajor(const uint32_t (&a)[K / 4], uint32_t b, uint32_t b_slab, float (&c)[N / 2],
                                               bool accumulate) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    const uint32_t frag[4] = {a[4 * kk], a[4 * kk + 1], a[4 * kk + 2], a[4 * kk + 3]};
    WgmmaRS<E, N>::template run<0>(frag, kmajor_step_desc(b, b_slab, kk), c, (accumulate || kk > 0) ? 1 : 0);
  }
}

// Loads a 64 x K tile of a 128-byte-swizzled K-major operand (slabs of 64 columns, `slab` bytes apart, 64 rows
// for this warpgroup) into the register A fragment of a warpgroup GEMM: frag[4kk … 4kk+3] = rows r and r + 8
// (r = 16·warp + lane/4) of columns 16kk … 16kk+7, then of 16kk+8 … 16kk+15 — the order pack_fragment gives P.
// One ldmatrix.x4 per k16 step.
template <int K>
__device__ __forceinline__ void load_a_fragment_sw128(uint32_t tile, uint32_t slab, uint32_t (&frag)[K / 4], int thread) {
  const int warp = thread / 32, lane = thread % 32, matrix = lane / 8;
  const int row = 16 * warp + 8 * (matrix & 1) + lane % 8;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    const int chunk = 2 * kk + matrix / 2;  // 16-byte chunk of the row, over all slabs
    ldmatrix_x4(tile + (chunk / 8) * slab + row * 128 + (((chunk % 8) ^ (row % 8)) << 4),
                frag[4 * kk], frag[4 * kk + 1], frag[4 * kk + 2], frag[4 * kk + 3]);
  }
}

// C (64 x N) += A (64 x K, registers) · B (K x N), B MN-major (N contiguous) in slabs of 64 N-columns:
// LBO = distance between N-slabs, SBO = 1024 (next 8 K rows), a k16 step = 16 rows = +2048 bytes.
// a[4kk .. 4kk+3] is the fragment of k-step kk: packed pairs of an f32 accumulator with K columns.
template <typename E, int N, int K>
__device__ __forceinline__ void gemm_rs_mnmajor(const uint32_t (&a)[K / 4], uint32_t b, uint32_t b_slab, float (&c)[N / 2]) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    const uint32_t frag[4] = {a[4 * kk], a[4 * kk + 1], a[4 * kk + 2], a[4 * kk + 3]};
    const uint64_t db = smem_desc_sw128(b + kk * 2048, b_slab, 1024);
    WgmmaRS<E, N>::template run<1>(frag, db, c, 1);
  }
}

// C (64 x N) = A (64 x K, shared memory, K-major) · B (K x N, MN-major), or += when `accumulate`.
template <typename E, int N, int K>
__device__ __forceinline__ void gemm_ss_mnmajor_b(uint32_t a, uint32_t a_slab, uint32_t b, uint32_t b_slab,
                                                  float (&c)[N / 2], bool accumulate) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    const uint64_t db = smem_desc_sw128(b + kk * 2048, b_slab, 1024);
    WgmmaSS<E, N>::template run<1>(kmajor_step_desc(a, a_slab, kk), db, c, (accumulate || kk > 0) ? 1 : 0);
  }
}

// Packs an f32 accumulator (64 x K) into the 16-bit A-operand fragment of a following GEMM: pair i holds
// elements 2i and 2i+1 (checked: the k16 A fragment has the thread map of 16 accumulator columns).
template <typename E, int kValues>
__device__ __forceinline__ void pack_fragment(const float (&acc)[kValues], uint32_t (&frag)[kValues / 2]) {
#pragma unroll
  for (int i = 0; i < kValues / 2; ++i) frag[i] = pack2<E>(acc[2 * i], acc[2 * i + 1]);
}

// Stores a warpgroup's 64 x kCols accumulator fragment, already packed (frag[2j + h]: rows r + 8h, columns
// 8j + 2·(lane%4) and +1, r = 16·warp + lane/4), transposed into one 128-byte-swizzled slab: fragment column c
// becomes slab row c and fragment row r its element r — the K-major layout a [c][r] tensor gets from TMA, so a
// later wgmma reads it as an operand. An 8x8 block of the fragment is one 16-byte chunk in each of 8 slab rows;
// chunk k of row c sits at chunk position k ^ (c % 8). Four stmatrix.trans.x4 per 16 columns' worth of registers
// instead of one 16-bit store per value (a quarter of the shared-memory wavefronts, an eighth of the instructions).
template <int kCols>
__device__ __forceinline__ void store_transposed_sw128(uint32_t slab, const uint32_t (&frag)[kCols / 4], int thread) {
  const int warp = thread / 32, lane = thread % 32, matrix = lane / 8, row = lane % 8;
  const int chunk = 2 * warp + (matrix & 1);  // rows 16·warp + 8h … of the fragment: h = matrix % 2
#pragma unroll
  for (int k = 0; k < kCols / 16; ++k) {
    const int c = 8 * (2 * k + matrix / 2) + row;  // columns 8j …, j = 2k + matrix / 2
    stmatrix_x4_trans(slab + c * 128 + ((chunk ^ row) << 4), frag[4 * k], frag[4 * k + 1], frag[4 * k + 2], frag[4 * k + 3]);
  }
}

}  // namespace fa
