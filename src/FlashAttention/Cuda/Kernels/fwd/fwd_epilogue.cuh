// Forward epilogue of one consumer warpgroup: normalise O by the row sums, write it as 16-bit values into
// shared memory in the 128-byte-swizzled layout of the O tensor map, and store it with TMA (rows past the
// tensor's end are clipped by the copy engine). The log-sum-exp goes straight to global memory.
#pragma once
#include "fwd/fwd_config.cuh"
#include "fwd/fwd_params.cuh"
#include "common/numeric.cuh"
#include "common/softmax.cuh"
#include "common/tile_scheduler.cuh"

namespace fa {

// A consumer thread's place in O: its rows r and r + 8 of the warpgroup's 64, the byte offset of its first 4 bytes in a
// slab row (chunk k of row r sits at 16-byte position k ^ (r % 8): row_off ^ (k << 4), as r·128 has no low bits), and
// the warpgroup's first row in the sequence.
struct EpilogueRows {
  int lane, r;
  uint32_t row_off;
  int m_row;
};
template <class Cfg>
__device__ __forceinline__ EpilogueRows epilogue_rows(int thread, int consumer, const Tile& t) {
  // The thread index through opaque(): otherwise ptxas computes the 2·d/8 swizzled addresses once, before the tile
  // loop, and keeps them live across the mainloop (at d256 they spill and are reloaded in the epilogue).
  const int th = opaque(thread);
  const int lane = th % 32, r = (th / 32) * 16 + lane / 4;
  return EpilogueRows{lane, r, (uint32_t)(r * 128 + ((r & 7) << 4) + (lane & 3) * 4), t.m_block * Cfg::kBlockM + consumer * 64};
}

// A variable-length batch's last query block may end inside the next sequence's rows, which a TMA store would
// overwrite: there the warpgroup copies its staged rows that belong to the sequence, 16 bytes a thread at a time.
template <class Cfg>
__device__ __forceinline__ void store_rows(const FwdParams& p, const uint8_t* o_wg_ptr, int pass, int rows, const Tile& t,
                                           int m_row, int thread) {
  constexpr int kChunks = Cfg::kOSlabs * 8;  // 16-byte pieces of a row in one pass
  for (int i = thread; i < rows * kChunks; i += 128) {
    const int row = i / kChunks, slab = (i % kChunks) / 8, chunk = i % 8;
    const int64_t token = (int64_t)t.q_row0 + m_row + row;
    if (token >= p.total_q) break;
    const uint4_t v = *reinterpret_cast<const uint4_t*>(o_wg_ptr + slab * Cfg::kQSlabBytes + row * 128 + ((chunk ^ (row & 7)) << 4));
    *reinterpret_cast<uint4_t*>(reinterpret_cast<uint16_t*>(p.o) + token * p.o_stride_s + t.head * p.o_stride_h +
                                (pass * Cfg::kOSlabs + slab) * 64 + chunk * 8) = v;
  }
}

// Softmax: OnlineSoftmax, or the FP8 kernel's ScaledOnlineSoftmax (both finalize to 1/rowsum and the LSE).
template <class Cfg, class Softmax>
__device__ __forceinline__ void fwd_epilogue(const FwdParams& p, const TmaMap* tma_o, uint32_t smem, uint8_t* smem_ptr,
                                             int consumer, int thread, int q_buffer, const Tile& t, float (&o)[Cfg::kHeadDim / 2],
                                             Softmax& softmax) {
  float inv_sum[2], lse[2];
  softmax.finalize(p.score_scale, inv_sum, lse);
  scale_rows(o, inv_sum);

  // O has the layout of Q: slabs of kBlockM rows x 128 bytes; this warpgroup owns 64 rows of each slab. It is staged
  // kOSlabs slabs at a time (all of them unless kOPasses > 1), each pass stored by TMA before the next is written.
  const uint32_t o_wg = smem + (Cfg::kOAliasQ ? Cfg::kOffQ + q_buffer * Cfg::kQBytes : Cfg::kOffO) + consumer * Cfg::kWgRowBytes;
  uint8_t* o_wg_ptr = smem_ptr + (o_wg - smem);
  const int bar = Cfg::kBarEpilogue + consumer;

  const auto [lane, r, row_off, m_row] = epilogue_rows<Cfg>(thread, consumer, t);
  const int rows_here = t.seqlen_q - m_row;  // this warpgroup's rows inside the sequence: ≤ 0 … ≥ 64
  const bool by_rows = Cfg::kVarlen && rows_here < 64;
#pragma unroll
  for (int pass = 0; pass < Cfg::kOPasses; ++pass) {
    if (thread == 0) bulk_wait_read_all();  // the previous store (pass or tile) has finished reading this buffer
    named_barrier_sync(bar, 128);
#pragma unroll
    for (int j = pass * Cfg::kOSlabs * 8; j < (pass + 1) * Cfg::kOSlabs * 8; ++j) {
      const int slab = j / 8 - pass * Cfg::kOSlabs, chunk = j % 8;
      const uint32_t off = slab * Cfg::kQSlabBytes + (row_off ^ (chunk << 4));
      *reinterpret_cast<uint32_t*>(o_wg_ptr + off) = pack2<typename Cfg::Element>(o[4 * j], o[4 * j + 1]);
      *reinterpret_cast<uint32_t*>(o_wg_ptr + off + 8 * 128) = pack2<typename Cfg::Element>(o[4 * j + 2], o[4 * j + 3]);
    }
    fence_proxy_async_smem();
    named_barrier_sync(bar, 128);
    if (by_rows) {
      store_rows<Cfg>(p, o_wg_ptr, pass, rows_here, t, m_row, thread);
    } else if (thread == 0) {
#pragma unroll
      for (int slab = 0; slab < Cfg::kOSlabs; ++slab)
        tma_store_4d(tma_o, o_wg + slab * Cfg::kQSlabBytes, (pass * Cfg::kOSlabs + slab) * 64, t.q_row0 + m_row, t.head, t.tma_batch);
      bulk_commit();
    }
  }
  if (p.lse != nullptr && (lane & 3) == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = m_row + r + 8 * h;
      if (row < t.seqlen_q)
        p.lse[t.batch * p.lse_stride_b + t.head * p.lse_stride_h + (t.q_row0 + row) * p.lse_stride_s] = lse[h];
    }
  }
}

}  // namespace fa
