// Which keys a query row sees: FlashAttention's convention, identical to the C# AttentionMask.
// Query i of Sq sits at key position i + Sk - Sq; it sees keys j with
//   i + Sk - Sq - left <= j <= i + Sk - Sq + right   (a bound of -1 is unbounded), clipped to [0, Sk).
#pragma once
#include "common/ptx.cuh"

namespace fa {

struct Mask {
  int seqlen_q, seqlen_k, window_left, window_right;

  // First visible key of row i (>= 0; may be >= seqlen_k when none is visible).
  __device__ __forceinline__ int first_key(int i) const {
    if (window_left < 0) return 0;
    int f = i + seqlen_k - seqlen_q - window_left;
    return f < 0 ? 0 : f;
  }
  // Last visible key of row i (<= seqlen_k - 1; may be < first_key(i) when none is visible).
  __device__ __forceinline__ int last_key(int i) const {
    int l = window_right < 0 ? seqlen_k - 1 : i + seqlen_k - seqlen_q + window_right;
    return l < seqlen_k - 1 ? l : seqlen_k - 1;
  }

  // Key blocks of width BN that query rows [m0, m0 + BM) must visit: [n_min, n_max], empty when n_max < n_min.
  // Both bounds are monotone in the row, so the union of the rows' ranges is [first_key(m0), last_key(last row)].
  __device__ __forceinline__ void block_range(int m0, int BM, int BN, int& n_min, int& n_max) const {
    int last_row = m0 + BM - 1 < seqlen_q - 1 ? m0 + BM - 1 : seqlen_q - 1;
    int lo = first_key(m0), hi = last_key(last_row);
    if (hi < lo || seqlen_k == 0) { n_min = 0; n_max = -1; return; }
    n_min = lo / BN;
    n_max = hi / BN;
  }

  // Query rows that see at least one key of [n0, n0 + BN): [q_lo, q_hi], empty when q_hi < q_lo. The inverse of
  // block_range, for the backward pass, which walks the queries of one key block.
  __device__ __forceinline__ void query_range(int n0, int BN, int& q_lo, int& q_hi) const {
    const int shift = seqlen_k - seqlen_q;  // query i sits at key position i + shift
    q_lo = window_right < 0 ? 0 : n0 - shift - window_right;
    q_hi = window_left < 0 ? seqlen_q - 1 : n0 + BN - 1 - shift + window_left;
    if (q_lo < 0) q_lo = 0;
    if (q_hi > seqlen_q - 1) q_hi = seqlen_q - 1;
    if (n0 >= seqlen_k) q_hi = q_lo - 1;
  }

  // True when some element of the (rows [m0, m0+BM)) x (keys [n0, n0+BN)) tile is invisible, so the tile
  // needs element-wise masking. Tiles strictly inside the band of every row skip it.
  __device__ __forceinline__ bool tile_needs_mask(int m0, int BM, int n0, int BN) const {
    return !(n0 + BN - 1 <= last_key(m0) && n0 >= first_key(m0 + BM - 1));
  }
};

}  // namespace fa
