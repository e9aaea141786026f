// Compile-time shape of one forward kernel variant: tile sizes, pipeline depth, shared-memory map, register
// split. FwdVariant is the variant's record; its C# twin (Cuda/Variants/ForwardVariant.cs) writes the name
// expressions with the same fields, and the table of which variant runs when is ForwardVariants.cs.
#pragma once
#include "common/pipeline.cuh"

namespace fa {

// How a consumer orders a key block's two GEMMs and its softmax.
enum class FwdLoop : int {
  kSequential = 1,  // S, softmax, P·V in turn; ping-pong overlaps one consumer's softmax with the other's GEMMs
  kOverlapped = 2,  // intra-warpgroup overlap: block j's softmax runs while P·V of j+1 and S of j-1 compute
  kChained = 3,     // one turn issues block j's P·V and block j-1's S back to back, waited for together
};

// Where the epilogue stages O before its TMA store.
enum class OStaging : int {
  kOwnBuffer = 1,  // a buffer of its own: Q's buffer is free once the tile's last S is done
  kQBuffer = 2,    // Q's buffer (when shared memory is short): the next tile's Q waits for the store
  kTwoPasses = 3,  // half of O at a time through a buffer half O's size
};

// A forward kernel variant (the enumerators start at 1 so that a field the C# side leaves out fails the checks below).
struct FwdVariant {
  int head_dim;
  int block_n;           // keys per block
  int stages;            // K/V ring depth
  FwdLoop loop;
  bool ping_pong;        // consumers take turns issuing their GEMMs
  OStaging o_staging;
  bool warp_specialized; // a producer warpgroup issues the loads (off only in the paper's ablation)
  int q_buffers;         // 2: the next tile's Q loads while the current tile runs
  bool q_in_registers;   // Q as the register A operand of S = Q·Kᵀ
  int consumers;         // consumer warpgroups, 64 query rows each
  bool varlen;           // packed variable-length batch: per-sequence offsets and masks, a device-built tile order
};

template <typename Element_, FwdVariant V>
struct FwdConfig {
  using Element = Element_;
  static_assert(V.head_dim > 0 && V.block_n > 0 && V.stages > 0 && V.q_buffers > 0 && V.consumers > 0 &&
                    (int)V.loop > 0 && (int)V.o_staging > 0,
                "every FwdVariant field is set");
  static constexpr int kHeadDim = V.head_dim;
  // One warpgroup per 64 query rows, taking turns on the tensor cores in this order (ping-pong). With three (d64,
  // FlashAttention-3's 192-row tile) each consumer's softmax has two siblings' GEMMs to hide behind instead of one,
  // on 160 registers instead of 240.
  static constexpr int kConsumerWGs = V.consumers;
  static_assert(kConsumerWGs == 2 || kConsumerWGs == 3, "two or three consumer warpgroups");
  static constexpr int kBlockM = 64 * kConsumerWGs;
  static constexpr int kBlockN = V.block_n;
  static constexpr int kStages = V.stages;
  static constexpr bool kIntraWgOverlap = V.loop == FwdLoop::kOverlapped;
  // Chained: the tensor cores see no gap between P·V and the next S (the wait's round trip, the K barrier, the
  // fence), at the cost of P's packed registers living beside the new S.
  static constexpr bool kChainPvS = V.loop == FwdLoop::kChained;
  static constexpr bool kPingPong = V.ping_pong;
  static constexpr bool kOAliasQ = V.o_staging == OStaging::kQBuffer;
  static constexpr int kOPasses = V.o_staging == OStaging::kTwoPasses ? 2 : 1;
  static constexpr int kQStages = V.q_buffers;
  static constexpr bool kVarlen = V.varlen;
  // Q in registers (ldmatrix once per tile) leaves the shared-memory bandwidth to K, V and the TMA writes, which
  // the SS GEMMs otherwise nearly exhaust; it costs kHeadDim/4 registers per consumer thread.
  static constexpr bool kQInRegs = V.q_in_registers;
  // Warp specialisation: warpgroup 0 only issues TMA loads and gives its registers to the consumers. Without
  // it (an ablation), consumer 0's first thread issues the loads between its own GEMMs.
  static constexpr bool kWarpSpecialized = V.warp_specialized;
  static constexpr int kProducerWGs = kWarpSpecialized ? 1 : 0;
  static constexpr int kThreads = 128 * (kConsumerWGs + kProducerWGs);
  static constexpr int kProducerRegs = 24;
  // 128·24 + 256·240 = 64K registers (two consumers); 128·24 + 384·160 (three)
  static constexpr int kConsumerRegs = kConsumerWGs == 2 ? 240 : 160;

  static_assert(kHeadDim % 64 == 0, "head dim is loaded as 64-column (128-byte) swizzled slabs");
  static_assert(kBlockN % 16 == 0 && kBlockN <= 256, "key block: a multiple of 16, at most 256");

  // Tiles are stored as slabs of 64 columns (128 bytes of 16-bit values) x rows, 128-byte swizzled by TMA.
  static constexpr int kSlabs = kHeadDim / 64;
  static_assert(kSlabs % kOPasses == 0, "O passes: whole slabs");
  static constexpr int kOSlabs = kSlabs / kOPasses;  // slabs of O's staging buffer
  static constexpr int kQSlabBytes = kBlockM * 128;
  static constexpr int kKSlabBytes = kBlockN * 128;
  static constexpr int kQBytes = kQSlabBytes * kSlabs;
  static constexpr int kKBytes = kKSlabBytes * kSlabs;  // V tiles have the same size
  static constexpr int kWgRowBytes = 64 * 128;           // one consumer warpgroup's 64 rows inside a slab

  static constexpr int kOffQ = 0;
  static constexpr int kOffK = kOffQ + kQStages * kQBytes;
  static constexpr int kOffV = kOffK + kStages * kKBytes;
  static constexpr int kOffO = kOffV + kStages * kKBytes;
  static constexpr int kOffBar = kOffO + (kOAliasQ ? 0 : kOSlabs * kQSlabBytes);
  static constexpr int kNumBars = 2 * kQStages + 4 * kStages;  // full/empty per Q buffer, then full/empty K and V per stage
  static constexpr int kOffTileSlots = kOffBar + 8 * kNumBars;  // per Q buffer: the index of the tile whose Q it holds
  static constexpr int kSmemBytes = 1024 /* alignment slack */ + kOffTileSlots + 8 * kQStages;
  static_assert(kSmemBytes <= 232448, "exceeds the 227 KB of shared memory a block may opt in to");

  // Named barriers (0 is __syncthreads): scheduler turn of consumer c is 1 + c, epilogue of consumer c is
  // 1 + kConsumerWGs + c.
  static constexpr int kBarSchedule = 1;
  static constexpr int kBarEpilogue = 1 + kConsumerWGs;
};

// Addresses (shared-state space) of the pipeline's mbarriers.
template <class Cfg>
struct FwdBarriers {
  uint32_t base;
  static constexpr int kKv = 16 * Cfg::kQStages;  // K/V barriers follow the Q ones
  __device__ __forceinline__ uint32_t full_q(int b) const { return base + 8 * b; }
  __device__ __forceinline__ uint32_t empty_q(int b) const { return base + 8 * (Cfg::kQStages + b); }
  __device__ __forceinline__ uint32_t full_k(int s) const { return base + kKv + 8 * s; }
  __device__ __forceinline__ uint32_t empty_k(int s) const { return base + kKv + 8 * (Cfg::kStages + s); }
  __device__ __forceinline__ uint32_t full_v(int s) const { return base + kKv + 8 * (2 * Cfg::kStages + s); }
  __device__ __forceinline__ uint32_t empty_v(int s) const { return base + kKv + 8 * (3 * Cfg::kStages + s); }
  // Not a barrier: the tile index the producer stores before arriving on full_q(b) (the arrive releases it).
  __device__ __forceinline__ uint32_t tile_slot(int b) const { return base + 8 * Cfg::kNumBars + 4 * b; }

  // By one thread, before the CTA's first sync: a Q buffer is full on the producer's one arrive and empty when every
  // consumer thread has arrived (the consumers release it thread by thread); a K/V stage is full on the producer's
  // arrive and empty on one arrive per consumer warpgroup.
  __device__ __forceinline__ void init() const {
    for (int b = 0; b < Cfg::kQStages; ++b) {
      mbar_init(full_q(b), 1);
      mbar_init(empty_q(b), Cfg::kConsumerWGs * 128);
    }
    for (int s = 0; s < Cfg::kStages; ++s) {
      mbar_init(full_k(s), 1);
      mbar_init(empty_k(s), Cfg::kConsumerWGs);
      mbar_init(full_v(s), 1);
      mbar_init(empty_v(s), Cfg::kConsumerWGs);
    }
    fence_barrier_init();
  }
};

}  // namespace fa
