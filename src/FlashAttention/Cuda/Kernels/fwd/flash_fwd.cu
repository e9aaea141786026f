// FlashAttention-3 forward for Hopper (sm_90a): a persistent, warp-specialised kernel. Warpgroup 0 is the
// producer (one thread issues TMA loads of Q and of K/V into a ring of shared-memory stages, then idles with
// few registers); each further warpgroup (two, or three at d64) computes 64 query rows with wgmma and an online
// softmax, taking turns with its siblings on the tensor cores (ping-pong) and overlapping its own softmax with their GEMMs.
// Instantiated through NVRTC name expressions written by Cuda/Variants/ForwardVariant.cs, e.g.
//   fa::flash_fwd_kernel<fa::FwdConfig<fa::bf16_t, fa::FwdVariant{.head_dim = 128, .block_n = 128, …}>>
#include "fwd/fwd_config.cuh"
#include "fwd/fwd_epilogue.cuh"
#include "fwd/fwd_mainloop.cuh"
#include "fwd/fwd_params.cuh"
#include "common/mask.cuh"
#include "common/tile_scheduler.cuh"

namespace fa {

// One consumer warpgroup's walk over its CTA's tiles: mainloop, then epilogue, per tile.
template <class Cfg>
__device__ __forceinline__ void fwd_consumer(const FwdParams& p, const Mask& mask, const FwdBarriers<Cfg>& bars,
                                             uint32_t smem, uint8_t* smem_ptr, const TmaMap* tma_o, int consumer,
                                             int thread, InlineProducer<Cfg> inline_loads) {
  // The first consumer starts with the tensor cores' turn.
  if (Cfg::kPingPong && consumer == 0) named_barrier_arrive(Cfg::kBarSchedule, 2 * 128);
  PipelineState<Cfg::kStages> kv;
  int q_count = 0;
  float o[Cfg::kHeadDim / 2];
  OnlineSoftmax<Cfg::kBlockN / 2> softmax;
  NoLoads no_loads;
  const int num_tiles = fwd_tile_count<Cfg>(p);
  // With a producer the tiles come from it, each index beside its Q (the schedule may be dynamic); without one
  // (ablation) the schedule is the fixed stride.
  for (int tile = blockIdx.x;; tile += gridDim.x) {
    const int q_buffer = q_count % Cfg::kQStages;
    const uint32_t q_parity = (q_count / Cfg::kQStages) & 1;
    if constexpr (Cfg::kWarpSpecialized) {
      mbar_wait(bars.full_q(q_buffer), q_parity);
      tile = warp_uniform(ld_shared_s32(bars.tile_slot(q_buffer)));
    }
    if (tile >= num_tiles) break;
    ++q_count;
    const Tile t = fwd_tile<Cfg>(p, tile);
    const Mask tmask = tile_mask<Cfg>(mask, t);
    const ConsumerMainloop<Cfg> mainloop{p, tmask, bars, smem, consumer, thread};
    const int m0 = t.m_block * Cfg::kBlockM;
    int n_min, n_max;
    tmask.block_range(m0, Cfg::kBlockM, Cfg::kBlockN, n_min, n_max);
#pragma unroll
    for (int i = 0; i < Cfg::kHeadDim / 2; ++i) o[i] = 0.f;
    softmax.reset();

    if constexpr (!Cfg::kWarpSpecialized) {
      inline_loads.begin_tile(p, t, m0, n_min, n_max);
      mbar_wait(bars.full_q(q_buffer), q_parity);
    }
    if (n_max >= n_min) {
      if constexpr (Cfg::kWarpSpecialized) mainloop.run(m0, n_min, n_max, q_buffer, kv, o, softmax, no_loads);
      else mainloop.run(m0, n_min, n_max, q_buffer, kv, o, softmax, inline_loads);
    }
    // Q's buffer goes back to the producer here, or with a single Q buffer from inside the mainloop once the tile's
    // last S is done (release_q; here then only for a tile without keys). Every consumer thread arrives: each has read the tile slot (and with Q in
    // registers, Q itself) and its own arrive orders those reads before the producer's next write (one elected
    // arrive after a warpgroup barrier orders them too, but only transitively, and compute-sanitizer's racecheck
    // reported the slot's reuse).
    if (!Cfg::kOAliasQ && (Cfg::kQStages > 1 || n_max < n_min)) mbar_arrive(bars.empty_q(q_buffer));

    fwd_epilogue<Cfg>(p, tma_o, smem, smem_ptr, consumer, thread, q_buffer, t, o, softmax);
    if (Cfg::kOAliasQ) {
      if (thread == 0) bulk_wait_read_all();  // O, staged in Q's buffer, has been read by the copy engine
      mbar_arrive(bars.empty_q(q_buffer));
    }
  }
  if (thread == 0) bulk_wait_all();
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
flash_fwd_kernel(const __grid_constant__ FwdParams p, const __grid_constant__ TmaMap tma_q,
                 const __grid_constant__ TmaMap tma_k, const __grid_constant__ TmaMap tma_v,
                 const __grid_constant__ TmaMap tma_o) {
  extern __shared__ uint8_t smem_raw[];
  const uint32_t smem = smem_aligned_1024(smem_raw);
  uint8_t* smem_ptr = smem_aligned_1024_ptr(smem_raw);
  const FwdBarriers<Cfg> bars{smem + Cfg::kOffBar};

  if (threadIdx.x == 0) bars.init();
  block_sync();

  const Mask mask{p.seqlen_q, p.seqlen_k, p.window_left, p.window_right};
  FwdLoader<Cfg> loader{&tma_q, &tma_k, &tma_v, smem, bars};
  const int warpgroup = threadIdx.x / 128;
  if (Cfg::kWarpSpecialized && warpgroup == 0) {
    setmaxnreg_dec<Cfg::kProducerRegs>();
    if (threadIdx.x == 0) {
      tma_prefetch(&tma_q);
      tma_prefetch(&tma_k);
      tma_prefetch(&tma_v);
      tma_prefetch(&tma_o);
      fwd_producer<Cfg>(p, mask, loader);
    }
  } else {
    if constexpr (Cfg::kWarpSpecialized) setmaxnreg_inc<Cfg::kConsumerRegs>();
    const int consumer = warpgroup - Cfg::kProducerWGs, thread = threadIdx.x % 128;
    fwd_consumer<Cfg>(p, mask, bars, smem, smem_ptr, &tma_o, consumer, thread,
                      InlineProducer<Cfg>{!Cfg::kWarpSpecialized && consumer == 0 && thread == 0 ? &loader : nullptr});
  }
}

}  // namespace fa
