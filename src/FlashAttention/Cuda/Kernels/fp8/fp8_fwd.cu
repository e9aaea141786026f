// FlashAttention-3's FP8 forward for Hopper (sm_90a): the BF16 forward's structure (persistent grid, a producer
// warpgroup issuing TMA loads into a ring, two or three consumer warpgroups taking turns on the tensor cores) with E4M3
// operands, wgmma m64nNk32, P cast to E4M3 from registers, per-block descales folded into the softmax, and 16-bit O.
// Instantiated through NVRTC name expressions written by Cuda/Variants/Fp8Variant.cs, e.g.
//   fa::fp8_fwd_kernel<fa::Fp8Config<fa::bf16_t, fa::Fp8Variant{.head_dim = 128, .block_n = 128, …}>>
#include "common/mask.cuh"
#include "common/tile_scheduler.cuh"
#include "fp8/fp8_config.cuh"
#include "fp8/fp8_mainloop.cuh"
#include "fp8/fp8_params.cuh"
#include "fwd/fwd_epilogue.cuh"
#include "fwd/fwd_mainloop.cuh"
#include "fwd/fwd_params.cuh"

namespace fa {

// One consumer warpgroup's walk over its CTA's tiles (as fwd_consumer): mainloop, then the 16-bit epilogue, per tile.
template <class Cfg>
__device__ __forceinline__ void fp8_consumer(const FwdParams& p, const Fp8Params& f, const Mask& mask, const FwdBarriers<Cfg>& bars,
                                             uint32_t smem, uint8_t* smem_ptr, const TmaMap* tma_o, int consumer, int thread) {
  const Fp8Consumer<Cfg> mainloop{p, f, mask, bars, smem, consumer, thread};
  if (Cfg::kPingPong && consumer == 0) named_barrier_arrive(Cfg::kBarSchedule, 2 * 128);
  PipelineState<Cfg::kStages> kv;
  int q_count = 0;
  float o[Cfg::kHeadDim / 2];
  typename Fp8Consumer<Cfg>::Softmax softmax;
  for (;;) {
    const int q_buffer = q_count % Cfg::kQStages;
    mbar_wait(bars.full_q(q_buffer), (q_count / Cfg::kQStages) & 1);
    const int tile = warp_uniform(ld_shared_s32(bars.tile_slot(q_buffer)));
    if (tile >= p.num_tiles) break;
    ++q_count;
    const Tile t = decode_tile(p, tile);
    const int m0 = t.m_block * Cfg::kBlockM;
    int n_min, n_max;
    mask.block_range(m0, Cfg::kBlockM, Cfg::kBlockN, n_min, n_max);
#pragma unroll
    for (int i = 0; i < Cfg::kHeadDim / 2; ++i) o[i] = 0.f;
    softmax.reset();
    if (n_max >= n_min) mainloop.run(t, m0, n_min, n_max, q_buffer, kv, o, softmax);
    // Every consumer thread arrives (each has read the tile slot): with two Q buffers here, with one from the
    // mainloop after the tile's last S (here only for a tile without keys).
    if (Cfg::kQStages > 1 || n_max < n_min) mbar_arrive(bars.empty_q(q_buffer));
    fwd_epilogue<Cfg>(p, tma_o, smem, smem_ptr, consumer, thread, q_buffer, t, o, softmax);
  }
  if (thread == 0) bulk_wait_all();
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
fp8_fwd_kernel(const __grid_constant__ FwdParams p, const __grid_constant__ Fp8Params f, const __grid_constant__ TmaMap tma_q,
               const __grid_constant__ TmaMap tma_k, const __grid_constant__ TmaMap tma_vt, const __grid_constant__ TmaMap tma_o) {
  extern __shared__ uint8_t smem_raw[];
  const uint32_t smem = smem_aligned_1024(smem_raw);
  uint8_t* smem_ptr = smem_aligned_1024_ptr(smem_raw);
  const FwdBarriers<Cfg> bars{smem + Cfg::kOffBar};

  if (threadIdx.x == 0) bars.init();
  block_sync();

  const Mask mask{p.seqlen_q, p.seqlen_k, p.window_left, p.window_right};
  const int warpgroup = warp_uniform(threadIdx.x / 128);
  if (warpgroup == 0) {
    setmaxnreg_dec<Cfg::kProducerRegs>();
    if (threadIdx.x == 0) {
      tma_prefetch(&tma_q);
      tma_prefetch(&tma_k);
      tma_prefetch(&tma_vt);
      tma_prefetch(&tma_o);
      Fp8Loader<Cfg> loader{&tma_q, &tma_k, &tma_vt, smem, bars};
      fwd_producer<Cfg>(p, mask, loader);
    }
  } else {
    setmaxnreg_inc<Cfg::kConsumerRegs>();
    fp8_consumer<Cfg>(p, f, mask, bars, smem, smem_ptr, &tma_o, warpgroup - 1, threadIdx.x % 128);
  }
}

}  // namespace fa
