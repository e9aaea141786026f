// The decode kernel's work unit (which sequence, KV head, m-block and split a CTA owns, and its key blocks), the
// producer warp that loads K and V through TMA (contiguous cache or pages), and the consumer warpgroup's walk over
// the key blocks: S = Q·Kᵀ, mask and online softmax, O += P·V.
#pragma once
#include "decode/decode_append.cuh"
#include "decode/decode_config.cuh"
#include "decode/decode_params.cuh"
#include "common/gemm.cuh"
#include "common/mask.cuh"
#include "common/numeric.cuh"
#include "common/softmax.cuh"
#include "common/warp.cuh"

namespace fa {

// Packed row R of a (sequence, KV head) is query position R / group of query head head_k·group + R % group: the
// query heads that share a KV head sit in one tile, so each key block loaded serves all of them.
struct DecodeUnit {
  int batch, head_k, m_block, split;
  int cached;          // keys in the cache before the append (seqlens[b], or seqlen_k)
  int keys;            // keys attended: cached + seqlen_new
  int n_begin, n_end;  // this split's key blocks: [n_begin, n_end)
  Mask mask;           // over query positions and the sequence's keys
};

// The CTA's unit; false when the sequence's length breaks the contract (nothing of it is read or written).
template <class Cfg>
__device__ __forceinline__ bool decode_unit(const DecodeParams& p, DecodeUnit& u) {
  int tile = blockIdx.x;
  u.split = tile % p.num_splits;
  tile /= p.num_splits;
  u.head_k = tile % p.heads_k;
  tile /= p.heads_k;
  u.m_block = tile % p.num_m_blocks;
  u.batch = tile / p.num_m_blocks;
  u.cached = p.seqlens != nullptr ? p.seqlens[u.batch] : p.seqlen_k;
  if (p.seqlens != nullptr && !seqlen_in_contract(u.cached, p.max_seqlen)) return false;
  u.keys = u.cached + p.seqlen_new;
  u.mask = Mask{p.seqlen_q, u.keys, p.window_left, p.window_right};
  // The rows' key ranges are monotone in the query position: their union runs from the first row's first key to
  // the last row's last key. The split takes an equal share of its blocks (splits past the blocks get none).
  const int m0 = u.m_block * Cfg::kBlockM;
  const int last_row = (m0 + Cfg::kBlockM < p.rows ? m0 + Cfg::kBlockM : p.rows) - 1;
  const int lo = u.mask.first_key(m0 / p.group), hi = u.mask.last_key(last_row / p.group);
  u.n_begin = u.n_end = 0;
  if (u.keys > 0 && hi >= lo) {
    const int n_lo = lo / Cfg::kBlockN, blocks = hi / Cfg::kBlockN - n_lo + 1;
    u.n_begin = n_lo + (int)((int64_t)blocks * u.split / p.num_splits);
    u.n_end = n_lo + (int)((int64_t)blocks * (u.split + 1) / p.num_splits);
  }
  return true;
}

// ---- producer ----------------------------------------------------------------------------------------------
// The whole warp walks the split's blocks right to left, as the consumers do. A key block is loaded as boxes of
// box_rows tokens, each inside one page (box_rows divides both the page and the block): lane i locates box i (its
// page-table entry read before lane 0 waits for the stage, so the read's latency hides behind the wait) and issues
// its copies. Boxes past the sequence's last key are not loaded; the consumers mask those keys and zero those values.
// Appended tokens (p.seqlen_new > 0) are written into the cache first (decode_append.cuh).
template <class Cfg>
__device__ __forceinline__ void decode_producer(const DecodeParams& p, const KvCacheParams& cache, const DecodeUnit& u, const TmaMap* tma_k,
                                                const TmaMap* tma_v, uint32_t smem, const DecodeBarriers<Cfg>& bars) {
  const int lane = (int)lane_id();
  if (p.seqlen_new > 0) append_share<Cfg>(cache, p.num_m_blocks, p.num_splits, u.batch, u.head_k, u.m_block, u.split, u.cached, lane);
  const int boxes = Cfg::kBlockN / p.box_rows;
  const uint32_t box_bytes = (uint32_t)p.box_rows * 128;
  PipelineState<Cfg::kStages> kv;
  for (int n = u.n_end - 1; n >= u.n_begin; --n) {
    // Coordinates of lane's box in the 4-D map (head_dim, rows, heads_k, pages or sequences).
    const int t = n * Cfg::kBlockN + lane * p.box_rows;
    const bool mine = lane < boxes && t < u.keys;
    int row = t, page = u.batch;
    if (mine && p.page_size > 0) {
      const int index = t / p.page_size;
      page = p.page_table[u.batch * p.page_table_stride + index];
      row = t % p.page_size;
      // A page outside the pool breaks the contract (the checked mode reports it before any launch): page 0 is read
      // instead, so that the output of that sequence is unspecified but no access leaves the pool.
      if (!page_in_contract(page, p.num_pages)) {
        record_error(p.error, kErrorPage, u.batch, index, page);
        page = 0;
      }
    }
    if (p.seqlen_new > 0) append_block<Cfg>(cache, u.batch, u.head_k, u.cached, u.keys, n * Cfg::kBlockN, lane);
    const int live = (u.keys - n * Cfg::kBlockN + p.box_rows - 1) / p.box_rows;
    const uint32_t bytes = (uint32_t)(live < boxes ? live : boxes) * box_bytes * Cfg::kSlabs;
    const int s = kv.stage();
    const uint32_t free_parity = kv.phase() ^ 1;  // the first lap finds every stage free
    if (lane == 0) {
      mbar_wait(bars.empty_k(s), free_parity);
      mbar_arrive_expect_tx(bars.full_k(s), bytes);
    }
    warp_sync();
    if (mine) {
#pragma unroll
      for (int slab = 0; slab < Cfg::kSlabs; ++slab)
        tma_load_4d(smem + Cfg::kOffK + s * Cfg::kKBytes + slab * Cfg::kKSlabBytes + lane * box_bytes, tma_k, bars.full_k(s),
                    slab * 64, row, u.head_k, page);
    }
    if (lane == 0) {
      mbar_wait(bars.empty_v(s), free_parity);
      mbar_arrive_expect_tx(bars.full_v(s), bytes);
    }
    warp_sync();
    if (mine) {
#pragma unroll
      for (int slab = 0; slab < Cfg::kSlabs; ++slab)
        tma_load_4d(smem + Cfg::kOffV + s * Cfg::kKBytes + slab * Cfg::kKSlabBytes + lane * box_bytes, tma_v, bars.full_v(s),
                    slab * 64, row, u.head_k, page);
    }
    ++kv.count;
  }
}

// ---- consumer ----------------------------------------------------------------------------------------------
// Where a consumer thread's two rows (r and r + 8 of the warpgroup's 64, r = 16·warp + lane/4) come from and go to.
struct DecodeRows {
  int packed[2];  // packed row index in the (sequence, KV head): m0 + r, m0 + r + 8
  bool live[2];   // a real query row (packed < rows)
  int query[2];   // query position
  int head[2];    // query head
};

template <class Cfg>
__device__ __forceinline__ DecodeRows decode_rows(const DecodeParams& p, const DecodeUnit& u, int thread) {
  DecodeRows r;
  const int r0 = (thread / 32) * 16 + (thread % 32) / 4;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    r.packed[h] = u.m_block * Cfg::kBlockM + r0 + 8 * h;
    r.live[h] = r.packed[h] < p.rows;
    r.query[h] = r.packed[h] / p.group;
    r.head[h] = u.head_k * p.group + r.packed[h] % p.group;
  }
  return r;
}

// Q's 64 packed rows as the register A fragment of S = Q·Kᵀ, read straight from global memory in the layout
// load_a_fragment_sw128 gives (frag[4kk + i]: row r + 8·(i & 1), columns 16kk + 8·(i >> 1) + 2·(lane % 4) and +1).
// Rows past the last query are zero.
template <class Cfg>
__device__ __forceinline__ void load_q_fragment(const DecodeParams& p, const DecodeUnit& u, const DecodeRows& rows, int thread,
                                                uint32_t (&frag)[Cfg::kHeadDim / 4]) {
  const uint16_t* row_ptr[2];
#pragma unroll
  for (int h = 0; h < 2; ++h)
    row_ptr[h] = reinterpret_cast<const uint16_t*>(p.q) + u.batch * p.q_stride_b + rows.query[h] * p.q_stride_s + rows.head[h] * p.q_stride_h;
  const int col = 2 * (thread % 4);
#pragma unroll
  for (int kk = 0; kk < Cfg::kHeadDim / 16; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int h = i & 1;
      frag[4 * kk + i] = rows.live[h] ? *reinterpret_cast<const uint32_t*>(row_ptr[h] + 16 * kk + 8 * (i >> 1) + col) : 0u;
    }
}

// Q's 64 packed rows as a 128-byte-swizzled K-major tile in shared memory (slabs of 64 columns, chunk k of row r at
// position k ^ (r % 8): the layout TMA writes), 16 bytes per thread and step; rows past the last query are zero.
template <class Cfg>
__device__ __forceinline__ void store_q_tile(const DecodeParams& p, const DecodeUnit& u, uint8_t* tile, int thread) {
  constexpr int kChunks = Cfg::kHeadDim / 8;
  for (int i = thread; i < Cfg::kBlockM * kChunks; i += Cfg::kConsumerThreads) {
    const int r = i / kChunks, c = i % kChunks, packed = u.m_block * Cfg::kBlockM + r;
    Chunk16 v{0u, 0u, 0u, 0u};
    if (packed < p.rows) {
      const int query = packed / p.group, head = u.head_k * p.group + packed % p.group;
      v = *reinterpret_cast<const Chunk16*>(reinterpret_cast<const uint16_t*>(p.q) + u.batch * p.q_stride_b + query * p.q_stride_s +
                                            head * p.q_stride_h + 8 * c);
    }
    *reinterpret_cast<Chunk16*>(tile + (c / 8) * Cfg::kQSlabBytes + r * 128 + (((c % 8) ^ (r % 8)) << 4)) = v;
  }
}

template <class Cfg>
struct DecodeQ {
  uint32_t frag[Cfg::kQInRegs ? Cfg::kHeadDim / 4 : 1];
  uint32_t tile;  // shared-memory Q tile (kSharedMemory)

  __device__ __forceinline__ void load(const DecodeParams& p, const DecodeUnit& u, const DecodeRows& rows, uint32_t smem,
                                       uint8_t* smem_ptr, int thread) {
    tile = smem + Cfg::kOffQ;
    if constexpr (Cfg::kQInRegs) {
      load_q_fragment<Cfg>(p, u, rows, thread, frag);
    } else {
      store_q_tile<Cfg>(p, u, smem_ptr + Cfg::kOffQ, thread);
      fence_proxy_async_smem();  // generic stores, read by wgmma (the async proxy)
      named_barrier_sync(Cfg::kBarConsumers, Cfg::kConsumerThreads);
    }
  }

  // S (64 x kBlockN) = Q (64 x d) · K_stageᵀ, both K-major.
  __device__ __forceinline__ void gemm_qk(uint32_t k_stage, float (&s)[Cfg::kBlockN / 2]) const {
    using E = typename Cfg::Element;
    if constexpr (Cfg::kQInRegs)
      gemm_rs_kmajor<E, Cfg::kBlockN, Cfg::kHeadDim>(frag, k_stage, Cfg::kKSlabBytes, s, false);
    else
      gemm_ss_kmajor<E, Cfg::kBlockN, Cfg::kHeadDim>(tile, Cfg::kQSlabBytes, k_stage, Cfg::kKSlabBytes, s, false);
  }
};

// The consumer warpgroup's pass over its split's key blocks, right to left (the first block is the one the mask and
// the sequence's end cut), into o and softmax.
template <class Cfg>
struct DecodeMainloop {
  const DecodeParams& p;
  const DecodeUnit& u;
  const DecodeBarriers<Cfg>& bars;
  uint32_t smem;
  uint8_t* smem_ptr;
  int thread;

  __device__ __forceinline__ uint32_t k_stage(int s) const { return smem + Cfg::kOffK + s * Cfg::kKBytes; }
  __device__ __forceinline__ uint32_t v_stage(int s) const { return smem + Cfg::kOffV + s * Cfg::kKBytes; }
  __device__ __forceinline__ void release(uint32_t bar) const { if (thread == 0) mbar_arrive(bar); }

  // Softcap, then the mask: keys outside a row's window and past the sequence's end become −∞ (by assignment: the
  // scores of keys not loaded, or past the end of a page, may be anything).
  __device__ __forceinline__ void score_mod(const DecodeRows& rows, float (&s)[Cfg::kBlockN / 2], int n) const {
    if (p.has_softcap) {
#pragma unroll
      for (int i = 0; i < Cfg::kBlockN / 2; ++i) s[i] = fast_tanh(s[i] * p.softcap_premul);
    }
    const int n0 = n * Cfg::kBlockN;
    const int q_first = u.m_block * Cfg::kBlockM / p.group;
    const int q_last = (((u.m_block + 1) * Cfg::kBlockM < p.rows ? (u.m_block + 1) * Cfg::kBlockM : p.rows) - 1) / p.group;
    if (u.mask.tile_needs_mask(q_first, q_last - q_first + 1, n0, Cfg::kBlockN)) {
      const int col0 = n0 + 2 * (thread % 4);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int first = u.mask.first_key(rows.query[h]), last = u.mask.last_key(rows.query[h]);
#pragma unroll
        for (int j = 0; j < Cfg::kBlockN / 8; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int col = col0 + 8 * j + e;
            if (col < first || col > last) s[4 * j + 2 * h + e] = neg_inf();
          }
      }
    }
  }

  // Values of keys past the sequence's end (the block that holds its last key): zero, since P·V multiplies them by
  // P = 0 and what is there may be NaN (cache memory never written, or a stage's earlier contents).
  __device__ __forceinline__ void zero_value_tail(int stage, int valid) const {
    uint8_t* v = smem_ptr + Cfg::kOffV + stage * Cfg::kKBytes;
    const int chunks = (Cfg::kBlockN - valid) * 8;  // 16-byte chunks per slab
    for (int i = thread; i < chunks * Cfg::kSlabs; i += Cfg::kConsumerThreads) {
      const int slab = i / chunks, c = i % chunks;
      *reinterpret_cast<Chunk16*>(v + slab * Cfg::kKSlabBytes + valid * 128 + c * 16) = Chunk16{0u, 0u, 0u, 0u};
    }
    fence_proxy_async_smem();
    named_barrier_sync(Cfg::kBarConsumers, Cfg::kConsumerThreads);
  }

  __device__ __forceinline__ void run(const DecodeQ<Cfg>& q, const DecodeRows& rows, float (&o)[Cfg::kHeadDim / 2],
                                      OnlineSoftmax<Cfg::kBlockN / 2>& softmax) const {
    PipelineState<Cfg::kStages> kv;
    float s[Cfg::kBlockN / 2];
    uint32_t pk[Cfg::kBlockN / 4];
    float rescale[2];
    for (int n = u.n_end - 1; n >= u.n_begin; --n) {
      const int st = kv.stage();
      mbar_wait(bars.full_k(st), kv.phase());
      wgmma_fence();
      q.gemm_qk(k_stage(st), s);
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs(s);
      release(bars.empty_k(st));
      score_mod(rows, s, n);
      softmax.step(s, p.score_scale_log2, rescale);
      pack_fragment<typename Cfg::Element>(s, pk);
      scale_rows(o, rescale);
      mbar_wait(bars.full_v(st), kv.phase());
      const int valid = u.keys - n * Cfg::kBlockN;
      if (valid < Cfg::kBlockN) zero_value_tail(st, valid);
      wgmma_fence();
      gemm_rs_mnmajor<typename Cfg::Element, Cfg::kHeadDim, Cfg::kBlockN>(pk, v_stage(st), Cfg::kKSlabBytes, o);
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs(o);
      release(bars.empty_v(st));
      ++kv.count;
    }
  }
};

}  // namespace fa
