// The KV-cache append inside the decode kernel, done by the producer warps: one launch per decode step instead of an
// append kernel and the attention (bench/results/2026-12-04-h200-e9b5855: the append's own launch added 6-9 µs of
// host time to a 17 µs step). The CTAs of one (sequence, KV head) share the writing of its appended tokens into the
// cache, and a producer about to load a key block that holds appended tokens writes those rows itself first (the same
// bytes another CTA may be writing) and orders the writes before its copy engine loads (a proxy fence): every token is
// written, and every load of one sees it.
#pragma once
#include "decode/decode_config.cuh"
#include "decode/decode_params.cuh"
#include "common/warp.cuh"

namespace fa {

// Writes appended token j (K and V rows of one KV head) into the cache, 16 bytes per lane and step; false when the
// token's page breaks the contract (recorded; nothing written: the producer reads page 0 in its place).
template <class Cfg>
__device__ __forceinline__ void append_token(const KvCacheParams& kv, int batch, int head_k, int cached, int j, int lane) {
  constexpr int kChunks = Cfg::kHeadDim / 8;  // 16-byte pieces of one row
  const int t = cached + j;
  int64_t seq = batch, pos = t;
  if (kv.page_size > 0) {
    const int index = t / kv.page_size, page = kv.page_table[batch * kv.page_table_stride + index];
    if (!page_in_contract(page, kv.num_pages)) {
      if (lane == 0) record_error(kv.error, kErrorPage, batch, index, page);
      return;
    }
    seq = page;
    pos = t % kv.page_size;
  }
  for (int i = lane; i < 2 * kChunks; i += 32) {
    const bool is_v = i >= kChunks;
    const int c = i % kChunks;
    const uint16_t* src = reinterpret_cast<const uint16_t*>(is_v ? kv.v_new : kv.k_new) + batch * (is_v ? kv.v_new_stride_b : kv.k_new_stride_b) +
                          j * (is_v ? kv.v_new_stride_s : kv.k_new_stride_s) + head_k * (is_v ? kv.v_new_stride_h : kv.k_new_stride_h);
    uint16_t* dst = reinterpret_cast<uint16_t*>(is_v ? kv.v_cache : kv.k_cache) + seq * (is_v ? kv.v_cache_stride_b : kv.k_cache_stride_b) +
                    pos * (is_v ? kv.v_cache_stride_s : kv.k_cache_stride_s) + head_k * (is_v ? kv.v_cache_stride_h : kv.k_cache_stride_h);
    *reinterpret_cast<Chunk16*>(dst + 8 * c) = *reinterpret_cast<const Chunk16*>(src + 8 * c);
  }
}

// This CTA's share of its (sequence, KV head)'s appended tokens: token j belongs to CTA j mod (m-blocks × splits) of
// the (sequence, KV head), so that tokens no query of this call sees (a narrow window) are written too. It lands at
// seqlens[b] + j, inside the capacity: the host checked max_seqlen + seqlen_new against it, and decode_unit holds
// seqlens[b] to max_seqlen.
template <class Cfg>
__device__ __forceinline__ void append_share(const KvCacheParams& kv, int num_m_blocks, int num_splits, int batch, int head_k, int m_block,
                                             int split, int cached, int lane) {
  const int ctas = num_m_blocks * num_splits;
  for (int j = m_block * num_splits + split; j < kv.seqlen_new; j += ctas) append_token<Cfg>(kv, batch, head_k, cached, j, lane);
}

// Before the producer loads key block [n0, n0 + block_n): the appended tokens in it written by this warp, and the
// writes ordered before the warp's later copy-engine loads.
template <class Cfg>
__device__ __forceinline__ void append_block(const KvCacheParams& kv, int batch, int head_k, int cached, int keys, int n0, int lane) {
  const int lo = cached > n0 ? cached : n0, hi = keys < n0 + Cfg::kBlockN ? keys : n0 + Cfg::kBlockN;
  if (hi <= lo) return;
  for (int t = lo; t < hi; ++t) append_token<Cfg>(kv, batch, head_k, cached, t - cached, lane);
  fence_proxy_async_global();  // generic writes, then this warp's TMA reads (the async proxy)
  warp_sync();
}

}  // namespace fa
