// Unit kernels that prove the decode family's own device pieces against the CPU, each in the exact code path the
// decode kernel runs: the packed Q operand (query heads of one KV head stacked as rows; the register fragment read
// from global memory, or the swizzled shared-memory tile) through S = Q·Kᵀ, and the producer warp's loads of a key
// block (page-table lookups, page-aligned boxes placed in the stage, boxes past the keys skipped, a page outside the
// pool recorded and replaced by page 0, the transaction byte count), and the merge of split results through their LSE
// (common/combine.cuh's merge_row, as the decode kernel's last split runs it). `flashattn verify --device cuda` runs
// them before the KV-cache cases (Probes/DecodeProbes.cs).
#include "decode/decode_mainloop.cuh"
#include "common/combine.cuh"

namespace fa {

template <typename E, int D, int BN, QSource Q>
using ProbeDecodeConfig = DecodeConfig<E, DecodeVariant{.head_dim = D, .block_n = BN, .stages = 1, .q_source = Q, .ctas_per_sm = 1}>;

// Spins on an mbarrier phase a bounded number of times: a wrong transaction count then shows as a timeout, not a hang.
__device__ __forceinline__ bool mbar_wait_bounded(uint32_t bar, uint32_t parity) {
  for (int i = 0; i < (1 << 24); ++i)
    if (mbar_try_wait(bar, parity)) return true;
  return false;
}

// S = Q·Kᵀ of the m-block's 64 packed rows of (batch, head_k) against 64 keys (rows 0-63 of map_k, one KV head), via
// the decode kernel's DecodeQ (loaded as the kernel loads it) and its GEMM; S written as out[64][64].
template <typename E, int D, QSource Q>
__global__ void __launch_bounds__(128, 1)
probe_decode_q(const __grid_constant__ DecodeParams p, const __grid_constant__ TmaMap map_k, int batch, int head_k, int m_block,
               float* out, int* timed_out) {
  using Cfg = ProbeDecodeConfig<E, D, 64, Q>;
  extern __shared__ uint8_t raw[];
  const uint32_t smem = smem_aligned_1024(raw);
  uint8_t* smem_ptr = smem_aligned_1024_ptr(raw);
  const uint32_t bar = smem + Cfg::kOffBar;
  if (threadIdx.x == 0) {
    mbar_init(bar, 1);
    fence_barrier_init();
  }
  block_sync();
  if (threadIdx.x == 0) {
    mbar_arrive_expect_tx(bar, Cfg::kKBytes);
    for (int slab = 0; slab < Cfg::kSlabs; ++slab) tma_load_4d(smem + Cfg::kOffK + slab * Cfg::kKSlabBytes, &map_k, bar, slab * 64, 0, 0, 0);
  }
  DecodeUnit u;
  u.batch = batch;
  u.head_k = head_k;
  u.m_block = m_block;
  const int thread = threadIdx.x;
  const DecodeRows rows = decode_rows<Cfg>(p, u, thread);
  DecodeQ<Cfg> q;
  q.load(p, u, rows, smem, smem_ptr, thread);
  if (!mbar_wait_bounded(bar, 0)) {
    *timed_out = 1;
    return;
  }
  float s[32];
  wgmma_fence();
  q.gemm_qk(smem + Cfg::kOffK, s);
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(s);
  const int warp = thread / 32, lane = thread % 32, r = warp * 16 + lane / 4;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int c = 8 * j + 2 * (lane & 3);
    out[r * 64 + c] = s[4 * j];
    out[r * 64 + c + 1] = s[4 * j + 1];
    out[(r + 8) * 64 + c] = s[4 * j + 2];
    out[(r + 8) * 64 + c + 1] = s[4 * j + 3];
  }
}

// The producer warp (warp 4) loads key block n_block of sequence `batch` (keys: its length) into the only stage, from
// the pool or contiguous cache that p and the maps describe; the consumers' first thread waits for both barriers and
// the stage's K and V bytes are copied out verbatim (swizzled, as wgmma reads them).
template <typename E, int D, int BN>
__global__ void __launch_bounds__(160, 1)
probe_decode_kv(const __grid_constant__ DecodeParams p, const __grid_constant__ TmaMap map_k, const __grid_constant__ TmaMap map_v,
                int batch, int head_k, int keys, int n_block, uint16_t* out_k, uint16_t* out_v, int* timed_out) {
  using Cfg = ProbeDecodeConfig<E, D, BN, QSource::kRegisters>;
  extern __shared__ uint8_t raw[];
  const uint32_t smem = smem_aligned_1024(raw);
  const uint8_t* smem_ptr = smem_aligned_1024_ptr(raw);
  const DecodeBarriers<Cfg> bars{smem + Cfg::kOffBar};
  if (threadIdx.x == 0) {
    mbar_init(bars.full_k(0), 1);
    mbar_init(bars.empty_k(0), 1);
    mbar_init(bars.full_v(0), 1);
    mbar_init(bars.empty_v(0), 1);
    fence_barrier_init();
  }
  block_sync();
  DecodeUnit u;
  u.batch = batch;
  u.head_k = head_k;
  u.keys = keys;
  u.n_begin = n_block;
  u.n_end = n_block + 1;
  if (threadIdx.x / 32 == 4) {
    decode_producer<Cfg>(p, KvCacheParams{}, u, &map_k, &map_v, smem, bars);
    return;
  }
  __shared__ int ok;
  if (threadIdx.x == 0) {
    ok = mbar_wait_bounded(bars.full_k(0), 0) && mbar_wait_bounded(bars.full_v(0), 0);
    if (!ok) *timed_out = 1;
  }
  named_barrier_sync(1, 128);
  if (!ok) return;
  const uint16_t* k = reinterpret_cast<const uint16_t*>(smem_ptr + Cfg::kOffK);
  const uint16_t* v = reinterpret_cast<const uint16_t*>(smem_ptr + Cfg::kOffV);
  for (int i = threadIdx.x; i < Cfg::kKBytes / 2; i += 128) {
    out_k[i] = k[i];
    out_v[i] = v[i];
  }
}

// Parts (part, row, head_dim) float32 and (part, row), rows in (batch, seqlen_q, heads_q) order; merged rows to O
// (element type) and LSE with the given strides. Mirrored by ProbeCombineParams in Probes/DecodeProbes.cs.
struct ProbeCombineParams {
  int num_parts;             // 0
  int batch;                 // 4
  int seqlen_q;              // 8
  int heads_q;               // 12
  const float* o_partial;    // 16
  const float* lse_partial;  // 24
  void* o;                   // 32
  int64_t o_stride_b;        // 40 (elements)
  int64_t o_stride_s;        // 48
  int64_t o_stride_h;        // 56
  float* lse;                // 64
  int64_t lse_stride_b;      // 72
  int64_t lse_stride_h;      // 80
  int64_t lse_stride_s;      // 88
};                           // 96 bytes

// One warp per row, four rows per CTA.
template <typename E, int D>
__global__ void __launch_bounds__(128) probe_combine(const __grid_constant__ ProbeCombineParams p) {
  __shared__ float weights[4][kCombineMaxParts];
  const int warp = threadIdx.x / 32;
  const int64_t rows = (int64_t)p.batch * p.seqlen_q * p.heads_q;
  const int64_t row = (int64_t)blockIdx.x * 4 + warp;
  if (row >= rows) return;
  const int h = (int)(row % p.heads_q), s = (int)(row / p.heads_q % p.seqlen_q), b = (int)(row / ((int64_t)p.heads_q * p.seqlen_q));
  void* out = reinterpret_cast<uint16_t*>(p.o) + b * p.o_stride_b + s * p.o_stride_s + h * p.o_stride_h;
  const float lse = merge_row<E, D>(p.o_partial + row * D, rows * D, p.lse_partial + row, rows, p.num_parts, weights[warp], out);
  if (lane_id() == 0) p.lse[b * p.lse_stride_b + h * p.lse_stride_h + s * p.lse_stride_s] = lse;
}

}  // namespace fa
