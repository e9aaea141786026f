// The forward's tiles, dense or variable-length (FwdVariant::varlen). A variable-length batch's tiles are numbered
// sequence by sequence in tile_order (longest first, written by varlen_prepare.cu before the launch), within a
// sequence head by head, and within a head from its last query block to its first: the schedule's tail is made of
// the shortest sequences' tiles, and the tiles of one sequence, handed out together, share its K/V in L2.
#pragma once
#include "fwd/fwd_params.cuh"
#include "common/mask.cuh"
#include "common/tile_scheduler.cuh"
#include "varlen/varlen_bounds.cuh"

namespace fa {

__device__ __forceinline__ Tile decode_varlen_tile(const FwdParams& p, int tile) {
  // The sequence: the last i with tile_start[i] <= tile (a sequence without tiles is never the last such i).
  int lo = 0, hi = p.batch;
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (p.tile_start[mid] <= tile) lo = mid;
    else hi = mid;
  }
  const int first = p.tile_start[lo];
  const int m_blocks = (p.tile_start[lo + 1] - first) / p.heads_q;
  const int within = tile - first;
  Tile t;
  t.batch = p.tile_order[lo];
  t.head = within / m_blocks;
  t.m_block = m_blocks - 1 - within % m_blocks;
  const SeqBounds s = varlen_bounds(p.cu_seqlens_q, p.cu_seqlens_k, p.seqused_k, t.batch, p.total_q, p.total_k);
  t.tma_batch = 0;
  t.q_row0 = s.q_row0;
  t.k_row0 = s.k_row0;
  t.seqlen_q = s.seqlen_q;
  t.seqlen_k = s.seqlen_k;
  return t;
}

template <class Cfg>
__device__ __forceinline__ Tile fwd_tile(const FwdParams& p, int tile) {
  if constexpr (Cfg::kVarlen) return decode_varlen_tile(p, tile);
  else return decode_tile(p, tile);
}

// Tiles of the launch: for a variable-length batch only the device knows them.
template <class Cfg>
__device__ __forceinline__ int fwd_tile_count(const FwdParams& p) {
  if constexpr (Cfg::kVarlen) return p.tile_start[p.batch];
  else return p.num_tiles;
}

// The mask of a tile's sequence (one mask serves every tile of a dense batch).
template <class Cfg>
__device__ __forceinline__ Mask tile_mask(const Mask& mask, const Tile& t) {
  if constexpr (Cfg::kVarlen) return Mask{t.seqlen_q, t.seqlen_k, mask.window_left, mask.window_right};
  else return mask;
}

}  // namespace fa
