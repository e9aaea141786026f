// The forward mainloop: the producer's TMA loads into the K/V ring, and one consumer warpgroup's walk over the
// key blocks of its 64 query rows: S = Q·Kᵀ (wgmma, both operands in shared memory), mask and online softmax in
// registers, O += P·V (wgmma, P from registers). With intra-warpgroup overlap the softmax of block j runs while
// the tensor cores compute P·V of block j+1 and S of block j-1 (blocks are visited right to left).
#pragma once
#include "fwd/fwd_config.cuh"
#include "fwd/fwd_params.cuh"
#include "common/gemm.cuh"
#include "common/mask.cuh"
#include "common/numeric.cuh"
#include "common/softmax.cuh"
#include "common/tile_scheduler.cuh"
#include "fwd/fwd_varlen.cuh"

namespace fa {

// ---- producer -------------------------------------------------------------------------------------------
// One thread issues every load: Q once per tile, then K and V of each visited key block into the ring.
template <class Cfg>
struct FwdLoader {
  const TmaMap* tma_q;
  const TmaMap* tma_k;
  const TmaMap* tma_v;
  uint32_t smem;
  const FwdBarriers<Cfg>& bars;
  PipelineState<Cfg::kStages> kv;  // blocks loaded so far (the consumers count the same sequence)
  int q_count = 0;

  // Q is loaded even for a tile that sees no key, so consumers follow one protocol for every tile. The tile's
  // index goes into the buffer's slot before the arrive that the consumers wait on.
  __device__ __forceinline__ void load_q(const Tile& t, int m0, int tile) {
    const int b = q_count % Cfg::kQStages;
    mbar_wait(bars.empty_q(b), ((q_count / Cfg::kQStages) & 1) ^ 1);
    st_shared_s32(bars.tile_slot(b), tile);
    mbar_arrive_expect_tx(bars.full_q(b), Cfg::kQBytes);
#pragma unroll
    for (int slab = 0; slab < Cfg::kSlabs; ++slab)
      tma_load_4d(smem + Cfg::kOffQ + b * Cfg::kQBytes + slab * Cfg::kQSlabBytes, tma_q, bars.full_q(b), slab * 64,
                  t.q_row0 + m0, t.head, t.tma_batch);
    ++q_count;
  }

  // The end of the CTA's tiles: the next Q buffer's slot gets an index past the last tile, with no load behind it.
  __device__ __forceinline__ void finish(int num_tiles) {
    const int b = q_count % Cfg::kQStages;
    mbar_wait(bars.empty_q(b), ((q_count / Cfg::kQStages) & 1) ^ 1);
    st_shared_s32(bars.tile_slot(b), num_tiles);
    mbar_arrive(bars.full_q(b));
  }

  __device__ __forceinline__ void load_kv(int n_block, int head_k, const Tile& t) {
    const int row = t.k_row0 + n_block * Cfg::kBlockN;
    const int s = kv.stage();
    const uint32_t free_parity = kv.phase() ^ 1;  // the first lap finds every stage free
    mbar_wait(bars.empty_k(s), free_parity);
    mbar_arrive_expect_tx(bars.full_k(s), Cfg::kKBytes);
#pragma unroll
    for (int slab = 0; slab < Cfg::kSlabs; ++slab)
      tma_load_4d(smem + Cfg::kOffK + s * Cfg::kKBytes + slab * Cfg::kKSlabBytes, tma_k, bars.full_k(s),
                  slab * 64, row, head_k, t.tma_batch);
    mbar_wait(bars.empty_v(s), free_parity);
    mbar_arrive_expect_tx(bars.full_v(s), Cfg::kKBytes);
#pragma unroll
    for (int slab = 0; slab < Cfg::kSlabs; ++slab)
      tma_load_4d(smem + Cfg::kOffV + s * Cfg::kKBytes + slab * Cfg::kKSlabBytes, tma_v, bars.full_v(s),
                  slab * 64, row, head_k, t.tma_batch);
    ++kv.count;
  }
};

// Warp-specialised producer: walks the same tiles as the consumers and stays ahead of them by the ring depth.
// Loader: FwdLoader, or the FP8 kernel's (load_q, load_kv, finish).
template <class Cfg, class Loader>
__device__ __forceinline__ void fwd_producer(const FwdParams& p, const Mask& mask, Loader& loader) {
  const TileDispenser dispenser{p.tile_counter};
  const int num_tiles = fwd_tile_count<Cfg>(p);
  int tile = blockIdx.x;
  while (tile < num_tiles) {
    const int next = dispenser.next(tile);  // drawn now, needed after this tile's loads: the atomic's latency hides
    const Tile t = fwd_tile<Cfg>(p, tile);
    const int m0 = t.m_block * Cfg::kBlockM;
    int n_min, n_max;
    tile_mask<Cfg>(mask, t).block_range(m0, Cfg::kBlockM, Cfg::kBlockN, n_min, n_max);
    loader.load_q(t, m0, tile);
    for (int n = n_max; n >= n_min; --n) loader.load_kv(n, t.head / p.group, t);
    tile = next;
  }
  loader.finish(num_tiles);
  dispenser.retire();
}

// Without warp specialisation (ablation): consumer 0's first thread loads a tile's first kStages blocks when
// the tile starts and the block kStages ahead each time a block has been consumed.
template <class Cfg>
struct InlineProducer {
  FwdLoader<Cfg>* loader;  // null on every thread but the loading one
  int n_max = 0, n_min = 0, head_k = 0, next = 0;
  Tile tile{};

  __device__ __forceinline__ void begin_tile(const FwdParams& p, const Tile& t, int m0, int n_min_, int n_max_) {
    if (loader == nullptr) return;
    n_min = n_min_;
    n_max = n_max_;
    head_k = t.head / p.group;
    tile = t;
    next = 0;
    loader->load_q(t, m0, 0);  // the slot is not read without warp specialisation
    while (next < Cfg::kStages && n_max - next >= n_min) loader->load_kv(n_max - next++, head_k, tile);
  }
  __device__ __forceinline__ void block_consumed() {
    if (loader != nullptr && n_max - next >= n_min) loader->load_kv(n_max - next++, head_k, tile);
  }
};

struct NoLoads {
  __device__ __forceinline__ void block_consumed() {}
};

// Three consumers (192-row tiles): a consumer whose 64 rows all lie past the last query (the last tile of a length
// that 192 does not divide, e.g. rows 512…575 at 512 tokens) takes its turns as a working one does but issues no GEMM,
// and hands each block back once loaded: its siblings get the tensor cores at once. `c` is the BF16 or FP8 consumer.
template <class Consumer, class State, class Loads>
__device__ __forceinline__ void pass_idle(const Consumer& c, int n_min, int n_max, State& kv, Loads& loads) {
  c.schedule_wait();
  for (int n = n_max; n >= n_min; --n, ++kv.count) {
    const int st = kv.stage();
    mbar_wait(c.bars.full_k(st), kv.phase());
    c.schedule_pass();
    c.release(c.bars.empty_k(st));
    mbar_wait(c.bars.full_v(st), kv.phase());
    c.schedule_wait();
    c.release(c.bars.empty_v(st));
    loads.block_consumed();
  }
}

// ---- consumer GEMMs -------------------------------------------------------------------------------------
// A warpgroup's Q operand for a tile: its 64 rows in shared memory, and with kQInRegs also as a register fragment.
template <class Cfg>
struct QOperand {
  uint32_t smem;  // the warpgroup's rows inside Q's buffer
  uint32_t frag[Cfg::kQInRegs ? Cfg::kHeadDim / 4 : 1];
  __device__ __forceinline__ void load(uint32_t q_wg, int thread) {
    smem = q_wg;
    if constexpr (Cfg::kQInRegs) load_a_fragment_sw128<Cfg::kHeadDim>(q_wg, Cfg::kQSlabBytes, frag, thread);
  }
};

// S (64 x kBlockN) = Q_wg (64 x d) · K_stageᵀ, both K-major.
template <class Cfg>
__device__ __forceinline__ void gemm_qk(const QOperand<Cfg>& q, uint32_t k_stage, float (&s)[Cfg::kBlockN / 2]) {
  if constexpr (Cfg::kQInRegs)
    gemm_rs_kmajor<typename Cfg::Element, Cfg::kBlockN, Cfg::kHeadDim>(q.frag, k_stage, Cfg::kKSlabBytes, s, false);
  else
    gemm_ss_kmajor<typename Cfg::Element, Cfg::kBlockN, Cfg::kHeadDim>(q.smem, Cfg::kQSlabBytes, k_stage, Cfg::kKSlabBytes, s, false);
}

// O (64 x d) += P (64 x kBlockN, registers) · V_stage (kBlockN x d); V is MN-major for this product.
template <class Cfg>
__device__ __forceinline__ void gemm_pv(const uint32_t (&pk)[Cfg::kBlockN / 4], uint32_t v_stage,
                                        float (&o)[Cfg::kHeadDim / 2]) {
  gemm_rs_mnmajor<typename Cfg::Element, Cfg::kHeadDim, Cfg::kBlockN>(pk, v_stage, Cfg::kKSlabBytes, o);
}

template <class Cfg>
__device__ __forceinline__ void pack_probabilities(const float (&s)[Cfg::kBlockN / 2], uint32_t (&pk)[Cfg::kBlockN / 4]) {
  pack_fragment<typename Cfg::Element>(s, pk);
}

// Softcap and mask on a fresh S fragment. row0 is this thread's first row (the second is row0 + 8).
template <class Cfg>
__device__ __forceinline__ void score_mod(const FwdParams& p, const Mask& mask, float (&s)[Cfg::kBlockN / 2],
                                          int m0, int row0, int n_block) {
  if (p.has_softcap) {
#pragma unroll
    for (int i = 0; i < Cfg::kBlockN / 2; ++i) s[i] = fast_tanh(s[i] * p.softcap_premul);
  }
  const int n0 = n_block * Cfg::kBlockN;
  if (mask.tile_needs_mask(m0, Cfg::kBlockM, n0, Cfg::kBlockN)) {
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
}

// ---- one consumer warpgroup's pass over the key blocks of a tile ----------------------------------------
template <class Cfg>
struct ConsumerMainloop {
  const FwdParams& p;
  const Mask& mask;
  const FwdBarriers<Cfg>& bars;
  uint32_t smem;
  int consumer;  // 0 .. kConsumerWGs-1
  int thread;    // 0 .. 127 inside the warpgroup

  __device__ __forceinline__ uint32_t k_stage(int s) const { return smem + Cfg::kOffK + s * Cfg::kKBytes; }
  __device__ __forceinline__ uint32_t v_stage(int s) const { return smem + Cfg::kOffV + s * Cfg::kKBytes; }
  __device__ __forceinline__ void release(uint32_t bar) const { if (thread == 0) mbar_arrive(bar); }
  // Q's only buffer, once the tile's last S has been computed: every consumer thread arrives (each has read the tile
  // slot), so the producer loads the next tile's Q under the last P·V and the epilogue. With two Q buffers the next
  // Q is loaded already and the buffer goes back after the mainloop (fwd_consumer), where its release costs less;
  // O staged in Q's buffer keeps it until the epilogue's store.
  __device__ __forceinline__ void release_q(int q_buffer) const {
    if constexpr (!Cfg::kOAliasQ && Cfg::kQStages == 1) mbar_arrive(bars.empty_q(q_buffer));
  }
  __device__ __forceinline__ void schedule_wait() const {
    if constexpr (Cfg::kPingPong) named_barrier_sync(Cfg::kBarSchedule + consumer, 2 * 128);
  }
  __device__ __forceinline__ void schedule_pass() const {
    if constexpr (Cfg::kPingPong) {
      const int next = Cfg::kConsumerWGs == 2 ? consumer ^ 1 : (consumer + 1) % Cfg::kConsumerWGs;  // round robin
      named_barrier_arrive(Cfg::kBarSchedule + next, 2 * 128);
    }
  }

  // A tile's first block: S, mask, softmax and P (O is still zero: nothing to rescale). With kInTurn the S GEMM is
  // issued in this consumer's ping-pong turn. Advances nothing: the caller moves kv on.
  template <bool kInTurn>
  __device__ __forceinline__ void first_block(const QOperand<Cfg>& q, const PipelineState<Cfg::kStages>& kv, int m0, int row0,
                                              int n_max, float (&s)[Cfg::kBlockN / 2], uint32_t (&pk)[Cfg::kBlockN / 4],
                                              float (&rescale)[2], OnlineSoftmax<Cfg::kBlockN / 2>& softmax) const {
    const int st = kv.stage();
    mbar_wait(bars.full_k(st), kv.phase());
    if constexpr (kInTurn) schedule_wait();
    wgmma_fence();
    gemm_qk<Cfg>(q, k_stage(st), s);
    wgmma_commit();
    if constexpr (kInTurn) schedule_pass();
    wgmma_wait<0>();
    fence_regs(s);
    release(bars.empty_k(st));
    score_mod<Cfg>(p, mask, s, m0, row0, n_max);
    softmax.step(s, p.score_scale_log2, rescale);
    pack_probabilities<Cfg>(s, pk);
  }

  // A tile's last P·V, alone, from the V stage of `v`; with kInTurn in this consumer's ping-pong turn.
  template <bool kInTurn, class Loads>
  __device__ __forceinline__ void last_pv(const PipelineState<Cfg::kStages>& v, const uint32_t (&pk)[Cfg::kBlockN / 4],
                                          float (&o)[Cfg::kHeadDim / 2], Loads& loads) const {
    const int vst = v.stage();
    mbar_wait(bars.full_v(vst), v.phase());
    if constexpr (kInTurn) schedule_wait();
    wgmma_fence();
    gemm_pv<Cfg>(pk, v_stage(vst), o);
    wgmma_commit();
    if constexpr (kInTurn) schedule_pass();
    wgmma_wait<0>();
    fence_regs(o);
    release(bars.empty_v(vst));
    loads.block_consumed();
  }

  // The loop without overlap: each block's S, softmax and P·V in sequence, from this consumer's turn to its last
  // P·V, the turn still held. With ping-pong a consumer holds its turn from its P·V through the next S, so the
  // siblings' softmax overlaps them.
  template <class Loads>
  __device__ __forceinline__ void in_sequence(const QOperand<Cfg>& q, int m0, int n_min, int n_max,
                                              PipelineState<Cfg::kStages>& kv, float (&o)[Cfg::kHeadDim / 2],
                                              OnlineSoftmax<Cfg::kBlockN / 2>& softmax, float (&s)[Cfg::kBlockN / 2],
                                              Loads& loads) const {
    const int row0 = m0 + consumer * 64 + (thread / 32) * 16 + (thread % 32) / 4;
    schedule_wait();
    for (int n = n_max; n >= n_min; --n) {
      const int st = kv.stage();
      mbar_wait(bars.full_k(st), kv.phase());
      wgmma_fence();
      gemm_qk<Cfg>(q, k_stage(st), s);
      wgmma_commit();
      schedule_pass();
      wgmma_wait<0>();
      fence_regs(s);
      release(bars.empty_k(st));
      softmax_then_pv(m0, row0, n, kv, o, softmax, s, loads);
    }
  }

  // Block n (its S in s, in stage kv.stage()): mask, softmax, P, O rescaled; then its P·V in this consumer's turn,
  // taken here and still held, completed; its V handed back and kv moved on.
  template <class Loads>
  __device__ __forceinline__ void softmax_then_pv(int m0, int row0, int n, PipelineState<Cfg::kStages>& kv,
                                                  float (&o)[Cfg::kHeadDim / 2], OnlineSoftmax<Cfg::kBlockN / 2>& softmax,
                                                  float (&s)[Cfg::kBlockN / 2], Loads& loads) const {
    uint32_t pk[Cfg::kBlockN / 4];
    float rescale[2];
    const int st = kv.stage();
    score_mod<Cfg>(p, mask, s, m0, row0, n);
    softmax.step(s, p.score_scale_log2, rescale);
    pack_probabilities<Cfg>(s, pk);
    scale_rows(o, rescale);
    mbar_wait(bars.full_v(st), kv.phase());
    schedule_wait();
    wgmma_fence();
    gemm_pv<Cfg>(pk, v_stage(st), o);
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(o);
    release(bars.empty_v(st));
    loads.block_consumed();
    ++kv.count;
  }

  // Runs blocks n_max down to n_min (n_max >= n_min) into o / softmax; kv counts blocks across tiles.
  // `loads.block_consumed()` runs after each block's V is released (the inline loader refills the ring there).
  template <class Loads>
  __device__ __forceinline__ void run(int m0, int n_min, int n_max, int q_buffer, PipelineState<Cfg::kStages>& kv,
                                      float (&o)[Cfg::kHeadDim / 2], OnlineSoftmax<Cfg::kBlockN / 2>& softmax,
                                      Loads& loads) const {
    if constexpr (Cfg::kConsumerWGs == 3 && !Cfg::kIntraWgOverlap && !Cfg::kChainPvS) {
      if (m0 + consumer * 64 >= mask.seqlen_q) {
        pass_idle(*this, n_min, n_max, kv, loads);
        release_q(q_buffer);
        schedule_pass();
        return;
      }
    }
    QOperand<Cfg> q;
    q.load(smem + Cfg::kOffQ + q_buffer * Cfg::kQBytes + consumer * Cfg::kWgRowBytes, thread);
    const int row0 = m0 + consumer * 64 + (thread / 32) * 16 + (thread % 32) / 4;
    float s[Cfg::kBlockN / 2];
    uint32_t pk[Cfg::kBlockN / 4];
    float rescale[2];

    if constexpr (Cfg::kIntraWgOverlap) {
      // First block: S, softmax, P. Its P·V is issued together with the next block's S.
      first_block<false>(q, kv, m0, row0, n_max, s, pk, rescale, softmax);
      PipelineState<Cfg::kStages> v = kv;
      ++kv.count;
      for (int n = n_max - 1; n >= n_min; --n) {
        const int st = kv.stage(), vst = v.stage();
        mbar_wait(bars.full_k(st), kv.phase());
        schedule_wait();
        wgmma_fence();
        gemm_qk<Cfg>(q, k_stage(st), s);
        wgmma_commit();
        mbar_wait(bars.full_v(vst), v.phase());
        gemm_pv<Cfg>(pk, v_stage(vst), o);
        wgmma_commit();
        schedule_pass();
        wgmma_wait<1>();  // S of this block is ready; P·V of the previous one may still run
        fence_regs(s);
        release(bars.empty_k(st));
        score_mod<Cfg>(p, mask, s, m0, row0, n);
        softmax.step(s, p.score_scale_log2, rescale);
        wgmma_wait<0>();
        fence_regs(o);
        release(bars.empty_v(vst));
        loads.block_consumed();
        pack_probabilities<Cfg>(s, pk);
        scale_rows(o, rescale);
        v = kv;
        ++kv.count;
      }
      release_q(q_buffer);  // every S of the tile is done: the next tile's Q may load under the last P·V and the epilogue
      last_pv<false>(v, pk, o, loads);
    } else if constexpr (Cfg::kChainPvS) {
      // Each turn issues block n's P·V and block n-1's S back to back; the consumer then waits for both, runs the
      // softmax of n-1 while the sibling has its turn, and rescales O (P·V of n has finished by then). Both GEMMs
      // are retired in the iteration that issued them: an accumulator in flight across the loop's back edge makes
      // ptxas copy it there and serialise every wgmma of the kernel (C7515).
      first_block<true>(q, kv, m0, row0, n_max, s, pk, rescale, softmax);
      for (int n = n_max; n > n_min; --n) {
        const int st = kv.stage();
        mbar_wait(bars.full_v(st), kv.phase());
        ++kv.count;
        const int next = kv.stage();
        schedule_wait();
        wgmma_fence();
        gemm_pv<Cfg>(pk, v_stage(st), o);
        wgmma_commit();
        mbar_wait(bars.full_k(next), kv.phase());
        gemm_qk<Cfg>(q, k_stage(next), s);
        wgmma_commit();
        schedule_pass();
        wgmma_wait<0>();
        fence_regs(s);
        fence_regs(o);
        release(bars.empty_v(st));
        loads.block_consumed();
        release(bars.empty_k(next));
        score_mod<Cfg>(p, mask, s, m0, row0, n - 1);
        softmax.step(s, p.score_scale_log2, rescale);
        pack_probabilities<Cfg>(s, pk);
        scale_rows(o, rescale);
      }
      release_q(q_buffer);  // every S of the tile is done: the next tile's Q may load under the last P·V and the epilogue
      last_pv<true>(kv, pk, o, loads);
      ++kv.count;
    } else {
      // Without the overlap (d64, d128; and the ablations): in sequence, then the turn passes.
      in_sequence(q, m0, n_min, n_max, kv, o, softmax, s, loads);
      release_q(q_buffer);
      schedule_pass();
    }
  }
};

}  // namespace fa
