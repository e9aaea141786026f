// Compile-time shape of the backward kernel: one CTA owns a block of kBlockN keys of one key head and walks
// every query block (of every query head of its GQA group) that sees them, kBlockM (64, or 128 at d64) queries at a time. The two consumer
// warpgroups keep dK and dV of the block in registers for the whole walk: at d64 and d128 each owns 64 of the 128
// keys (all columns); at d256, where that would need 256 accumulator registers per thread, both take the same 64
// keys and each owns half of the columns (S and dP are then computed by both, or with kSplitSdP one each). Q, dO,
// LSE and D stream through a ring of shared-memory stages filled by TMA.
#pragma once
#include "common/ptx.cuh"

namespace fa {

// How a step's dQ = dS·K is split between the two consumers.
enum class DqSplit : int {
  kByKeys = 1,     // each consumer adds the partial sum over its own keys (no exchange)
  kByColumns = 2,  // each consumer computes half of dQ's columns over all keys, exchanging dS through shared memory
};

// How a step's dQ block reaches the float32 buffer.
enum class DqAdd : int {
  kReduce = 1,  // each consumer thread adds its values with vector reductions (red.global)
  kBulk = 2,    // the consumer stores the block to shared memory and a producer warp adds it with one bulk reduction
};

// A backward kernel variant (the enumerators start at 1 so that a field the C# side leaves out fails the checks below).
struct BwdVariant {
  int head_dim;
  int stages;       // Q/dO ring depth
  DqSplit dq_split;
  bool softcap;
  DqAdd dq_add;
  bool overlap_dv;  // dS formed while dV = Pᵀ dO still runs
  bool split_sdp;   // d256: one consumer computes Sᵀ, the other dPᵀ
  int block_m;      // queries per step
  bool varlen;      // packed variable-length batch: per-sequence offsets and masks
};

template <typename Element_, BwdVariant V>
struct BwdConfig {
  using Element = Element_;
  static_assert(V.head_dim > 0 && V.stages > 0 && V.block_m > 0 && (int)V.dq_split > 0 && (int)V.dq_add > 0,
                "every BwdVariant field is set");
  static constexpr int kHeadDim = V.head_dim;
  static constexpr int kConsumerWGs = 2;
  static constexpr bool kSplitColumns = V.head_dim == 256;  // both consumers on the same keys, each on half of d
  // Queries per step: 64, or 128 at d64 (FlashAttention-3's d64 tile: twice the GEMM work per step for the same
  // barriers, LSE/D loads and dQ hand-overs). Q and dO still arrive as 64-row TMA boxes.
  static constexpr int kBlockM = V.block_m;
  static constexpr bool kVarlen = V.varlen;
  static constexpr int kTmaRows = 64;
  static constexpr int kBlockN = kSplitColumns ? 64 : 64 * kConsumerWGs;  // keys per CTA
  static constexpr int kOwnColumns = kSplitColumns ? V.head_dim / 2 : V.head_dim;  // dK/dV columns per consumer
  static constexpr int kStages = V.stages;
  // How dQ = dS·K is split between the consumers (see the mainloop): by columns, exchanging dS through shared memory
  // (d128 only), or by keys, with no exchange.
  static constexpr bool kExchangeDs = V.dq_split == DqSplit::kByColumns;
  // Softcap needs tanh's derivative per score until dS is formed, 32 more live registers; without it dS is formed
  // from the packed (16-bit) P that also fed dV, as a plain same-precision implementation would, and the consumer
  // keeps its registers. The launcher picks the variant from the options.
  static constexpr bool kSoftcap = V.softcap;
  // How a step's dQ block reaches the float32 buffer: false = each consumer thread adds its 32 values with vector
  // reductions (red.global); true = the consumer stores the block to shared memory and a warp of the producer
  // warpgroup adds it with one bulk reduction (cp.reduce.async.bulk), taking the global-memory traffic off the
  // consumers' critical path (and, in deterministic mode, the wait for the preceding key blocks' additions too).
  static constexpr bool kDqBulk = V.dq_add == DqAdd::kBulk;
  // Whether dS is formed while dV = Pᵀ dO still runs on the tensor cores (wgmma_wait<1>) rather than after it
  // (wait<0>, which lets P's packed registers die before dS's are built: 16 fewer live registers).
  static constexpr bool kOverlapDv = V.overlap_dv;
  // d256 (split columns) only: instead of both consumers computing Sᵀ and dPᵀ for the same keys (2 of the step's
  // 7 GEMMs redundant), consumer 0 computes Sᵀ and P, consumer 1 dPᵀ and dS, and they hand P and dS to each other
  // through shared memory as register images (thread t reads what its sibling's thread t wrote: the fragments
  // have the same layout in both warpgroups). Not with softcap (dS would need P·(1 − tanh²) in float32).
  static constexpr bool kSplitSdP = V.split_sdp;
  static_assert(!kDqBulk || !kSplitColumns, "bulk dQ: one 64x64 block per consumer and step (d64, d128)");
  static_assert(!kSplitSdP || (kSplitColumns && !kSoftcap), "split S/dP: d256 (shared keys), without softcap");
  static_assert(!kExchangeDs || kHeadDim == 128, "the dS exchange splits dQ's columns between two consumers: d128 only");
  static_assert(kBlockM == 64 || (kBlockM == 128 && kHeadDim == 64 && kDqBulk && !kExchangeDs && !kSoftcap),
                "128 queries per step: d64 with bulk dQ (its two 64-row dQ blocks are contiguous), without softcap");
  static constexpr int kThreads = 128 * (kConsumerWGs + 1);
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
  static_assert(kHeadDim == 64 || kHeadDim == 128 || kHeadDim == 256, "backward head dims: 64, 128, 256");

  static constexpr int kSlabs = kHeadDim / 64;
  static constexpr int kKSlabBytes = kBlockN * 128;  // K, V: slabs of kBlockN key rows
  static constexpr int kQSlabBytes = kBlockM * 128;  // Q, dO: slabs of kBlockM query rows
  static constexpr int kKBytes = kKSlabBytes * kSlabs;
  static constexpr int kQBytes = kQSlabBytes * kSlabs;
  static constexpr int kWgRowBytes = kSplitColumns ? 0 : 64 * 128;  // a consumer's 64 key rows inside a K/V slab
  static constexpr int kDsSlabBytes = kBlockM * 128;  // dS as [query][64 keys] per slab
  static constexpr int kDsBytes = kDsSlabBytes * (kBlockN / 64);
  // Two dS buffers: step i writes one while i-1's dQ may still read the other (the sibling's slab, with the
  // exchange). With 128 queries per step (split keys: each consumer reads only its own slab, and its dQ GEMM has
  // completed before its next dS is stored) one is enough, and the shared memory is needed.
  static constexpr int kDsBuffers = kBlockM == 128 ? 1 : 2;
  static constexpr int kRowBytes = kBlockM * 4;      // LSE or D of one query block (float32)
  static constexpr int kDqBlockBytes = kBlockM * 64 * 4;  // a consumer's kBlockM x 64 float32 dQ (the bulk reduction's source)

  static constexpr int kOffK = 0;
  static constexpr int kOffV = kOffK + kKBytes;
  static constexpr int kOffQ = kOffV + kKBytes;
  static constexpr int kOffDO = kOffQ + kStages * kQBytes;
  static constexpr int kOffDS = kOffDO + kStages * kQBytes;
  static constexpr int kOffLse = kOffDS + kDsBuffers * kDsBytes;
  static constexpr int kOffD = kOffLse + kStages * kRowBytes;
  static constexpr int kOffDq = kOffD + kStages * kRowBytes;  // one dQ block per consumer (bulk dQ only)
  static constexpr int kXchgBytes = 128 * (kBlockM / 4) * 4;  // a warpgroup's packed 64x64 fragment (P or dS)
  static constexpr int kOffXchg = kOffDq + (kDqBulk ? kConsumerWGs * kDqBlockBytes : 0);  // P's image, then dS's (kSplitSdP)
  static constexpr int kOffBar = kOffXchg + (kSplitSdP ? 2 * kXchgBytes : 0);
  // K/V loaded, full/empty per stage, dQ full/empty per consumer
  static constexpr int kNumBars = 1 + 2 * kStages + 2 * kConsumerWGs;
  static constexpr int kSmemBytes = 1024 + kOffBar + 8 * kNumBars;
  static_assert(kSmemBytes <= 232448, "exceeds the 227 KB of shared memory a block may opt in to");

  static constexpr int kStepBytes = 2 * kQBytes + 2 * kRowBytes;  // what one stage's TMA brings
  // Named barriers: 1 = both consumers wrote dS; 2–4 = the ordered dQ addition of deterministic mode; 5 = P's
  // image written (kSplitSdP).
  static constexpr int kBarDsReady = 1;
  static constexpr int kBarPReady = 5;
};

template <class Cfg>
struct BwdBarriers {
  uint32_t base;
  __device__ __forceinline__ uint32_t kv_full() const { return base; }
  __device__ __forceinline__ uint32_t full(int s) const { return base + 8 + 8 * s; }
  __device__ __forceinline__ uint32_t empty(int s) const { return base + 8 + 8 * (Cfg::kStages + s); }
  // Bulk dQ: consumer c's block is in shared memory / has been read by the bulk reduction.
  __device__ __forceinline__ uint32_t dq_full(int c) const { return base + 8 + 8 * (2 * Cfg::kStages + c); }
  __device__ __forceinline__ uint32_t dq_empty(int c) const { return base + 8 + 8 * (2 * Cfg::kStages + Cfg::kConsumerWGs + c); }
};

}  // namespace fa
