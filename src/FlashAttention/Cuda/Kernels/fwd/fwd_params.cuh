// The forward kernel's parameters. The layout is mirrored field for field by FwdParams in
// Cuda/Launchers/KernelParams.cs (explicit offsets): change both together.
#pragma once
#include "common/ptx.cuh"

namespace fa {

struct FwdParams {
  int batch;             // 0
  int seqlen_q;          // 4
  int seqlen_k;          // 8
  int heads_q;           // 12
  int heads_k;           // 16
  int group;             // 20: heads_q / heads_k
  int window_left;       // 24: -1 = unbounded
  int window_right;      // 28: -1 = unbounded (0 for causal)
  int num_m_blocks;      // 32: ceil(seqlen_q / kBlockM)
  int num_tiles;         // 36: num_m_blocks * heads_q * batch
  int longest_first_heads;  // 40: tile order: 0 = query block fastest; n > 0 = heaviest query blocks first within sections of n (batch, head) pairs
  int has_softcap;       // 44
  float softcap_premul;  // 48: scale / cap: the tanh argument is score * softcap_premul
  float score_scale;     // 52: multiplier of the (possibly capped) score in the softmax exponent: scale, or cap
  float score_scale_log2;// 56: score_scale * log2(e)
  int reserved;          // 60
  float* lse;            // 64: (batch, heads_q, seqlen_q) log-sum-exp, natural log; may be null
  int64_t lse_stride_b;  // 72 (elements)
  int64_t lse_stride_h;  // 80
  int64_t lse_stride_s;  // 88
  int* tile_counter;     // 96: null = static schedule; else {next tile - gridDim.x, CTAs done}, zero at launch and left zero
  // Variable-length batches (FwdVariant::varlen; unused otherwise): Q, K, V, O packed as (tokens, heads, head_dim);
  // batch counts sequences, seqlen_q/seqlen_k are the longest, the LSE is (heads_q, total_q).
  const int* cu_seqlens_q;  // 104: (batch + 1) token offsets of the sequences' queries
  const int* cu_seqlens_k;  // 112: (batch + 1) token offsets of their keys
  const int* seqused_k;     // 120: (batch) keys each sequence attends to (a prefix of its keys), or null for all
  const int* tile_order;    // 128: (batch) sequences in the order their tiles are handed out (longest first)
  const int* tile_start;    // 136: (batch + 1) first tile of each sequence of tile_order; [batch] = the tile count
  void* o;                  // 144: O, for the rows of a sequence's last query block (stored row by row)
  int64_t o_stride_s;       // 152 (elements)
  int64_t o_stride_h;       // 160
  int total_q;              // 168: rows of the packed Q and O
  int total_k;              // 172: rows of the packed K and V
};                          // 176 bytes

}  // namespace fa
