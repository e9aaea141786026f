// Unit kernels that prove, one at a time, the device primitives the attention kernels are built from:
// the TMA maps and 128-byte swizzle, the wgmma descriptors (K-major and MN-major), the accumulator layout and
// the register-fragment conversion of P. `flashattn verify --device cuda` runs them against the CPU before the
// attention cases, so a wrong layout shows up here by name rather than as a wrong attention output.
#include "fp8/fp8_gemm.cuh"
#include "fwd/fwd_mainloop.cuh"
#include "common/numeric.cuh"
#include "common/ptx.cuh"

namespace fa {

// The slice of a forward config that gemm_qk / gemm_pv read, for a single 64-row warpgroup tile.
template <typename E, int N, int D, bool QInRegs = false>
struct ProbeConfig {
  using Element = E;
  static constexpr bool kQInRegs = QInRegs;
  static constexpr int kHeadDim = D;
  static constexpr int kBlockN = N;
  static constexpr int kQSlabBytes = 64 * 128;
  static constexpr int kKSlabBytes = N * 128;
  static constexpr int kQBytes = kQSlabBytes * (D / 64);
  static constexpr int kKBytes = kKSlabBytes * (D / 64);
  static constexpr int kSmemBytes = 1024 + kQBytes + kKBytes + 16;
};

// Writes a warpgroup's m64 x cols f32 accumulator fragment to out[64][cols] (the documented layout).
template <int kValues>
__device__ __forceinline__ void store_fragment(const float (&acc)[kValues], float* out, int cols) {
  const int thread = threadIdx.x % 128, warp = thread / 32, lane = thread % 32;
  const int r = warp * 16 + lane / 4;
#pragma unroll
  for (int j = 0; j < kValues / 4; ++j) {
    const int c = 8 * j + 2 * (lane & 3);
    out[r * cols + c] = acc[4 * j];
    out[r * cols + c + 1] = acc[4 * j + 1];
    out[(r + 8) * cols + c] = acc[4 * j + 2];
    out[(r + 8) * cols + c + 1] = acc[4 * j + 3];
  }
}

// The inverse: reads in[64][cols] into a warpgroup's accumulator fragment (to feed the code paths under test).
template <int kValues>
__device__ __forceinline__ void load_fragment(const float* in, float (&acc)[kValues], int cols) {
  const int thread = threadIdx.x % 128, warp = thread / 32, lane = thread % 32;
  const int r = warp * 16 + lane / 4;
#pragma unroll
  for (int j = 0; j < kValues / 4; ++j) {
    const int c = 8 * j + 2 * (lane & 3);
    acc[4 * j] = in[r * cols + c];
    acc[4 * j + 1] = in[r * cols + c + 1];
    acc[4 * j + 2] = in[(r + 8) * cols + c];
    acc[4 * j + 3] = in[(r + 8) * cols + c + 1];
  }
}

// TMA + swizzle: loads one {64 columns, rows} box of (batch b, head h) at sequence row `row0` from a 4-D map
// (dim, seq, heads, batch) and copies the swizzled shared-memory bytes out verbatim.
__global__ void __launch_bounds__(128, 1)
probe_tma_swizzle(const __grid_constant__ TmaMap map, uint16_t* out, int rows, int row0, int head, int batch) {
  extern __shared__ uint8_t raw[];
  const uint32_t smem = smem_aligned_1024(raw);
  uint8_t* ptr = raw + (smem - smem_u32(raw));
  const uint32_t bar = smem + rows * 128;
  if (threadIdx.x == 0) {
    mbar_init(bar, 1);
    fence_barrier_init();
  }
  block_sync();
  if (threadIdx.x == 0) {
    mbar_arrive_expect_tx(bar, rows * 128);
    tma_load_4d(smem, &map, bar, 0, row0, head, batch);
  }
  mbar_wait(bar, 0);
  const uint16_t* tile = reinterpret_cast<const uint16_t*>(ptr);
  for (int i = threadIdx.x; i < rows * 64; i += blockDim.x) out[i] = tile[i];
}

// S = Q Kᵀ for a 64 x D query tile and an N x D key tile, through the attention kernel's gemm_qk: both operands
// from shared memory, or (QInRegs) Q loaded into the register A fragment by ldmatrix first.
template <typename E, int N, int D, bool QInRegs = false>
__global__ void __launch_bounds__(128, 1)
probe_qk(const __grid_constant__ TmaMap map_q, const __grid_constant__ TmaMap map_k, float* out) {
  using Cfg = ProbeConfig<E, N, D, QInRegs>;
  extern __shared__ uint8_t raw[];
  const uint32_t smem = smem_aligned_1024(raw);
  const uint32_t sq = smem, sk = smem + Cfg::kQBytes, bar = sk + Cfg::kKBytes;
  if (threadIdx.x == 0) {
    mbar_init(bar, 1);
    fence_barrier_init();
  }
  block_sync();
  if (threadIdx.x == 0) {
    mbar_arrive_expect_tx(bar, Cfg::kQBytes + Cfg::kKBytes);
    for (int slab = 0; slab < D / 64; ++slab) {
      tma_load_4d(sq + slab * Cfg::kQSlabBytes, &map_q, bar, slab * 64, 0, 0, 0);
      tma_load_4d(sk + slab * Cfg::kKSlabBytes, &map_k, bar, slab * 64, 0, 0, 0);
    }
  }
  mbar_wait(bar, 0);
  QOperand<Cfg> q;
  q.load(sq, threadIdx.x % 128);
  float s[N / 2];
  wgmma_fence();
  gemm_qk<Cfg>(q, sk, s);
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(s);
  store_fragment(s, out, N);
}

// O = P V for P given as floats (64 x N, rounded to E in registers exactly as the attention kernel does) and
// an N x D value tile, through the attention kernel's pack_probabilities and gemm_pv.
template <typename E, int N, int D>
__global__ void __launch_bounds__(128, 1)
probe_pv(const float* p_in, const __grid_constant__ TmaMap map_v, float* out) {
  using Cfg = ProbeConfig<E, N, D>;
  extern __shared__ uint8_t raw[];
  const uint32_t smem = smem_aligned_1024(raw);
  const uint32_t sv = smem, bar = sv + Cfg::kKBytes;
  if (threadIdx.x == 0) {
    mbar_init(bar, 1);
    fence_barrier_init();
  }
  block_sync();
  if (threadIdx.x == 0) {
    mbar_arrive_expect_tx(bar, Cfg::kKBytes);
    for (int slab = 0; slab < D / 64; ++slab) tma_load_4d(sv + slab * Cfg::kKSlabBytes, &map_v, bar, slab * 64, 0, 0, 0);
  }
  // P in the accumulator layout of a 64 x N S fragment.
  float s[N / 2];
  load_fragment(p_in, s, N);
  uint32_t pk[N / 4];
  pack_probabilities<Cfg>(s, pk);
  float o[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
  mbar_wait(bar, 0);
  wgmma_fence();
  gemm_pv<Cfg>(pk, sv, o);
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(o);
  store_fragment(o, out, D);
}

// dS's way to shared memory in the backward: a 64 x 64 fragment given as floats (in[row][col]) is packed to E and
// stored transposed into a 128-byte-swizzled slab by store_transposed_sw128; the slab's bytes are copied out
// verbatim, so the check sees the exact layout the dQ GEMM later reads.
template <typename E>
__global__ void __launch_bounds__(128, 1) probe_store_transposed(const float* in, uint16_t* out) {
  extern __shared__ uint8_t raw[];
  const uint32_t smem = smem_aligned_1024(raw);
  const uint8_t* ptr = raw + (smem - smem_u32(raw));
  float acc[32];
  load_fragment(in, acc, 64);
  uint32_t frag[16];
  pack_fragment<E>(acc, frag);
  store_transposed_sw128<64>(smem, frag, threadIdx.x % 128);
  block_sync();
  const uint16_t* slab = reinterpret_cast<const uint16_t*>(ptr);
  for (int i = threadIdx.x; i < 64 * 64; i += blockDim.x) out[i] = slab[i];
}

// FP8: S = Q Kᵀ for a 64 x D query tile and an N x D key tile of E4M3 codes, through the FP8 kernel's gemm_ss_fp8:
// TMA boxes of one swizzle span (128 bytes, 64 at d64), K-major descriptors, wgmma m64nNk32.
template <int N, int D>
__global__ void __launch_bounds__(128, 1)
probe_fp8_qk(const __grid_constant__ TmaMap map_q, const __grid_constant__ TmaMap map_k, float* out) {
  constexpr int kSwizzle = D >= 128 ? 128 : 64, kSlabs = D / kSwizzle;
  extern __shared__ uint8_t raw[];
  const uint32_t smem = smem_aligned_1024(raw);
  const uint32_t sq = smem, sk = smem + 64 * D, bar = sk + N * D;
  if (threadIdx.x == 0) {
    mbar_init(bar, 1);
    fence_barrier_init();
  }
  block_sync();
  if (threadIdx.x == 0) {
    mbar_arrive_expect_tx(bar, 64 * D + N * D);
    for (int slab = 0; slab < kSlabs; ++slab) {
      tma_load_4d(sq + slab * 64 * kSwizzle, &map_q, bar, slab * kSwizzle, 0, 0, 0);
      tma_load_4d(sk + slab * N * kSwizzle, &map_k, bar, slab * kSwizzle, 0, 0, 0);
    }
  }
  mbar_wait(bar, 0);
  float s[N / 2];
  wgmma_fence();
  gemm_ss_fp8<N, D, kSwizzle>(sq, 64 * kSwizzle, sk, N * kSwizzle, s);
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(s);
  store_fragment(s, out, N);
}

// FP8: O = P V for P given as floats (64 x N, cast to E4M3 in registers by the FP8 kernel's pack_fragment_e4m3) and
// Vᵀ (D rows of N keys, permuted inside every 16 keys, as the quantiser writes it), through gemm_rs_fp8.
template <int N, int D>
__global__ void __launch_bounds__(128, 1)
probe_fp8_pv(const float* p_in, const __grid_constant__ TmaMap map_vt, float* out) {
  extern __shared__ uint8_t raw[];
  const uint32_t smem = smem_aligned_1024(raw);
  const uint32_t sv = smem, bar = sv + N * D;
  if (threadIdx.x == 0) {
    mbar_init(bar, 1);
    fence_barrier_init();
  }
  block_sync();
  if (threadIdx.x == 0) {
    mbar_arrive_expect_tx(bar, N * D);
    for (int slab = 0; slab < N / 128; ++slab) tma_load_4d(sv + slab * D * 128, &map_vt, bar, slab * 128, 0, 0, 0);
  }
  float s[N / 2];
  load_fragment(p_in, s, N);
  uint32_t pk[N / 8];
  pack_fragment_e4m3(s, pk);
  float o[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
  mbar_wait(bar, 0);
  wgmma_fence();
  gemm_rs_fp8<D, N>(pk, sv, D * 128, o);
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(o);
  store_fragment(o, out, D);
}

}  // namespace fa
