// The FP8 forward mainloop: the producer's TMA loads (Q and K as E4M3 rows, Vᵀ as E4M3 rows of keys) into the ring,
// and one consumer warpgroup's walk over the key blocks of its 64 query rows. The blocks' descales fold into what the
// loop computes anyway: Q's and the block's K descale into the exponent's multiplier, V's into the rescale of O (O is
// kept in units of the current block's V descale and brought to the true scale once, at the end).
#pragma once
#include "common/mask.cuh"
#include "common/pipeline.cuh"
#include "common/softmax.cuh"
#include "common/tile_scheduler.cuh"
#include "fp8/fp8_config.cuh"
#include "fp8/fp8_gemm.cuh"
#include "fp8/fp8_params.cuh"
#include "fwd/fwd_config.cuh"
#include "fwd/fwd_mainloop.cuh"
#include "fwd/fwd_params.cuh"

namespace fa {

// One thread issues every load: Q once per tile, then K and Vᵀ of each visited key block into the ring.
template <class Cfg>
struct Fp8Loader {
  const TmaMap* tma_q;
  const TmaMap* tma_k;
  const TmaMap* tma_vt;
  uint32_t smem;
  const FwdBarriers<Cfg>& bars;
  PipelineState<Cfg::kStages> kv;
  int q_count = 0;

  // As FwdLoader::load_q: Q is loaded even for a tile that sees no key; its index goes into the buffer's slot first.
  __device__ __forceinline__ void load_q(const Tile& t, int m0, int tile) {
    const int b = q_count % Cfg::kQStages;
    mbar_wait(bars.empty_q(b), ((q_count / Cfg::kQStages) & 1) ^ 1);
    st_shared_s32(bars.tile_slot(b), tile);
    mbar_arrive_expect_tx(bars.full_q(b), Cfg::kQBytes);
#pragma unroll
    for (int slab = 0; slab < Cfg::kInSlabs; ++slab)
      tma_load_4d(smem + Cfg::kOffQ + b * Cfg::kQBytes + slab * Cfg::kQInSlabBytes, tma_q, bars.full_q(b),
                  slab * Cfg::kSwizzleBytes, m0, t.head, t.batch);
    ++q_count;
  }

  __device__ __forceinline__ void finish(int num_tiles) {
    const int b = q_count % Cfg::kQStages;
    mbar_wait(bars.empty_q(b), ((q_count / Cfg::kQStages) & 1) ^ 1);
    st_shared_s32(bars.tile_slot(b), num_tiles);
    mbar_arrive(bars.full_q(b));
  }

  __device__ __forceinline__ void load_kv(int n_block, int head_k, const Tile& t) {
    const int batch = t.tma_batch;  // dense batches only: rows from 0
    const int s = kv.stage();
    const uint32_t free_parity = kv.phase() ^ 1;
    const int n0 = n_block * Cfg::kBlockN;
    mbar_wait(bars.empty_k(s), free_parity);
    mbar_arrive_expect_tx(bars.full_k(s), Cfg::kKBytes);
#pragma unroll
    for (int slab = 0; slab < Cfg::kInSlabs; ++slab)
      tma_load_4d(smem + Cfg::kOffK + s * Cfg::kKBytes + slab * Cfg::kKInSlabBytes, tma_k, bars.full_k(s),
                  slab * Cfg::kSwizzleBytes, n0, head_k, batch);
    mbar_wait(bars.empty_v(s), free_parity);
    mbar_arrive_expect_tx(bars.full_v(s), Cfg::kVBytes);
#pragma unroll
    for (int slab = 0; slab < Cfg::kVSlabs; ++slab)
      tma_load_4d(smem + Cfg::kOffV + s * Cfg::kVBytes + slab * Cfg::kVSlabBytes, tma_vt, bars.full_v(s), n0 + slab * 128, 0,
                  head_k, batch);
    ++kv.count;
  }
};

// One consumer warpgroup's pass over the key blocks of a tile, in sequence (S, softmax, P·V), its GEMMs in its
// ping-pong turn: a turn holds a block's P·V and the next block's S, so the siblings' softmax overlaps them.
template <class Cfg>
struct Fp8Consumer {
  using Softmax = ScaledOnlineSoftmax<Cfg::kBlockN / 2, (int)Cfg::kProbabilityShift, Cfg::kPolyExpEvery>;
  const FwdParams& p;
  const Fp8Params& f;
  const Mask& mask;
  const FwdBarriers<Cfg>& bars;
  uint32_t smem;
  int consumer;  // 0 or 1
  int thread;    // 0 .. 127 inside the warpgroup

  __device__ __forceinline__ uint32_t k_stage(int s) const { return smem + Cfg::kOffK + s * Cfg::kKBytes; }
  __device__ __forceinline__ uint32_t v_stage(int s) const { return smem + Cfg::kOffV + s * Cfg::kVBytes; }
  __device__ __forceinline__ void release(uint32_t bar) const { if (thread == 0) mbar_arrive(bar); }
  __device__ __forceinline__ void schedule_wait() const {
    if constexpr (Cfg::kPingPong) named_barrier_sync(Cfg::kBarSchedule + consumer, 2 * 128);
  }
  __device__ __forceinline__ void schedule_pass() const {
    if constexpr (Cfg::kPingPong) named_barrier_arrive(Cfg::kBarSchedule + (consumer + 1) % Cfg::kConsumerWGs, 2 * 128);
  }

  // The mask on a fresh S fragment; row0 is this thread's first row (the second is row0 + 8).
  __device__ __forceinline__ void apply_mask(float (&s)[Cfg::kBlockN / 2], int m0, int row0, int n_block) const {
    const int n0 = n_block * Cfg::kBlockN;
    if (!mask.tile_needs_mask(m0, Cfg::kBlockM, n0, Cfg::kBlockN)) return;
    const int col0 = n0 + 2 * (lane_id() & 3);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int first = mask.first_key(row0 + 8 * h), last = mask.last_key(row0 + 8 * h);
#pragma unroll
      for (int j = 0; j < Cfg::kBlockN / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = col0 + 8 * j + e;
          if (col < first || col > last) s[4 * j + 2 * h + e] = neg_inf();
        }
      }
    }
  }

  // S = Q·Kᵀ of the block in stage st into s (issued only: the caller commits and waits).
  __device__ __forceinline__ void issue_s(uint32_t q_wg, int st, float (&s)[Cfg::kBlockN / 2]) const {
    gemm_ss_fp8<Cfg::kBlockN, Cfg::kHeadDim, Cfg::kSwizzleBytes>(q_wg, Cfg::kQInSlabBytes, k_stage(st), Cfg::kKInSlabBytes, s);
  }

  // Block n's scores (in s) to E4M3 probabilities in pk: mask, softmax with the block's exponent multiplier, and O
  // moved to this block's V units with the softmax's rescale (one multiply per element, as without FP8).
  __device__ __forceinline__ void probabilities(float (&s)[Cfg::kBlockN / 2], uint32_t (&pk)[Cfg::kBlockN / 8], float (&o)[Cfg::kHeadDim / 2],
                                                Softmax& softmax, int m0, int row0, int n, float exponent, float v_scale, float& v_units) const {
    float rescale[2];
    apply_mask(s, m0, row0, n);
    softmax.step(s, exponent, rescale);
    pack_fragment_e4m3(s, pk);
    const float units = v_units / v_scale;
    v_units = v_scale;
    rescale[0] *= units;
    rescale[1] *= units;
    scale_rows(o, rescale);
  }

  // Key blocks n_max … n_min of tile t into o and softmax, each block's S, softmax and P·V in turn; kv counts blocks
  // across tiles. The turn is held from the first S to the last P·V and passed at the end: a turn holds a block's P·V
  // and the next block's S, so the sibling's softmax overlaps them.
  __device__ __forceinline__ void run(const Tile& t, int m0, int n_min, int n_max, int q_buffer, PipelineState<Cfg::kStages>& kv,
                                      float (&o)[Cfg::kHeadDim / 2], Softmax& softmax) const {
    if constexpr (Cfg::kConsumerWGs == 3) {
      if (m0 + consumer * 64 >= mask.seqlen_q) {
        NoLoads no_loads;  // the producer warpgroup refills the ring
        pass_idle(*this, n_min, n_max, kv, no_loads);
        if constexpr (Cfg::kQStages == 1) mbar_arrive(bars.empty_q(q_buffer));
        schedule_pass();
        return;
      }
    }
    const uint32_t q_wg = smem + Cfg::kOffQ + q_buffer * Cfg::kQBytes + consumer * Cfg::kQWgBytes;
    const int row0 = m0 + consumer * 64 + (thread / 32) * 16 + (thread % 32) / 4;
    const int64_t kv_head = (int64_t)t.batch * p.heads_k + t.head / p.group;
    const float* k_descale = f.k_descale + kv_head * f.kv_blocks;
    const float* v_descale = f.v_descale + kv_head * f.kv_blocks;
    // Rows past the last query (the tile's tail) read the last block's descale.
    const int q_first = (m0 + consumer * 64) / f.q_block, q_index = q_first < f.q_blocks - 1 ? q_first : f.q_blocks - 1;
    const float exponent_q = p.score_scale_log2 * f.q_descale[((int64_t)t.batch * p.heads_q + t.head) * f.q_blocks + q_index];
    float v_units = v_descale[n_max * Cfg::kBlockN / f.kv_block];  // O is kept in units of the last P·V's V descale
    float s[Cfg::kBlockN / 2];
    uint32_t pk[Cfg::kBlockN / 8];
    schedule_wait();
    {
      for (int n = n_max; n >= n_min; --n) {
        // The block's descales are read before the waits, whose time hides their latency.
        const int block = n * Cfg::kBlockN / f.kv_block;
        const float k_scale = k_descale[block], v_scale = v_descale[block];
        const int st = kv.stage();
        mbar_wait(bars.full_k(st), kv.phase());
        wgmma_fence();
        issue_s(q_wg, st, s);
        wgmma_commit();
        schedule_pass();
        wgmma_wait<0>();
        fence_regs(s);
        release(bars.empty_k(st));
        probabilities(s, pk, o, softmax, m0, row0, n, exponent_q * k_scale, v_scale, v_units);
        mbar_wait(bars.full_v(st), kv.phase());
        schedule_wait();
        wgmma_fence();
        gemm_rs_fp8<Cfg::kHeadDim, Cfg::kBlockN>(pk, v_stage(st), Cfg::kVSlabBytes, o);
        wgmma_commit();
        wgmma_wait<0>();
        fence_regs(o);
        release(bars.empty_v(st));
        ++kv.count;
      }
    }
    softmax.out_scale = v_units;
    // With one Q buffer it goes back once the tile's last S is done, so the next tile's Q loads under the epilogue.
    if constexpr (Cfg::kQStages == 1) mbar_arrive(bars.empty_q(q_buffer));
    schedule_pass();
  }
};

}  // namespace fa
