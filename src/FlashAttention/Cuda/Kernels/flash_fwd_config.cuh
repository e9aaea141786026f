// Compile-time shape of one forward kernel variant: tile sizes, pipeline depth, shared-memory map, register
// split. The C# launcher (Cuda/Launchers/FlashForwardLauncher.cs) owns the table of which variant runs for
// which head dim and mirrors the shared-memory size formula.
#pragma once
#include "ptx.cuh"

namespace fa {

template <typename Element_, int kHeadDim_, int kBlockN_, int kStages_, bool kIntraWgOverlap_, bool kPingPong_,
          bool kOAliasQ_, bool kWarpSpecialized_ = true, int kQStages_ = 1, bool kQInRegs_ = false,
          bool kChainPvS_ = false, int kOPasses_ = 1, int kConsumerWGs_ = 2, bool kCrossTile_ = false>
struct FwdConfig {
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;
  // One warpgroup per 64 query rows, taking turns on the tensor cores in this order (ping-pong). With three (d64,
  // FlashAttention-3's 192-row tile) each consumer's softmax has two siblings' GEMMs to hide behind instead of one,
  // on 160 registers instead of 240.
  static constexpr int kConsumerWGs = kConsumerWGs_;
  static_assert(kConsumerWGs == 2 || kConsumerWGs == 3, "two or three consumer warpgroups");
  static constexpr int kBlockM = 64 * kConsumerWGs;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kStages = kStages_;
  static constexpr bool kIntraWgOverlap = kIntraWgOverlap_;  // softmax of block j overlaps P·V of block j+1
  static constexpr bool kPingPong = kPingPong_;              // consumers take turns issuing their GEMMs
  static constexpr bool kOAliasQ = kOAliasQ_;                // O staged in Q's shared memory (when smem is short)
  // O staged and stored in this many column passes through a buffer of 1/kOPasses of its size (when smem is short
  // but not Q's buffer: O in Q's buffer holds Q until the epilogue's store has read it, so the next tile's Q load
  // waits for the epilogue; with a buffer of its own Q is released when the tile's last S has been computed).
  static constexpr int kOPasses = kOPasses_;
  // Q buffers: with two, the next tile's Q loads while the current tile runs, so a tile starts without waiting for it.
  static constexpr int kQStages = kQStages_;
  // Q as the register A operand of S = Q·Kᵀ (loaded once per tile with ldmatrix) instead of from shared memory:
  // each S GEMM then reads only K from shared memory, whose bandwidth the SS GEMMs, P·V's V reads and the TMA
  // writes otherwise nearly exhaust. Costs kHeadDim/4 registers per consumer thread.
  static constexpr bool kQInRegs = kQInRegs_;
  // Without the overlap: a consumer issues block j's P·V and block j-1's S in one turn, back to back, and waits for
  // both together, instead of waiting for P·V before it issues S. The tensor cores then see no gap between the two
  // (the wait's round trip, the K barrier, the fence), at the cost of P's packed registers living beside the new S.
  // The turn passes to the sibling as soon as both are issued (passing it only once P·V had finished measured no
  // better: bench/results/2026-12-01-h200-921979c/experiments).
  static constexpr bool kChainPvS = kChainPvS_;
  static_assert(!kChainPvS || !kIntraWgOverlap_, "chaining P·V with the next S is an ordering of the non-overlapped loop");
  // Across tiles (the loop without overlap): in the turn that holds a tile's last P·V, a consumer issues
  // the next tile's first S and runs its epilogue while that S computes, so the tensor cores do not idle between
  // tiles (without it both consumers reach the tile's end together and the epilogue, the next tile's first S and its
  // softmax leave them idle: under Nsight Compute's fixed clocks the d128 8k forward took 2.1% more cycles than
  // cuDNN's with the same HGMMA count). The GEMM, its commit and its wait are unconditional (when no next tile has
  // keys, a discarded S is computed from the next Q buffer): a wait under a branch serialised every wgmma of the
  // first version (C7518). The tile's first S is thus always ready when its key blocks start.
  static constexpr bool kCrossTile = kCrossTile_;
  static_assert(!kCrossTile || (!kIntraWgOverlap_ && !kChainPvS_ && kPingPong_ && kWarpSpecialized_ && kQStages_ == 2 &&
                                !kOAliasQ_ && kOPasses_ == 1 && kBlockN_ <= 64 * kConsumerWGs_),
                "across tiles: the loop without overlap, ping-pong, a producer, two Q buffers, O whole in its own buffer, key blocks no wider than the Q tile");
  // Warp specialisation: warpgroup 0 only issues TMA loads and gives its registers to the consumers. Without
  // it (an ablation), consumer 0's first thread issues the loads between its own GEMMs.
  static constexpr bool kWarpSpecialized = kWarpSpecialized_;
  static constexpr int kProducerWGs = kWarpSpecialized ? 1 : 0;
  static constexpr int kThreads = 128 * (kConsumerWGs + kProducerWGs);
  static constexpr int kProducerRegs = 24;
  // 128·24 + 256·240 = 64K registers (two consumers); 128·24 + 384·160 (three)
  static constexpr int kConsumerRegs = kConsumerWGs == 2 ? 240 : 160;

  static_assert(kHeadDim % 64 == 0, "head dim is loaded as 64-column (128-byte) swizzled slabs");
  static_assert(kBlockN % 16 == 0 && kBlockN <= 256, "key block: a multiple of 16, at most 256");

  // Tiles are stored as slabs of 64 columns (128 bytes of 16-bit values) x rows, 128-byte swizzled by TMA.
  static constexpr int kSlabs = kHeadDim / 64;
  static_assert(kOPasses >= 1 && kSlabs % kOPasses == 0 && (kOPasses == 1 || !kOAliasQ), "O passes: whole slabs, own buffer");
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
};

// Position in the K/V ring: block `count` lives in stage count % kStages; the phase parity flips every lap.
template <int kStages>
struct PipelineState {
  int count = 0;
  __device__ __forceinline__ int stage() const { return count % kStages; }
  __device__ __forceinline__ uint32_t phase() const { return (uint32_t)((count / kStages) & 1); }
};

}  // namespace fa
