// The backward kernels' parameters. The layouts are mirrored field for field by BwdParams and BwdAuxParams in
// Cuda/Launchers/KernelParams.cs (explicit offsets): change both together.
#pragma once
#include "common/ptx.cuh"

namespace fa {

// Backward main kernel.
struct BwdParams {
  int batch;              // 0
  int seqlen_q;           // 4
  int seqlen_k;           // 8
  int heads_q;            // 12
  int heads_k;            // 16
  int group;              // 20: heads_q / heads_k
  int window_left;        // 24
  int window_right;       // 28
  int seqlen_q_padded;    // 32: rows of the float32 side buffers (a multiple of 64)
  int has_softcap;        // 36
  float softcap_premul;   // 40: scale / cap
  float score_scale_log2; // 44: scale·log2(e), or cap·log2(e) with softcap
  float softmax_scale;    // 48: multiplies dK here and dQ in the post-pass
  int deterministic;      // 52: 1 = add into dQ in key-block order (bitwise reproducible)
  float* lse_log2;        // 56: (batch, heads_q, seqlen_q_padded) log-sum-exp · log2(e); +inf for rows that see nothing
  float* dpsum;           // 64: (batch, heads_q, seqlen_q_padded) D = rowsum(dO ∘ O)
  float* dq_accum;        // 72: (batch, heads_q, seqlen_q_padded, head_dim) float32
  int* dq_semaphore;      // 80: (batch, heads_q, query blocks) order counters for deterministic mode
  void* dk;               // 88: (batch, seqlen_k, heads_k, head_dim) element type
  void* dv;               // 96
  int64_t dk_stride_b;    // 104 (elements)
  int64_t dk_stride_s;    // 112
  int64_t dk_stride_h;    // 120
  int64_t dv_stride_b;    // 128
  int64_t dv_stride_s;    // 136
  int64_t dv_stride_h;    // 144
  // Variable-length batches (BwdVariant::varlen; unused otherwise): tensors packed as (tokens, heads, head_dim), the
  // side buffers as (heads_q, seqlen_q_padded) runs with each sequence at varlen_side_row0.
  const int* cu_seqlens_q;  // 152
  const int* cu_seqlens_k;  // 160
  const int* seqused_k;     // 168: may be null
  int total_q;              // 176
  int total_k;              // 180
};                          // 184 bytes

// Backward pre- and post-pass (D = rowsum(dO ∘ O), LSE in base 2, zeroing dQ_accum; dQ = scale · dQ_accum).
struct BwdAuxParams {
  int batch;              // 0
  int seqlen_q;           // 4
  int heads_q;            // 8
  int head_dim;           // 12
  int seqlen_q_padded;    // 16
  float softmax_scale;    // 20
  const void* o;          // 24
  const void* d_o;        // 32
  void* dq;               // 40
  const float* lse;       // 48: (batch, heads_q, seqlen_q) natural log, with strides below
  int64_t o_stride_b, o_stride_s, o_stride_h;     // 56, 64, 72
  int64_t do_stride_b, do_stride_s, do_stride_h;  // 80, 88, 96
  int64_t dq_stride_b, dq_stride_s, dq_stride_h;  // 104, 112, 120
  int64_t lse_stride_b, lse_stride_h, lse_stride_s;  // 128, 136, 144
  float* lse_log2;        // 152
  float* dpsum;           // 160
  float* dq_accum;        // 168
  int* dq_semaphore;      // 176
  int num_m_blocks;       // 184
  int total_q;            // 188: variable-length batches: rows of the packed tensors
  const int* cu_seqlens_q;  // 192: variable-length batches: (batch + 1) query offsets; null for dense batches
};                          // 200 bytes

}  // namespace fa
