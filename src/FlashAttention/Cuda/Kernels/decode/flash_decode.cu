// Attention against a KV cache for decoding (few query rows per sequence, long key ranges), for Hopper (sm_90a):
// memory-bound, so the work is laid out to read the cache once and keep every SM streaming. A CTA packs the query
// heads of one KV head into one 64-row tile (seqlen_q × group rows), takes one split of the sequence's key range and
// streams its K and V through a ring of shared-memory stages filled by TMA (a producer warp; pages of any multiple of
// 16 tokens), while one consumer warpgroup computes S = Q·Kᵀ and O += P·V with wgmma. The last split of a row block
// to finish merges the splits (decode_combine.cuh); the producers write appended tokens into the cache before they load
// them (decode_append.cuh). Name expressions (Cuda/Variants/DecodeVariant.cs), e.g.
//   fa::flash_decode_kernel<fa::DecodeConfig<fa::bf16_t, fa::DecodeVariant{.head_dim = 128, .block_n = 64, …}>>
#include "decode/decode_append.cuh"
#include "decode/decode_combine.cuh"
#include "decode/decode_config.cuh"
#include "decode/decode_epilogue.cuh"
#include "decode/decode_mainloop.cuh"
#include "decode/decode_params.cuh"
#include "common/grid_dependency.cuh"

namespace fa {

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kCtasPerSm)
flash_decode_kernel(const __grid_constant__ DecodeParams p, const __grid_constant__ KvCacheParams cache, const __grid_constant__ TmaMap tma_k,
                    const __grid_constant__ TmaMap tma_v) {
  extern __shared__ uint8_t smem_raw[];
  const uint32_t smem = smem_aligned_1024(smem_raw);
  uint8_t* smem_ptr = smem_aligned_1024_ptr(smem_raw);
  const DecodeBarriers<Cfg> bars{smem + Cfg::kOffBar};

  if (threadIdx.x == 0) {
    for (int s = 0; s < Cfg::kStages; ++s) {
      mbar_init(bars.full_k(s), 1);
      mbar_init(bars.empty_k(s), 1);
      mbar_init(bars.full_v(s), 1);
      mbar_init(bars.empty_v(s), 1);
    }
    fence_barrier_init();
  } else if (threadIdx.x == 32) {
    tma_prefetch(&tma_k);
    tma_prefetch(&tma_v);
  }
  block_sync();
  // Up to here only shared memory and the parameters: the rest waits for whatever ran before (a previous step's writes).
  wait_prior_grids();

  DecodeUnit u;
  if (!decode_unit<Cfg>(p, u)) {
    // The sequence's length breaks the contract: nothing of it is read or written (one CTA of it records why).
    if (threadIdx.x == 0 && u.split == 0 && u.head_k == 0 && u.m_block == 0) record_error(p.error, kErrorLength, u.batch, 0, u.cached);
    return;
  }

  const int warp = warp_uniform((int)threadIdx.x / 32);
  if (warp == Cfg::kConsumerThreads / 32) {
    decode_producer<Cfg>(p, cache, u, &tma_k, &tma_v, smem, bars);
    allow_dependents();
  } else {
    const int thread = (int)threadIdx.x;
    const DecodeRows rows = decode_rows<Cfg>(p, u, thread);
    DecodeQ<Cfg> q;
    q.load(p, u, rows, smem, smem_ptr, thread);
    float o[Cfg::kHeadDim / 2];
#pragma unroll
    for (int i = 0; i < Cfg::kHeadDim / 2; ++i) o[i] = 0.f;
    OnlineSoftmax<Cfg::kBlockN / 2> softmax;
    softmax.reset();
    const DecodeMainloop<Cfg> mainloop{p, u, bars, smem, smem_ptr, thread};
    mainloop.run(q, rows, o, softmax);
    allow_dependents();  // the next kernel's CTAs may launch while the epilogues write (it waits for this grid's memory)
    decode_epilogue<Cfg>(p, u, rows, thread, o, softmax);
    // The ring is drained (every load was consumed): its first K stage serves the merge as scratch.
    if (p.num_splits > 1) decode_merge_splits<Cfg>(p, u, thread, reinterpret_cast<float*>(smem_ptr + Cfg::kOffK));
  }
}

}  // namespace fa
