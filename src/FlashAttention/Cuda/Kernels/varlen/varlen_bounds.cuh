// Where one sequence of a variable-length batch lies in the packed (tokens, heads, head_dim) tensors. The offsets
// live on the device and are read as given: each is clamped into the packed tensor and a length to ≥ 0, so offsets
// that break the contract (checked on request by varlen_prepare.cu) make that sequence's result unspecified but
// never move a load or store outside the tensors.
#pragma once
#include "common/ptx.cuh"

namespace fa {

struct SeqBounds {
  int q_row0, seqlen_q;  // the sequence's first query row in the packed Q/O, and its query count
  int k_row0, seqlen_k;  // its first key row in the packed K/V, and the keys it attends to
};

__device__ __forceinline__ int clamp_offset(int v, int total) { return v < 0 ? 0 : (v > total ? total : v); }

__device__ __forceinline__ SeqBounds varlen_bounds(const int* cu_q, const int* cu_k, const int* used_k, int b,
                                                   int total_q, int total_k) {
  SeqBounds s;
  s.q_row0 = clamp_offset(cu_q[b], total_q);
  const int q_end = clamp_offset(cu_q[b + 1], total_q);
  s.seqlen_q = q_end > s.q_row0 ? q_end - s.q_row0 : 0;
  s.k_row0 = clamp_offset(cu_k[b], total_k);
  const int k_end = clamp_offset(cu_k[b + 1], total_k);
  int keys = k_end > s.k_row0 ? k_end - s.k_row0 : 0;
  if (used_k != nullptr) {
    const int used = used_k[b];
    keys = used < 0 ? 0 : (used < keys ? used : keys);
  }
  s.seqlen_k = keys;
  return s;
}

// The backward's float32 side buffers (LSE, D, dQ) hold a sequence's rows from row 128·(⌊cu_q[b]/128⌋ + b) of each
// head's run: whole 128-row blocks per sequence that never overlap the next one's (⌊(c + n)/128⌋ − ⌊c/128⌋ + 1 ≥
// ⌈n/128⌉), and (⌊total_q/128⌋ + batch)·128 rows per head in all.
__device__ __forceinline__ int64_t varlen_side_row0(int q_row0, int b) { return ((int64_t)(q_row0 / 128) + b) * 128; }

}  // namespace fa
