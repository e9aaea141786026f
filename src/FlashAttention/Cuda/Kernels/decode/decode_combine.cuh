// The merge of a split key range inside the decode kernel: each split writes its normalised part (O and LSE, float32),
// and the last split of a row block to finish merges every part of its rows through their LSE (common/combine.cuh)
// into O and LSE. One launch per call instead of a decode and a combine kernel: at decode sizes a launch costs about
// as much host time as the whole GPU work (bench/results/2026-12-04-h200-e9b5855).
#pragma once
#include "decode/decode_config.cuh"
#include "decode/decode_mainloop.cuh"
#include "decode/decode_params.cuh"
#include "common/combine.cuh"

namespace fa {

// Called by the consumer warpgroup after its epilogue wrote this split's part. `scratch` is shared memory the ring no
// longer uses (every load was consumed): 4 warps' merge weights and the "last" flag.
template <class Cfg>
__device__ __forceinline__ void decode_merge_splits(const DecodeParams& p, const DecodeUnit& u, int thread, float* scratch) {
  static_assert(Cfg::kConsumerThreads == 128, "one warpgroup: four warps merge");
  static_assert(4 * kCombineMaxParts * 4 + 16 <= Cfg::kKBytes, "the merge's scratch fits in one K stage");
  int* last_flag = reinterpret_cast<int*>(scratch + 4 * kCombineMaxParts);
  // Release: every thread's part stores, then the warpgroup's barrier, then thread 0's fence and count (the pattern
  // of a release fence followed by a relaxed atomic; the last split's acquire fence pairs with it).
  fence_acq_rel_gpu();
  named_barrier_sync(Cfg::kBarConsumers, Cfg::kConsumerThreads);
  if (thread == 0) {
    int* counter = p.split_counters + ((int64_t)u.batch * p.heads_k + u.head_k) * p.num_m_blocks + u.m_block;
    fence_acq_rel_gpu();
    const bool last = atom_add_gpu(counter, 1) == p.num_splits - 1;
    if (last) {
      fence_acq_rel_gpu();      // acquire: the other splits' parts
      st_relaxed_gpu(counter, 0);  // every split has counted: zero for the next call on this stream
    }
    *last_flag = last ? 1 : 0;
  }
  named_barrier_sync(Cfg::kBarConsumers, Cfg::kConsumerThreads);
  if (*last_flag == 0) return;
  fence_acq_rel_gpu();  // and for every thread of the merge, after the barrier

  // A warp per packed row of this block: its (query, head) row of the parts, O and LSE.
  const int warp = thread / 32;
  const int64_t total_rows = (int64_t)p.batch * p.seqlen_q * p.heads_q;
  const int m0 = u.m_block * Cfg::kBlockM;
  const int m_end = m0 + Cfg::kBlockM < p.rows ? m0 + Cfg::kBlockM : p.rows;
  for (int packed = m0 + warp; packed < m_end; packed += 4) {
    const int query = packed / p.group, head = u.head_k * p.group + packed % p.group;
    const int64_t row = ((int64_t)u.batch * p.seqlen_q + query) * p.heads_q + head;
    void* out = reinterpret_cast<uint16_t*>(p.o) + u.batch * p.o_stride_b + query * p.o_stride_s + head * p.o_stride_h;
    const float lse = merge_row<typename Cfg::Element, Cfg::kHeadDim>(p.o_partial + row * Cfg::kHeadDim, total_rows * Cfg::kHeadDim,
                                                                      p.lse_partial + row, total_rows, p.num_splits,
                                                                      scratch + warp * kCombineMaxParts, out);
    if (p.lse != nullptr && lane_id() == 0) p.lse[u.batch * p.lse_stride_b + head * p.lse_stride_h + query * p.lse_stride_s] = lse;
  }
}

}  // namespace fa
