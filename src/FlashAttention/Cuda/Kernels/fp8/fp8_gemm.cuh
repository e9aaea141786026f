// Warpgroup GEMMs with E4M3 operands (wgmma m64nNk32, f32 accumulators). FP8 wgmma takes no transpose: both shared-
// memory operands are K-major (K contiguous), so V enters P·V as Vᵀ. A k32 step is 32 bytes along a swizzled row,
// as a bf16 k16 step is: the 128-byte-swizzle descriptors of common/gemm.cuh apply unchanged; d64's 64-byte rows
// use the 64-byte swizzle (atoms of 8 rows x 64 bytes).
#pragma once
#include "common/gemm.cuh"
#include "common/numeric.cuh"
#include "common/ptx.cuh"
#include "common/wgmma.cuh"

namespace fa {

// Shared-memory matrix descriptor with 64-byte swizzle (bits 62-63 = 2); tiles start 512-byte aligned.
__device__ __forceinline__ uint64_t smem_desc_sw64(uint32_t addr, uint32_t sbo_bytes) {
  uint64_t d = 0;
  d |= (uint64_t)((addr & 0x3FFFF) >> 4);
  d |= (uint64_t)1 << 16;  // LBO, unused with swizzling
  d |= (uint64_t)((sbo_bytes >> 4) & 0x3FFF) << 32;
  d |= (uint64_t)2 << 62;
  return d;
}

// The descriptor of k32 step kk of a K-major E4M3 operand whose rows are kSwizzle (128 or 64) bytes per slab,
// slabs `slab` bytes apart.
template <int kSwizzle>
__device__ __forceinline__ uint64_t fp8_kmajor_step_desc(uint32_t tile, uint32_t slab, int kk) {
  if constexpr (kSwizzle == 128) return kmajor_step_desc(tile, slab, kk);
  else return smem_desc_sw64(tile + (kk / 2) * slab + (kk % 2) * 32, 512);
}

// C (64 x N) = A (64 x K) · B (N x K)ᵀ, both E4M3 and K-major in shared memory.
template <int N, int K, int kSwizzle>
__device__ __forceinline__ void gemm_ss_fp8(uint32_t a, uint32_t a_slab, uint32_t b, uint32_t b_slab, float (&c)[N / 2]) {
#pragma unroll
  for (int kk = 0; kk < K / 32; ++kk)
    WgmmaSS<e4m3_t, N>::template run<0>(fp8_kmajor_step_desc<kSwizzle>(a, a_slab, kk), fp8_kmajor_step_desc<kSwizzle>(b, b_slab, kk),
                                        c, kk > 0 ? 1 : 0);
}

// C (64 x N) += A (64 x K, E4M3 registers) · B (N x K)ᵀ, B K-major with 128-byte rows (Vᵀ: slabs of 128 keys).
template <int N, int K>
__device__ __forceinline__ void gemm_rs_fp8(const uint32_t (&a)[K / 8], uint32_t b, uint32_t b_slab, float (&c)[N / 2]) {
#pragma unroll
  for (int kk = 0; kk < K / 32; ++kk) {
    const uint32_t frag[4] = {a[4 * kk], a[4 * kk + 1], a[4 * kk + 2], a[4 * kk + 3]};
    WgmmaRS<e4m3_t, N>::template run<0>(frag, kmajor_step_desc(b, b_slab, kk), c, 1);
  }
}

// P (an f32 accumulator, 64 x K) to the E4M3 A operand of the next GEMM, without shuffles: for k32 step kk, register i
// takes column groups j = 4kk + 2(i/2) and j + 1 of row half i%2 (accumulator values 4j + 2(i%2) and +1 of each). The
// wgmma reads byte b of register i as K index 16(i/2) + 4(lane%4) + b, which holds key 16(i/2) + 8(b/2) + 2(lane%4) + b%2:
// V's keys are stored permuted to match (position 4q + b of each 16 holds key 2q + b%2 + 8(b/2); REFERENCES, checked on
// the H200, and the fp8 pv probe).
template <int kValues>
__device__ __forceinline__ void pack_fragment_e4m3(const float (&acc)[kValues], uint32_t (&frag)[kValues / 4]) {
#pragma unroll
  for (int kk = 0; kk < kValues / 16; ++kk) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int j = 4 * kk + 2 * (i >> 1), h = i & 1;
      frag[4 * kk + i] = pack4_e4m3(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1], acc[4 * (j + 1) + 2 * h], acc[4 * (j + 1) + 2 * h + 1]);
    }
  }
}

// Where key `key` of a 16-key group is stored in a permuted Vᵀ row (the inverse of the map above).
__device__ __forceinline__ int vt_position_of_key(int key) {
  const int k = key & 15;
  return (key & ~15) + 4 * ((k & 7) >> 1) + (k & 1) + 2 * (k >> 3);
}

}  // namespace fa
