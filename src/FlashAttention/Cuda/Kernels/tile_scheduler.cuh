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
  if (p.longest_first_heads > 0) {
    // Causal/local: the last query blocks see the most keys; hand them out first so the tail of the schedule is
    // made of short tiles. Heaviest first over all heads at once, though, had the CTAs running together read the
    // K/V of as many heads as there are SMs, more than L2 holds: at b8 h16 s2k d128 causal the kernel ran at 82%
    // of DRAM bandwidth. So the (batch, head) pairs are taken in sections whose K/V fit L2 (the host sizes them,
    // see FlashForwardLauncher.LongestFirstSectionHeads), heaviest first within a section, heads fastest.
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
  return t;
}

}  // namespace fa
