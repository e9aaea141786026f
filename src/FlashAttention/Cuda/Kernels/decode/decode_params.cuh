// The decode family's parameters: the attention kernel (DecodeParams) and the KV-cache kernels that append to the
// cache and check its device-resident lengths and page table (KvCacheParams). Mirrored field for field by
// Cuda/Launchers/KernelParams.cs (explicit offsets): change both together.
//
// Device-resident inputs follow a contract the host cannot see without a synchronisation: 0 <= seqlens[b] <=
// max_seqlen, and every page-table entry a sequence uses lies in [0, num_pages). The kernels guard it cheaply: a
// sequence whose length breaks it is neither read nor written, a page entry that breaks it is neither written through
// nor read (page 0 is read in its place), and the first violation is recorded in `error`.
#pragma once
#include "common/ptx.cuh"

namespace fa {

struct DecodeParams {
  int batch;               // 0
  int seqlen_q;            // 4
  int heads_q;             // 8
  int heads_k;             // 12
  int group;               // 16: heads_q / heads_k
  int rows;                // 20: packed query rows per (sequence, KV head): seqlen_q * group
  int num_m_blocks;        // 24: ceil(rows / 64)
  int num_splits;          // 28: pieces of each key range, merged by the last of them to finish when > 1
  int seqlen_k;            // 32: keys of every sequence when seqlens is null
  int seqlen_new;          // 36: keys appended to each sequence before attention (0: none)
  int max_seqlen;          // 40: the declared maximum of seqlens[b]
  int window_left;         // 44: -1 = unbounded
  int window_right;        // 48: -1 = unbounded (0 for causal)
  int page_size;           // 52: tokens per page; 0 = a contiguous cache (batch, capacity, heads_k, head_dim)
  int box_rows;            // 56: tokens per K/V TMA box: gcd(page_size, block_n), or block_n when contiguous
  int num_pages;           // 60: pages in the pool
  int max_pages;           // 64: entries per page-table row
  int has_softcap;         // 68
  float softcap_premul;    // 72: scale / cap
  float score_scale;       // 76: scale, or cap with softcap
  float score_scale_log2;  // 80: score_scale * log2(e)
  int reserved;            // 84
  const int* seqlens;      // 88: (batch) keys in the cache before the append; null = seqlen_k for every sequence
  const int* page_table;   // 96: (batch, max_pages); null when contiguous
  int64_t page_table_stride;  // 104 (elements)
  const void* q;           // 112: (batch, seqlen_q, heads_q, head_dim)
  int64_t q_stride_b;      // 120 (elements)
  int64_t q_stride_s;      // 128
  int64_t q_stride_h;      // 136
  void* o;                 // 144: like q
  int64_t o_stride_b;      // 152
  int64_t o_stride_s;      // 160
  int64_t o_stride_h;      // 168
  float* lse;              // 176: (batch, heads_q, seqlen_q); may be null
  int64_t lse_stride_b;    // 184
  int64_t lse_stride_h;    // 192
  int64_t lse_stride_s;    // 200
  float* o_partial;        // 208: (splits, batch·seqlen_q·heads_q, head_dim) float32, when num_splits > 1
  float* lse_partial;      // 216: (splits, batch·seqlen_q·heads_q)
  int* error;              // 224: {code, batch, index, value} of the first violation met; may be null
  int* split_counters;     // 232: (batch, heads_k, num_m_blocks) splits finished, zero between calls; when num_splits > 1
};                         // 240 bytes

struct KvCacheParams {
  int batch;               // 0
  int seqlen_new;          // 4: tokens appended per sequence
  int heads_k;             // 8
  int max_seqlen;          // 12: the declared maximum of seqlens[b]
  int page_size;           // 16: 0 = contiguous
  int num_pages;           // 20
  int max_pages;           // 24
  int reserved;            // 28
  const int* seqlens;      // 32: (batch)
  const int* page_table;   // 40: (batch, max_pages); null when contiguous
  int64_t page_table_stride;  // 48
  const void* k_new;       // 56: (batch, seqlen_new, heads_k, head_dim)
  int64_t k_new_stride_b;  // 64
  int64_t k_new_stride_s;  // 72
  int64_t k_new_stride_h;  // 80
  const void* v_new;       // 88
  int64_t v_new_stride_b;  // 96
  int64_t v_new_stride_s;  // 104
  int64_t v_new_stride_h;  // 112
  void* k_cache;           // 120: (batch, capacity, heads_k, head_dim), or the pool (num_pages, page_size, heads_k, head_dim)
  int64_t k_cache_stride_b;   // 128: per sequence, or per page
  int64_t k_cache_stride_s;   // 136
  int64_t k_cache_stride_h;   // 144
  void* v_cache;           // 152
  int64_t v_cache_stride_b;   // 160
  int64_t v_cache_stride_s;   // 168
  int64_t v_cache_stride_h;   // 176
  int* error;              // 184
};                         // 192 bytes

// What `error` records (word 0); words 1-3 are the sequence, the index within it and the offending value.
enum KvError : int {
  kErrorNone = 0,
  kErrorLength = 1,  // seqlens[b] outside [0, max_seqlen]
  kErrorPage = 2,    // page_table[b][index] outside [0, num_pages)
};

__device__ __forceinline__ bool seqlen_in_contract(int len, int max_seqlen) { return len >= 0 && len <= max_seqlen; }
__device__ __forceinline__ bool page_in_contract(int page, int num_pages) { return page >= 0 && page < num_pages; }

// Records the first violation: the thread whose code lands first also writes the details.
__device__ __forceinline__ void record_error(int* error, int code, int batch, int index, int value) {
  if (error == nullptr) return;
  int prior;
  asm volatile("atom.relaxed.gpu.global.cas.b32 %0, [%1], 0, %2;" : "=r"(prior) : "l"(reinterpret_cast<uint64_t>(error)), "r"(code) : "memory");
  if (prior == 0) {
    error[1] = batch;
    error[2] = index;
    error[3] = value;
  }
}

struct alignas(16) Chunk16 { uint32_t a, b, c, d; };  // eight 16-bit values

}  // namespace fa
