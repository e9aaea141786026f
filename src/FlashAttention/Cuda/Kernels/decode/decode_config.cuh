// Compile-time shape of one decode kernel variant: key block, ring depth, where Q lives, CTAs per SM, and the
// shared-memory map. DecodeVariant is the variant's record; its C# twin (Cuda/Variants/DecodeVariant.cs) writes the
// name expressions with the same fields, and the table of which variant runs when is DecodeVariants.cs.
//
// A CTA owns one work unit: the 64 packed query rows (seqlen_q × the query heads of one KV head) of an m-block, one
// KV head of one sequence, one split of the key range. Warp 4 loads K and V into a ring of stages (TMA, one box per
// page-aligned piece of a key block); warps 0-3, one warpgroup, compute S = Q·Kᵀ and O += P·V with wgmma.
#pragma once
#include "common/pipeline.cuh"

namespace fa {

// Where the consumer warpgroup keeps Q (the enumerators start at 1 so that a field the C# side leaves out fails the checks below).
enum class QSource : int {
  kRegisters = 1,     // the wgmma A fragment, loaded straight from global memory: no shared memory for Q
  kSharedMemory = 2,  // a 128-byte-swizzled tile written by the consumers: registers for O at d256
};

struct DecodeVariant {
  int head_dim;
  int block_n;       // keys per block
  int stages;        // K/V ring depth
  QSource q_source;
  int ctas_per_sm;   // launch bound: CTAs resident per SM (shared memory and registers are sized for it)
};

template <typename Element_, DecodeVariant V>
struct DecodeConfig {
  using Element = Element_;
  static_assert(V.head_dim > 0 && V.block_n > 0 && V.stages > 0 && V.ctas_per_sm > 0 && (int)V.q_source > 0,
                "every DecodeVariant field is set");
  static constexpr int kHeadDim = V.head_dim;
  static constexpr int kBlockN = V.block_n;
  static constexpr int kStages = V.stages;
  static constexpr bool kQInRegs = V.q_source == QSource::kRegisters;
  static constexpr int kCtasPerSm = V.ctas_per_sm;
  static constexpr int kBlockM = 64;  // packed query rows per CTA: one consumer warpgroup
  static constexpr int kConsumerThreads = 128;
  static constexpr int kThreads = kConsumerThreads + 32;  // and one producer warp

  static_assert(kHeadDim % 64 == 0, "head dim is loaded as 64-column (128-byte) swizzled slabs");
  static_assert(kBlockN % 16 == 0 && kBlockN <= 256, "key block: a multiple of 16 (a TMA box of a 16-token page), at most 256");

  static constexpr int kSlabs = kHeadDim / 64;
  static constexpr int kKSlabBytes = kBlockN * 128;
  static constexpr int kKBytes = kKSlabBytes * kSlabs;  // V tiles have the same size
  static constexpr int kQSlabBytes = kBlockM * 128;
  static constexpr int kQBytes = kQInRegs ? 0 : kQSlabBytes * kSlabs;

  static constexpr int kOffK = 0;
  static constexpr int kOffV = kOffK + kStages * kKBytes;
  static constexpr int kOffQ = kOffV + kStages * kKBytes;
  static constexpr int kOffBar = kOffQ + kQBytes;
  static constexpr int kNumBars = 4 * kStages;  // full/empty K and V per stage
  static constexpr int kSmemBytes = 1024 /* alignment slack */ + kOffBar + 8 * kNumBars;
  // 228 KB per SM, 1 KB of it reserved per CTA; 227 KB at most for one CTA.
  static_assert(kSmemBytes <= (kCtasPerSm == 1 ? 232448 : 233472 / kCtasPerSm - 1024), "exceeds the shared memory of ctas_per_sm CTAs");

  static constexpr int kBarConsumers = 1;  // named barrier of the consumer warpgroup (0 is __syncthreads)
};

// Addresses (shared-state space) of the ring's mbarriers.
template <class Cfg>
struct DecodeBarriers {
  uint32_t base;
  __device__ __forceinline__ uint32_t full_k(int s) const { return base + 8 * s; }
  __device__ __forceinline__ uint32_t empty_k(int s) const { return base + 8 * (Cfg::kStages + s); }
  __device__ __forceinline__ uint32_t full_v(int s) const { return base + 8 * (2 * Cfg::kStages + s); }
  __device__ __forceinline__ uint32_t empty_v(int s) const { return base + 8 * (3 * Cfg::kStages + s); }
};

}  // namespace fa
