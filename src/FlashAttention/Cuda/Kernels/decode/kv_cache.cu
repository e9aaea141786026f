// The KV cache's own kernels: the append of new keys and values into the cache for a call with no queries (the decode
// kernel appends itself when it attends: decode_append.cuh) and the check of the device-resident lengths and page
// table that the launcher's checked mode runs first.
// Name expressions (Cuda/Launchers/KernelCatalog.cs): fa::kv_append_kernel<fa::bf16_t, 128>, fa::kv_check_kernel.
#include "decode/decode_params.cuh"
#include "common/grid_dependency.cuh"

namespace fa {

// One CTA per appended token of one sequence: every KV head's key and value row, 16 bytes per thread and step.
// Token j of sequence b lands at position seqlens[b] + j: the host has checked that max_seqlen + seqlen_new fits
// the capacity, and the guard holds seqlens[b] to max_seqlen, so the position is inside the cache.
template <typename E, int kHeadDim>
__global__ void __launch_bounds__(128) kv_append_kernel(const __grid_constant__ KvCacheParams p) {
  wait_prior_grids();   // the lengths, the new tokens and the cache may come from the grid before
  allow_dependents();   // the attention's CTAs may launch now: they wait for this grid before reading the cache
  const int b = blockIdx.x / p.seqlen_new, j = blockIdx.x % p.seqlen_new;
  const int len = p.seqlens[b];
  if (!seqlen_in_contract(len, p.max_seqlen)) {
    if (threadIdx.x == 0 && j == 0) record_error(p.error, kErrorLength, b, 0, len);
    return;
  }
  const int t = len + j;
  int64_t k_row, v_row;
  if (p.page_size > 0) {
    const int index = t / p.page_size, page = p.page_table[b * p.page_table_stride + index];
    if (!page_in_contract(page, p.num_pages)) {
      if (threadIdx.x == 0) record_error(p.error, kErrorPage, b, index, page);
      return;
    }
    k_row = page * p.k_cache_stride_b + (t % p.page_size) * p.k_cache_stride_s;
    v_row = page * p.v_cache_stride_b + (t % p.page_size) * p.v_cache_stride_s;
  } else {
    k_row = b * p.k_cache_stride_b + t * p.k_cache_stride_s;
    v_row = b * p.v_cache_stride_b + t * p.v_cache_stride_s;
  }
  constexpr int kChunks = kHeadDim / 8;  // 16-byte pieces of a head's row
  const int per_tensor = p.heads_k * kChunks;
  const uint16_t* k_new = reinterpret_cast<const uint16_t*>(p.k_new) + b * p.k_new_stride_b + j * p.k_new_stride_s;
  const uint16_t* v_new = reinterpret_cast<const uint16_t*>(p.v_new) + b * p.v_new_stride_b + j * p.v_new_stride_s;
  uint16_t* k_cache = reinterpret_cast<uint16_t*>(p.k_cache) + k_row;
  uint16_t* v_cache = reinterpret_cast<uint16_t*>(p.v_cache) + v_row;
  for (int i = threadIdx.x; i < 2 * per_tensor; i += blockDim.x) {
    const int h = (i % per_tensor) / kChunks, c = 8 * (i % kChunks);
    if (i < per_tensor)
      *reinterpret_cast<Chunk16*>(k_cache + h * p.k_cache_stride_h + c) = *reinterpret_cast<const Chunk16*>(k_new + h * p.k_new_stride_h + c);
    else
      *reinterpret_cast<Chunk16*>(v_cache + h * p.v_cache_stride_h + c) = *reinterpret_cast<const Chunk16*>(v_new + h * p.v_new_stride_h + c);
  }
}

// One CTA per sequence: its length against the declared maximum, then every page-table entry its keys (after the
// append) occupy against the pool. Violations go to p.error (the first one wins).
__global__ void __launch_bounds__(128) kv_check_kernel(const __grid_constant__ KvCacheParams p) {
  const int b = blockIdx.x;
  const int len = p.seqlens[b];
  if (!seqlen_in_contract(len, p.max_seqlen)) {
    if (threadIdx.x == 0) record_error(p.error, kErrorLength, b, 0, len);
    return;
  }
  if (p.page_size == 0) return;
  const int pages = (len + p.seqlen_new + p.page_size - 1) / p.page_size;
  for (int i = threadIdx.x; i < pages; i += blockDim.x) {
    const int page = p.page_table[b * p.page_table_stride + i];
    if (!page_in_contract(page, p.num_pages)) record_error(p.error, kErrorPage, b, i, page);
  }
}

}  // namespace fa
