// The backward mainloop. Producer: K and V of the CTA's key block once, then Q, dO, LSE·log2(e) and D of each
// visited query block into the ring. Consumer warpgroup c (keys 64c … 64c+63 of the block), per query block:
//   Sᵀ = K_c Qᵀ, dPᵀ = V_c dOᵀ                (wgmma, shared memory)
//   Pᵀ = 2^(Sᵀ·scale·log2e − LSE·log2e)       (from the forward's LSE: no max or sum is recomputed)
//   dV_c += Pᵀ dO                             (P from registers)
//   dSᵀ = Pᵀ ∘ (dPᵀ − D)  [∘ (1 − tanh²) with softcap]
//   dK_c += dSᵀ Q                             (dS from registers)
//   dS → shared memory; dQ[:, chunk] = dS K[:, chunk] (both consumers' keys), added to a float32 buffer.
// The float32 dQ buffer is kept in blocks of 64 queries x 64 columns, each block in the order of the wgmma
// accumulator registers (see dq_block), so that a consumer's block is one contiguous 16 KB run: one bulk reduction
// (kDqBulk) or fully used vector reductions; the post-pass puts the rows back together.
// Computing Sᵀ rather than S puts each warpgroup's own keys on the rows of its accumulators, so dK/dV need no
// exchange; only dQ, which sums over all 128 keys, goes through shared memory.
#pragma once
#include "bwd/bwd_config.cuh"
#include "bwd/bwd_params.cuh"
#include "common/gemm.cuh"
#include "common/mask.cuh"
#include "common/numeric.cuh"
#include "varlen/varlen_bounds.cuh"

namespace fa {

// The CTA's sequence: where it lies in the tensors (dense batches: batch coordinate `batch` of the tensor maps, rows
// from 0; packed variable-length batches: coordinate 0, rows from q_row0 / k_row0) and in the side buffers.
struct BwdSeq {
  int batch, tma_batch, q_row0, k_row0, seqlen_q, seqlen_k;
  int64_t side_row0;  // variable-length: the sequence's first row in each head's run of the side buffers
};

template <class Cfg>
__device__ __forceinline__ BwdSeq bwd_seq(const BwdParams& p, int batch) {
  if constexpr (Cfg::kVarlen) {
    const SeqBounds s = varlen_bounds(p.cu_seqlens_q, p.cu_seqlens_k, p.seqused_k, batch, p.total_q, p.total_k);
    return BwdSeq{batch, 0, s.q_row0, s.k_row0, s.seqlen_q, s.seqlen_k, varlen_side_row0(s.q_row0, batch)};
  } else {
    return BwdSeq{batch, batch, 0, 0, p.seqlen_q, p.seqlen_k, 0};
  }
}

// The first row of query head h of the sequence in the side buffers (LSE·log2(e), D, dQ).
template <class Cfg>
__device__ __forceinline__ int64_t side_row(const BwdParams& p, const BwdSeq& seq, int h) {
  if constexpr (Cfg::kVarlen) return (int64_t)h * p.seqlen_q_padded + seq.side_row0;
  else return ((int64_t)seq.batch * p.heads_q + h) * p.seqlen_q_padded;
}

// The float32 dQ block (kBlockM queries x 64 columns: one or, at 128 queries per step, two consecutive 64x64
// blocks) of query block m, columns 64·chunk …, of query head h. Inside a 64x64 block,
// thread t (0…127) of a consumer warpgroup holds floats 4·(128·g + t) … +3 for g = 0…7: its accumulator registers
// dq[4g … 4g+3], i.e. rows 16·(t/32) + (t%32)/4 (+8 for the last two) and columns 8g + 2·(t%4) (+1).
template <class Cfg>
__device__ __forceinline__ float* dq_block(const BwdParams& p, const BwdSeq& seq, int h, int m, int chunk) {
  const int64_t blocks = side_row<Cfg>(p, seq, h) / Cfg::kBlockM + m;
  return p.dq_accum + (blocks * (Cfg::kHeadDim / 64) + chunk) * (Cfg::kBlockM * 64);
}

// The steps of a key block's CTA: one per (query head of its GQA group, query block that sees the keys), heads
// outermost. The producer, the consumers and the dQ writer walk them in this one order.
template <class Cfg>
struct BwdSteps {
  int head0, m_first, m_blocks, count;
  __device__ __forceinline__ BwdSteps(const BwdParams& p, const Mask& mask, int n_block, int head_k) {
    int q_lo, q_hi;
    mask.query_range(n_block * Cfg::kBlockN, Cfg::kBlockN, q_lo, q_hi);
    head0 = head_k * p.group;
    m_first = q_lo / Cfg::kBlockM;
    m_blocks = q_hi < q_lo ? 0 : q_hi / Cfg::kBlockM - m_first + 1;
    count = p.group * m_blocks;
  }
  __device__ __forceinline__ int head(int t) const { return head0 + t / m_blocks; }
  __device__ __forceinline__ int block(int t) const { return m_first + t % m_blocks; }
};

// Deterministic mode: the key blocks that see query block m add to its dQ in decreasing order, and the CTAs are
// launched in that order too (flash_bwd_kernel: the last key block first), so a CTA only ever waits for CTAs
// launched before it. Decreasing because a later key block reaches a given query block after fewer steps of its
// own walk (under a causal mask or a window it starts further down): in increasing order each CTA waited for its
// predecessor's longer walk, and a causal backward took twice as long as without the ordering. A semaphore per
// (batch, query head, query block) counts the additions done; this CTA's turn comes when it equals dq_turn.
// Variable-length batches index them per 64 side-buffer rows, as the pre-pass clears them.
template <class Cfg>
__device__ __forceinline__ int* dq_semaphore(const BwdParams& p, const BwdSeq& seq, int h, int m) {
  if constexpr (Cfg::kVarlen) return p.dq_semaphore + (side_row<Cfg>(p, seq, h) + m * Cfg::kBlockM) / 64;
  else return p.dq_semaphore + side_row<Cfg>(p, seq, h) / Cfg::kBlockM + m;
}
template <class Cfg>
__device__ __forceinline__ int dq_turn(const Mask& mask, int n_block, int m) {
  int n_first, n_last;
  mask.block_range(m * Cfg::kBlockM, Cfg::kBlockM, Cfg::kBlockN, n_first, n_last);
  return n_last - n_block;
}

// Bulk dQ (one lane of the producer warpgroup's second warp): per step, once each consumer has stored its dQ block
// in shared memory, adds it into the float32 buffer with a bulk reduction and hands the buffer back when read.
// Deterministic mode: it waits for this CTA's turn (dq_turn) and adds consumer 0's block before consumer 1's; the
// wait is here, off the consumers.
template <class Cfg>
__device__ __forceinline__ void bwd_dq_writer(const BwdParams& p, const Mask& mask, uint32_t smem, const BwdBarriers<Cfg>& bars,
                                              int n_block, int head_k, const BwdSeq& seq) {
  const BwdSteps<Cfg> steps(p, mask, n_block, head_k);
  for (int t = 0; t < steps.count; ++t) {
    const int h = steps.head(t), m = steps.block(t);
    const int turn = p.deterministic ? dq_turn<Cfg>(mask, n_block, m) : 0;
    if (p.deterministic)
      while (ld_acquire_gpu(dq_semaphore<Cfg>(p, seq, h, m)) != turn) {}
#pragma unroll
    for (int c = 0; c < Cfg::kConsumerWGs; ++c) {
      mbar_wait(bars.dq_full(c), t & 1);
      // d128: consumer c holds columns 64c …; d64 (split keys): both hold partial sums of the same block.
      bulk_reduce_add_f32(dq_block<Cfg>(p, seq, h, m, Cfg::kExchangeDs ? c : 0), smem + Cfg::kOffDq + c * Cfg::kDqBlockBytes,
                          Cfg::kDqBlockBytes);
      bulk_commit();
      if (p.deterministic) bulk_wait_all();  // complete before the next addition to the same elements is issued
    }
    bulk_wait_read_all();
    if (p.deterministic) {
      fence_proxy_async_global();
      fence_acq_rel_gpu();
      st_release_gpu(dq_semaphore<Cfg>(p, seq, h, m), turn + 1);
    }
#pragma unroll
    for (int c = 0; c < Cfg::kConsumerWGs; ++c) mbar_arrive(bars.dq_empty(c));
  }
}

// The producer's loads: K and V of a key block, and step t's Q, dO, LSE·log2(e) and D (query head h, block m).
template <class Cfg>
__device__ __forceinline__ void bwd_load_kv(const TmaMap* tma_k, const TmaMap* tma_v, uint32_t smem, const BwdBarriers<Cfg>& bars,
                                            int n_block, int head_k, const BwdSeq& seq) {
  const int n0 = n_block * Cfg::kBlockN;
  mbar_arrive_expect_tx(bars.kv_full(), 2 * Cfg::kKBytes);
#pragma unroll
  for (int slab = 0; slab < Cfg::kSlabs; ++slab) {
    tma_load_4d(smem + Cfg::kOffK + slab * Cfg::kKSlabBytes, tma_k, bars.kv_full(), slab * 64, seq.k_row0 + n0, head_k, seq.tma_batch);
    tma_load_4d(smem + Cfg::kOffV + slab * Cfg::kKSlabBytes, tma_v, bars.kv_full(), slab * 64, seq.k_row0 + n0, head_k, seq.tma_batch);
  }
}
template <class Cfg>
__device__ __forceinline__ void bwd_load_step(const BwdParams& p, const TmaMap* tma_q, const TmaMap* tma_do, uint32_t smem,
                                              const BwdBarriers<Cfg>& bars, int t, int h, int m, const BwdSeq& seq) {
  const int s = t % Cfg::kStages;
  mbar_wait(bars.empty(s), ((t / Cfg::kStages) & 1) ^ 1);
  mbar_arrive_expect_tx(bars.full(s), Cfg::kStepBytes);
#pragma unroll
  for (int slab = 0; slab < Cfg::kSlabs; ++slab) {
#pragma unroll
    for (int r = 0; r < Cfg::kBlockM; r += Cfg::kTmaRows) {  // boxes of 64 rows, one under the other in the slab
      const int row = seq.q_row0 + m * Cfg::kBlockM + r;
      tma_load_4d(smem + Cfg::kOffQ + s * Cfg::kQBytes + slab * Cfg::kQSlabBytes + r * 128, tma_q, bars.full(s), slab * 64, row, h, seq.tma_batch);
      tma_load_4d(smem + Cfg::kOffDO + s * Cfg::kQBytes + slab * Cfg::kQSlabBytes + r * 128, tma_do, bars.full(s), slab * 64, row, h, seq.tma_batch);
    }
  }
  const int64_t row0 = side_row<Cfg>(p, seq, h) + m * Cfg::kBlockM;
  bulk_load(smem + Cfg::kOffLse + s * Cfg::kRowBytes, p.lse_log2 + row0, Cfg::kRowBytes, bars.full(s));
  bulk_load(smem + Cfg::kOffD + s * Cfg::kRowBytes, p.dpsum + row0, Cfg::kRowBytes, bars.full(s));
}

// One key block's loads: its K and V, then every step's Q, dO, LSE and D.
template <class Cfg>
__device__ __forceinline__ void bwd_producer(const BwdParams& p, const Mask& mask, const TmaMap* tma_q,
                                             const TmaMap* tma_k, const TmaMap* tma_v, const TmaMap* tma_do,
                                             uint32_t smem, const BwdBarriers<Cfg>& bars, int n_block, int head_k, const BwdSeq& seq) {
  const BwdSteps<Cfg> steps(p, mask, n_block, head_k);
  bwd_load_kv<Cfg>(tma_k, tma_v, smem, bars, n_block, head_k, seq);
  for (int t = 0; t < steps.count; ++t) bwd_load_step<Cfg>(p, tma_q, tma_do, smem, bars, t, steps.head(t), steps.block(t), seq);
}

template <class Cfg>
struct BwdConsumer {
  using E = typename Cfg::Element;
  static constexpr int kD = Cfg::kHeadDim;
  static constexpr int kM = Cfg::kBlockM;
  static constexpr int kC = Cfg::kOwnColumns;  // dK/dV columns this consumer accumulates
  const BwdParams& p;
  const Mask& mask;
  const BwdBarriers<Cfg>& bars;
  uint32_t smem;
  const uint8_t* smem_ptr;  // the same shared memory as a pointer the compiler knows to be shared
  int consumer, thread;
  int n_block, head_k;
  BwdSeq seq;

  __device__ __forceinline__ int n0() const { return n_block * Cfg::kBlockN; }
  __device__ __forceinline__ int lane() const { return thread % 32; }
  __device__ __forceinline__ int warp() const { return thread / 32; }
  // This thread's keys are key_row0() and key_row0() + 8.
  __device__ __forceinline__ int key_row0() const { return n0() + (Cfg::kSplitColumns ? 0 : consumer * 64) + warp() * 16 + lane() / 4; }
  // The first dK/dV column this consumer owns, and the first 64-column slab of it.
  __device__ __forceinline__ int own_column0() const { return Cfg::kSplitColumns ? consumer * Cfg::kOwnColumns : 0; }
  __device__ __forceinline__ int own_slab0() const { return own_column0() / 64; }

  // The values of a per-query row (LSE or D) of the stage for this thread's queries `query` and `query` + 1 (one
  // 8-byte load, shared by the thread's two key rows). At d64 ordinary loads, which the compiler may load once and
  // schedule early, pay; at d128 the registers they would hold are what the consumer lacks (they spill), so each
  // pair is loaded where it is used.
  __device__ __forceinline__ void row_pair(uint32_t row, int query, float& a, float& b) const {
    if constexpr (kD == 64) {
      const float* values = reinterpret_cast<const float*>(smem_ptr + (row - smem));
      a = values[query];
      b = values[query + 1];
    } else {
      ld_shared_v2_f32(row + 4 * query, a, b);
    }
  }

  // Sᵀ = K_c Qᵀ and dPᵀ = V_c dOᵀ of step t (64 keys x 64 queries), issued as two commit groups.
  // With kSplitSdP, one GEMM per consumer into st: Sᵀ on consumer 0, dPᵀ on consumer 1 (one instruction stream,
  // the operands chosen by consumer: a wgmma under a branch on the consumer would make ptxas serialise them all).
  __device__ __forceinline__ void issue_s_dp(int t, float (&st)[kM / 2], float (&dpt)[kM / 2]) const {
    const int s = t % Cfg::kStages;
    mbar_wait(bars.full(s), (t / Cfg::kStages) & 1);
    if constexpr (Cfg::kSplitSdP) {
      // (warp_uniform: chosen by consumer, the addresses would otherwise sit in vector registers, spill, and have each
      // wgmma descriptor rebuilt from a local-memory reload and moved over with R2UR)
      const uint32_t a = (uint32_t)warp_uniform((int)(smem + (consumer == 0 ? Cfg::kOffK : Cfg::kOffV)));
      const uint32_t b = (uint32_t)warp_uniform((int)(smem + (consumer == 0 ? Cfg::kOffQ : Cfg::kOffDO) + s * Cfg::kQBytes));
      wgmma_fence();
      gemm_ss_kmajor<E, kM, kD>(a, Cfg::kKSlabBytes, b, Cfg::kQSlabBytes, st, false);
      wgmma_commit();
      return;
    }
    const uint32_t k_wg = smem + Cfg::kOffK + consumer * Cfg::kWgRowBytes;
    const uint32_t v_wg = smem + Cfg::kOffV + consumer * Cfg::kWgRowBytes;
    wgmma_fence();
    gemm_ss_kmajor<E, kM, kD>(k_wg, Cfg::kKSlabBytes, smem + Cfg::kOffQ + s * Cfg::kQBytes, Cfg::kQSlabBytes, st, false);
    wgmma_commit();
    gemm_ss_kmajor<E, kM, kD>(v_wg, Cfg::kKSlabBytes, smem + Cfg::kOffDO + s * Cfg::kQBytes, Cfg::kQSlabBytes, dpt, false);
    wgmma_commit();
  }

  // The key block's walk over its steps, then dK and dV stored.
  __device__ __forceinline__ void run() const {
    float dk[kC / 2], dv[kC / 2];
#pragma unroll
    for (int i = 0; i < kC / 2; ++i) dk[i] = dv[i] = 0.f;
    const BwdSteps<Cfg> steps(p, mask, n_block, head_k);
    mbar_wait(bars.kv_full(), 0);
    float st[kM / 2], dpt[kM / 2];
    for (int t = 0; t < steps.count; ++t) {
      issue_s_dp(t, st, dpt);
      if constexpr (Cfg::kSplitSdP) step_split_sdp(t, steps.head(t), steps.block(t), st, dk, dv);
      else step(t, steps.head(t), steps.block(t), st, dpt, dk, dv);
    }
    store_dkv(dk, dv);
  }

  // Pᵀ = exp2(Sᵀ·scale − LSE) for query block m0 (lse: the stage's LSE row; q_col0 = 2·(lane % 4)), masked,
  // packed (for dV, and without softcap for dS too); under softcap st is capped first and keeps P·(1 − tanh²) for dS.
  __device__ __forceinline__ void form_p(uint32_t lse, int m0, int q_col0, float (&st)[kM / 2], uint32_t (&ppk)[kM / 4]) const {
    if constexpr (Cfg::kSoftcap) {
      // P packed as soon as a pair is formed, and st = P·(1 − tanh²) at once: no array of derivatives beside st (its
      // 32 registers made the d256 kernel spill 244 bytes). The mask then zeroes st and the packed halves.
#pragma unroll
      for (int j = 0; j < kM / 8; ++j) {
        float lse_q[2];
        row_pair(lse, 8 * j + q_col0, lse_q[0], lse_q[1]);
#pragma unroll
        for (int w = 2 * j; w < 2 * j + 2; ++w) {
          float pair[2];
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float th = fast_tanh(st[2 * w + e] * p.softcap_premul);
            pair[e] = fast_exp2(th * p.score_scale_log2 - lse_q[e]);
            st[2 * w + e] = pair[e] * (1.f - th * th);
          }
          ppk[w] = pack2<E>(pair[0], pair[1]);
        }
      }
      if (mask.tile_needs_mask(m0, kM, n0(), Cfg::kBlockN)) {
#pragma unroll
        for (int i = 0; i < kM / 2; ++i) {
          const int q = m0 + 8 * (i / 4) + q_col0 + (i & 1), key = key_row0() + 8 * ((i >> 1) & 1);
          if (key < mask.first_key(q) || key > mask.last_key(q)) {
            st[i] = 0.f;
            ppk[i / 2] &= (i & 1) ? 0x0000ffffu : 0xffff0000u;  // the element's 16-bit half (low half: even i)
          }
        }
      }
    } else {
      // P in place of Sᵀ.
#pragma unroll
      for (int j = 0; j < kM / 8; ++j) {
        float lse_q[2];
        row_pair(lse, 8 * j + q_col0, lse_q[0], lse_q[1]);
#pragma unroll
        for (int i = 4 * j; i < 4 * j + 4; ++i) st[i] = fast_exp2(st[i] * p.score_scale_log2 - lse_q[i & 1]);
      }
      // One branch around the whole masking pass: a test per element makes ptxas emit 32 branch regions (BSSY, BRA,
      // BSYNC) that cost even tiles needing no mask.
      if (mask.tile_needs_mask(m0, kM, n0(), Cfg::kBlockN)) {
#pragma unroll
        for (int i = 0; i < kM / 2; ++i) {
          const int q = m0 + 8 * (i / 4) + q_col0 + (i & 1), key = key_row0() + 8 * ((i >> 1) & 1);
          if (key < mask.first_key(q) || key > mask.last_key(q)) st[i] = 0.f;
        }
      }
#pragma unroll
      for (int w = 0; w < kM / 4; ++w) ppk[w] = pack2<E>(st[2 * w], st[2 * w + 1]);
    }
  }

  // dSᵀ = P ∘ (dPᵀ − D) [∘ (1 − tanh²)], packed (dsum: the stage's D row): P from the packed ppk, or under
  // softcap from st.
  __device__ __forceinline__ void form_ds(uint32_t dsum, int q_col0, const float (&st)[kM / 2], const uint32_t (&ppk)[kM / 4],
                                          const float (&dpt)[kM / 2], uint32_t (&dspk)[kM / 4]) const {
#pragma unroll
    for (int j = 0; j < kM / 8; ++j) {
      float d_q[2];
      row_pair(dsum, 8 * j + q_col0, d_q[0], d_q[1]);
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        float g[2], pv[2];
        if constexpr (Cfg::kSoftcap) {
          pv[0] = st[4 * j + 2 * hh];
          pv[1] = st[4 * j + 2 * hh + 1];
        } else {
          unpack2<E>(ppk[2 * j + hh], pv[0], pv[1]);
        }
#pragma unroll
        for (int e = 0; e < 2; ++e) g[e] = pv[e] * (dpt[4 * j + 2 * hh + e] - d_q[e]);
        dspk[2 * j + hh] = pack2<E>(g[0], g[1]);
      }
    }
  }

  // kSplitSdP's hand-over between the consumers: a packed 64x64 fragment as a register image in shared memory,
  // word w of thread t at 4·(128·w + t) (consecutive threads, consecutive banks; the fragments have the same layout
  // in both warpgroups, so thread t reads what its sibling's thread t wrote).
  __device__ __forceinline__ void put_image(uint32_t image, const uint32_t (&frag)[kM / 4]) const {
#pragma unroll
    for (int w = 0; w < kM / 4; ++w) st_shared_s32(image + 4 * (128 * w + thread), (int)frag[w]);
  }
  __device__ __forceinline__ void get_image(uint32_t image, uint32_t (&frag)[kM / 4]) const {
#pragma unroll
    for (int w = 0; w < kM / 4; ++w) frag[w] = (uint32_t)ld_shared_s32(image + 4 * (128 * w + thread));
  }

  // Step t, its Sᵀ and dPᵀ already issued (the two most recent commit groups).
  __device__ __forceinline__ void step(int t, int h, int m, float (&st)[kM / 2], float (&dpt)[kM / 2],
                                       float (&dk)[kC / 2], float (&dv)[kC / 2]) const {
    const int s = t % Cfg::kStages;
    const uint32_t q_st = smem + Cfg::kOffQ + s * Cfg::kQBytes;
    const uint32_t do_st = smem + Cfg::kOffDO + s * Cfg::kQBytes;
    const uint32_t lse = smem + Cfg::kOffLse + s * Cfg::kRowBytes;
    const uint32_t dsum = smem + Cfg::kOffD + s * Cfg::kRowBytes;
    const uint32_t ds_buf = smem + Cfg::kOffDS + (Cfg::kDsBuffers == 2 ? (t & 1) : 0) * Cfg::kDsBytes;
    const int m0 = m * kM, q_col0 = 2 * (lane() & 3);
    wgmma_wait<1>();
    fence_regs(st);

    uint32_t ppk[kM / 4];
    form_p(lse, m0, q_col0, st, ppk);
    wgmma_fence();
    gemm_rs_mnmajor<E, kC, kM>(ppk, do_st + own_slab0() * Cfg::kQSlabBytes, Cfg::kQSlabBytes, dv);  // dV += Pᵀ dO
    wgmma_commit();
    // dPᵀ must be complete; dV may still run while dS is formed (kOverlapDv), at the cost of P's packed registers
    // staying alive beside dS's until dK is issued.
    if constexpr (Cfg::kOverlapDv) {
      wgmma_wait<1>();
      fence_regs(dpt);
    } else {
      wgmma_wait<0>();
      fence_regs(dpt);
      fence_regs(dv);
    }

    // dSᵀ, packed for dK and written transposed (as dS, [query][key]) for dQ.
    uint32_t dspk[kM / 4];
    form_ds(dsum, q_col0, st, ppk, dpt, dspk);
    // With split columns both consumers hold the same dS; the first writes it.
    if (!Cfg::kSplitColumns || consumer == 0)
      store_transposed_sw128<kM>(ds_buf + (Cfg::kSplitColumns ? 0 : consumer) * Cfg::kDsSlabBytes, dspk, thread);
    wgmma_fence();
    gemm_rs_mnmajor<E, kC, kM>(dspk, q_st + own_slab0() * Cfg::kQSlabBytes, Cfg::kQSlabBytes, dk);  // dK += dSᵀ Q
    wgmma_commit();
    fence_proxy_async_smem();

    add_dq(t, h, m, s, ds_buf, dk, dv);
  }

  // Step t with kSplitSdP (d256): x holds Sᵀ on consumer 0 and dPᵀ on consumer 1 (the most recent commit group).
  // Consumer 0 forms P and hands it over; both issue dV; consumer 1 forms dS, stores it for dQ and hands it over;
  // both issue dK and dQ. P and dS cross as register images (put_image), so no layout conversion is needed.
  // Numerically the same as step(): dS is formed from the same packed P, and dP never leaves consumer 1's registers.
  __device__ __forceinline__ void step_split_sdp(int t, int h, int m, float (&x)[kM / 2], float (&dk)[kC / 2],
                                                 float (&dv)[kC / 2]) const {
    const int s = t % Cfg::kStages;
    // The stage's Q and dO from this consumer's first own column slab on (warp-uniform, as in issue_s_dp).
    const uint32_t q_own = (uint32_t)warp_uniform((int)(smem + Cfg::kOffQ + s * Cfg::kQBytes + own_slab0() * Cfg::kQSlabBytes));
    const uint32_t do_own = (uint32_t)warp_uniform((int)(smem + Cfg::kOffDO + s * Cfg::kQBytes + own_slab0() * Cfg::kQSlabBytes));
    const uint32_t ds_buf = smem + Cfg::kOffDS + (Cfg::kDsBuffers == 2 ? (t & 1) : 0) * Cfg::kDsBytes;
    const uint32_t lse = smem + Cfg::kOffLse + s * Cfg::kRowBytes;
    const uint32_t dsum = smem + Cfg::kOffD + s * Cfg::kRowBytes;
    const uint32_t p_image = smem + Cfg::kOffXchg, ds_image = p_image + Cfg::kXchgBytes;
    const int q_col0 = 2 * (lane() & 3);
    wgmma_wait<0>();
    fence_regs(x);

    uint32_t ppk[kM / 4], dspk[kM / 4];
    if (consumer == 0) {
      form_p(lse, m * kM, q_col0, x, ppk);
      put_image(p_image, ppk);
    }
    named_barrier_sync(Cfg::kBarPReady, 2 * 128);
    if (consumer == 1) get_image(p_image, ppk);
    wgmma_fence();
    gemm_rs_mnmajor<E, kC, kM>(ppk, do_own, Cfg::kQSlabBytes, dv);  // dV += Pᵀ dO
    wgmma_commit();

    if (consumer == 1) {
      form_ds(dsum, q_col0, x, ppk, x, dspk);  // (x is dPᵀ here; no softcap, so P comes from ppk)
      store_transposed_sw128<kM>(ds_buf, dspk, thread);
      fence_proxy_async_smem();  // dS's generic stores, before dQ's wgmma (async proxy) reads them on both consumers
      put_image(ds_image, dspk);
    }
    named_barrier_sync(Cfg::kBarDsReady, 2 * 128);
    if (consumer == 0) get_image(ds_image, dspk);
    wgmma_fence();
    gemm_rs_mnmajor<E, kC, kM>(dspk, q_own, Cfg::kQSlabBytes, dk);  // dK += dSᵀ Q
    wgmma_commit();

    add_dq(t, h, m, s, ds_buf, dk, dv);
  }

  // The step's dQ = dS · K (its dS in ds_buf, dK and dV issued): computed in 64-column blocks and added into the
  // float32 buffer; each thread also releases the stage once its GEMMs on it have completed.
  __device__ __forceinline__ void add_dq(int t, int h, int m, int s, uint32_t ds_buf, float (&dk)[kC / 2], float (&dv)[kC / 2]) const {
    // dQ = dS · K, issued by both consumers without a branch on the consumer (a wgmma in a divergent path makes
    // ptxas serialise them all), in 64-column blocks of 32 accumulator registers:
    //  exchange (d128): consumer c takes columns 64c … 64c+63 over all 128 keys, so it waits for its sibling's dS
    //    slab; the two consumers then run in lockstep;
    //  split keys (d64): each consumer takes every column over its own 64 keys (a partial sum; both add into dQ),
    //    with no exchange;
    //  split columns (d256): both hold the same keys; consumer c takes columns 128c … 128c+127 once the dS is in
    //    shared memory (written by consumer 0, or with kSplitSdP by consumer 1).
    constexpr bool kSplitKeys = !Cfg::kExchangeDs && !Cfg::kSplitColumns;
    constexpr int kBlocks = kSplitKeys ? kD / 64 : Cfg::kSplitColumns ? kC / 64 : 1;
    constexpr int kDqKeys = Cfg::kExchangeDs ? Cfg::kBlockN : 64;
    if constexpr (!kSplitKeys && !Cfg::kSplitSdP) named_barrier_sync(Cfg::kBarDsReady, 2 * 128);  // (kSplitSdP: synced before dK)
    static_assert(!Cfg::kDqBulk || kBlocks == 1, "bulk dQ: one block per consumer and step");
    const int ticket = Cfg::kDqBulk ? 0 : dq_order_begin(h, m);  // bulk dQ: the writer keeps the order
    // 128 queries per step (d64): the block's dQ is two 64-row halves, one wgmma each (M is 64).
    constexpr int kHalves = kM / 64;
    static_assert(kHalves == 1 || (Cfg::kDqBulk && kSplitKeys), "128 queries per step: split keys, bulk dQ");
#pragma unroll
    for (int c = 0; c < kBlocks; ++c) {
      float dq[kHalves][32];
      // The 64 dQ columns of this block, and where A (dS) and B (K's rows for those keys, in the column slab) start.
      const int column_slab = kSplitKeys ? c : Cfg::kSplitColumns ? own_slab0() + c : consumer;
      const uint32_t a = ds_buf + (kSplitKeys ? consumer * Cfg::kDsSlabBytes : 0);
      const uint32_t b = smem + Cfg::kOffK + column_slab * Cfg::kKSlabBytes + (kSplitKeys ? consumer * Cfg::kWgRowBytes : 0);
      // The previous block's reductions read these accumulator registers (ptxas may give both blocks the same
      // ones): without the fence the wgmma may overwrite them first. Measured: dQ wrong at d256 once nothing else
      // (a row guard's branch) happened to order them.
      wgmma_fence();
#pragma unroll
      for (int half = 0; half < kHalves; ++half)  // rows 64·half … of the dS slab
        gemm_ss_mnmajor_b<E, 64, kDqKeys>(a + half * 64 * 128, Cfg::kDsSlabBytes, b, Cfg::kKSlabBytes, dq[half], false);
      wgmma_commit();
      // (The next step's Sᵀ and dPᵀ are not issued here to overlap the dQ additions: their accumulators would spill.)
      wgmma_wait<0>();
      fence_regs(dv);
      fence_regs(dk);
#pragma unroll
      for (int half = 0; half < kHalves; ++half) fence_regs(dq[half]);
      // Every thread arrives once its own reads of the stage (LSE, D) are done and its GEMMs on Q and dO completed:
      // each read is then ordered before the producer's refill by the barrier itself (which compute-sanitizer's
      // racecheck can follow; a single arrival per warp group is correct too but not provably so to the tool).
      if (c == 0) mbar_arrive(bars.empty(s));
      if constexpr (Cfg::kDqBulk) dq_stage(t, dq);
      else dq_add(h, m, column_slab, dq[0]);
    }
    if constexpr (!Cfg::kDqBulk) dq_order_end(h, m, ticket);
  }

  // Deterministic mode with per-thread reductions: the CTA waits for its turn (dq_turn); inside it, consumer 1 adds
  // after consumer 0 (with split keys both add to the same columns). Returns the turn.
  __device__ __forceinline__ int dq_order_begin(int h, int m) const {
    if (!p.deterministic) return 0;
    const int ticket = dq_turn<Cfg>(mask, n_block, m);
    if (thread == 0 && consumer == 0)
      while (ld_acquire_gpu(dq_semaphore<Cfg>(p, seq, h, m)) != ticket) {}
    named_barrier_sync(Cfg::kBarDsReady + 1, 2 * 128);
    if (consumer == 1) named_barrier_sync(Cfg::kBarDsReady + 2, 2 * 128);
    return ticket;
  }

  __device__ __forceinline__ void dq_order_end(int h, int m, int ticket) const {
    if (!p.deterministic) return;
    fence_acq_rel_gpu();
    if (consumer == 0) named_barrier_arrive(Cfg::kBarDsReady + 2, 2 * 128);
    named_barrier_sync(Cfg::kBarDsReady + 3, 2 * 128);
    if (thread == 0 && consumer == 0) st_release_gpu(dq_semaphore<Cfg>(p, seq, h, m), ticket + 1);
  }

  // Adds a 64-query x 64-column block of dQ (columns 64·chunk …) into the float32 buffer. Rows past seqlen_q add
  // zeros (their LSE is +inf, so P = 0) into the buffer's padding.
  __device__ __forceinline__ void dq_add(int h, int m, int chunk, const float (&dq)[32]) const {
    float* block = dq_block<Cfg>(p, seq, h, m, chunk) + 4 * thread;
#pragma unroll
    for (int g = 0; g < 8; ++g) red_add4(block + 512 * g, dq[4 * g], dq[4 * g + 1], dq[4 * g + 2], dq[4 * g + 3]);
  }

  // Bulk dQ: stores step t's block in this consumer's shared buffer (once the writer has read the previous one)
  // and tells the writer. With 128 queries per step the two 64-row halves follow each other, as their blocks do
  // in the float32 buffer (dq_block), so one bulk reduction still adds the whole step.
  __device__ __forceinline__ void dq_stage(int t, const float (&dq)[kM / 64][32]) const {
    mbar_wait(bars.dq_empty(consumer), (t & 1) ^ 1);
    const uint32_t buffer = smem + Cfg::kOffDq + consumer * Cfg::kDqBlockBytes + 16 * thread;
#pragma unroll
    for (int half = 0; half < kM / 64; ++half)
#pragma unroll
      for (int g = 0; g < 8; ++g)
        st_shared_v4_f32(buffer + 64 * 64 * 4 * half + 2048 * g, dq[half][4 * g], dq[half][4 * g + 1], dq[half][4 * g + 2], dq[half][4 * g + 3]);
    fence_proxy_async_smem();  // the generic-proxy stores, before the bulk reduction (async proxy) reads them
    mbar_arrive(bars.dq_full(consumer));
  }

  // dK (times the softmax scale: dS was taken with respect to scale·q·k) and dV to global memory.
  __device__ __forceinline__ void store_dkv(float (&dk)[kC / 2], float (&dv)[kC / 2]) const {
    uint16_t* dk_out = reinterpret_cast<uint16_t*>(p.dk);
    uint16_t* dv_out = reinterpret_cast<uint16_t*>(p.dv);
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int key = key_row0() + 8 * hh;
      if (key >= seq.seqlen_k) continue;
      const int64_t row = seq.k_row0 + key;
      uint16_t* dk_row = dk_out + seq.batch * p.dk_stride_b + row * p.dk_stride_s + head_k * p.dk_stride_h + own_column0();
      uint16_t* dv_row = dv_out + seq.batch * p.dv_stride_b + row * p.dv_stride_s + head_k * p.dv_stride_h + own_column0();
#pragma unroll
      for (int j = 0; j < kC / 8; ++j) {
        const int col = 8 * j + 2 * (lane() & 3), i = 4 * j + 2 * hh;
        *reinterpret_cast<uint32_t*>(dk_row + col) = pack2<E>(dk[i] * p.softmax_scale, dk[i + 1] * p.softmax_scale);
        *reinterpret_cast<uint32_t*>(dv_row + col) = pack2<E>(dv[i], dv[i + 1]);
      }
    }
  }
};

}  // namespace fa
