// Persistent tile scheduler: a grid of (at most) one CTA per SM walks the (query block, head, batch) tiles
// with a fixed stride, so producer and consumers of a CTA derive the same sequence without communicating.
#pragma once
#include "flash_params.cuh"

namespace fa {

struct Tile {
  int m_block, head, batch;
};

__device__ __forceinline__ Tile decode_tile(const FwdParams& p, int tile) {
  Tile t;
  int hb;
  if (p.longest_first) {
    // Causal/local: the last query blocks see the most keys; hand them out first so the tail of the
    // schedule is made of short tiles. Heads and batches vary fastest.
    int per_m = p.heads_q * p.batch;
    t.m_block = p.num_m_blocks - 1 - tile / per_m;
    hb = tile % per_m;
  } else {
    // Full attention: query blocks of one head vary fastest, so CTAs running together share K/V in L2.
    t.m_block = tile % p.num_m_blocks;
    hb = tile / p.num_m_blocks;
  }
  t.head = hb % p.heads_q;
  t.batch = hb / p.heads_q;
  return t;
}

}  // namespace fa
