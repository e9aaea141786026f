// Persistent tile scheduler: a grid of (at most) one CTA per SM walks the (query block, head, batch) tiles of
// one fixed order (decode_tile). Which CTA takes which tile: a fixed stride (tile += gridDim.x) when the tiles
// cost the same, or, for masks that make them differ (causal, local), the next one from a global counter
// whenever a CTA's producer starts a tile. The producer passes each tile index to its consumers next to the
// tile's Q (fwd/fwd_mainloop.cuh), so one CTA follows one sequence either way.
#pragma once
#include "common/ptx.cuh"

namespace fa {

// A tile: query block m_block of one (sequence, head), and where that sequence lies in the tensors: dense batches
// index it by the tensor maps' batch coordinate (tma_batch = batch, rows from 0); packed variable-length batches by
// rows from q_row0 / k_row0 of batch coordinate 0.
struct Tile {
  int m_block, head, batch;
  int tma_batch, q_row0, k_row0, seqlen_q, seqlen_k;
};

// Params: a kernel's parameters with heads_q, batch, seqlen_q, seqlen_k, num_m_blocks and longest_first_heads.
template <class Params>
__device__ __forceinline__ Tile decode_tile(const Params& p, int tile) {
  Tile t;
  t.q_row0 = 0;
  t.k_row0 = 0;
  t.seqlen_q = p.seqlen_q;
  t.seqlen_k = p.seqlen_k;
  int hb;
  if (p.longest_first_heads > 0) {
    // Causal/local: the last query blocks see the most keys; hand them out first so the tail of the schedule is
    // made of short tiles. Heaviest first over all heads at once would have the CTAs running together read the K/V
    // of as many heads as there are SMs, more than L2 holds, so the (batch, head) pairs are taken in sections whose
    // K/V fit L2 (the host sizes them, see FlashForwardLauncher.LongestFirstSectionHeads), heaviest first within a
    // section, heads fastest.
    const int pairs = p.heads_q * p.batch, per = p.longest_first_heads;
    const int first = tile / (per * p.num_m_blocks) * per;  // the section's first (batch, head) pair
    const int heads_here = pairs - first < per ? pairs - first : per;
    const int within = tile - first * p.num_m_blocks;
    t.m_block = p.num_m_blocks - 1 - within / heads_here;
    hb = first + within % heads_here;
  } else {
    // Full attention: query blocks of one head vary fastest, so CTAs running together share K/V in L2.
    t.m_block = tile % p.num_m_blocks;
    hb = tile / p.num_m_blocks;
  }
  t.head = hb % p.heads_q;
  t.batch = hb / p.heads_q;
  t.tma_batch = t.batch;
  return t;
}

// Hands out tile indices to a CTA's producer. With a counter, CTAs that drew short tiles come back for more
// sooner, so the grid finishes together (a fixed stride gave each CTA one tile of every round, the first CTA
// always the heaviest). The counter's first word counts tiles taken beyond the first gridDim.x; its second counts
// CTAs that are done, and the last one returns both to zero for the next launch on the stream.
struct TileDispenser {
  int* counter;  // null: fixed stride

  __device__ __forceinline__ int next(int tile) const {
    return counter == nullptr ? tile + (int)gridDim.x : atom_add_gpu(counter, 1) + (int)gridDim.x;
  }

  // Called once per CTA after next() returned past the last tile: no CTA touches the counter after its own retire.
  __device__ __forceinline__ void retire() const {
    if (counter == nullptr) return;
    fence_acq_rel_gpu();  // this CTA's draws happen before its "done"
    if (atom_add_gpu(counter + 1, 1) == (int)gridDim.x - 1) {
      fence_acq_rel_gpu();  // ... and every CTA's draws before the reset
      st_relaxed_gpu(counter, 0);
      st_relaxed_gpu(counter + 1, 0);
    }
  }
};

}  // namespace fa
