// Compile-time shape of one FP8 forward kernel variant. Q and K arrive as E4M3 rows (K-major for S = Q·Kᵀ), V as Vᵀ
// (keys contiguous, permuted inside every 16-key group, as the quantiser writes it: FP8 wgmma has no transpose, and
// the permutation lets P go from the S accumulator to the A operand without shuffles); O leaves as bf16 or fp16. The C# twin
// of Fp8Variant is Cuda/Variants/Fp8Variant.cs; the table of which variant runs when is Fp8Variants.cs.
#pragma once
#include "common/pipeline.cuh"
#include "common/ptx.cuh"
#include "fwd/fwd_config.cuh"

namespace fa {

// An FP8 forward kernel variant (fields left unset by the C# side fail the checks below).
struct Fp8Variant {
  int head_dim;
  int block_n;        // keys per block: a multiple of 128 (Vᵀ tiles are loaded 128 keys, one 128-byte row, at a time)
  int stages;         // K/Vᵀ ring depth
  int q_buffers;      // 2: the next tile's Q loads while the current tile runs
  OStaging o_staging; // own buffer, or two passes through half of it
  bool ping_pong;     // the consumers take turns issuing their GEMMs, round robin
  int poly_exp_every; // 0, or k: one column group in k takes its exponentials from a polynomial on the FMA pipe
  int consumers;      // consumer warpgroups, 64 query rows each
};

// Output_: bf16_t or half_t, the element type O is written in.
template <typename Output_, Fp8Variant V>
struct Fp8Config {
  static_assert(V.head_dim > 0 && V.block_n > 0 && V.stages > 0 && V.q_buffers > 0 && (int)V.o_staging > 0 && V.consumers > 0,
                "every Fp8Variant field is set");
  static_assert(V.consumers == 2 || V.consumers == 3, "two or three consumer warpgroups");
  static_assert(V.poly_exp_every >= 0 && V.poly_exp_every <= 8, "poly_exp_every: 0 (off) or 1 in 1…8 column groups");
  static_assert(V.head_dim == 64 || V.head_dim == 128 || V.head_dim == 256, "FP8 head dims: 64, 128, 256");
  static_assert(V.block_n % 128 == 0 && V.block_n <= 256, "FP8 key blocks: 128 or 256 keys");
  static_assert(V.o_staging == OStaging::kOwnBuffer || V.o_staging == OStaging::kTwoPasses, "O staged in its own buffer");
  // The epilogue (fwd/fwd_epilogue.cuh) reads these names: O is 16-bit, staged in Q's 16-bit layout.
  using Element = Output_;
  using Input = e4m3_t;
  static constexpr int kHeadDim = V.head_dim;
  static constexpr int kConsumerWGs = V.consumers;
  static constexpr int kBlockM = 64 * kConsumerWGs;
  static constexpr int kBlockN = V.block_n;
  static constexpr int kStages = V.stages;
  static constexpr int kQStages = V.q_buffers;
  static constexpr bool kVarlen = false;  // dense batches (the shared producer and epilogue ask)
  static constexpr bool kPingPong = V.ping_pong;
  // FP8's GEMMs take half the BF16 time while the softmax's exponentials do not shrink: at d64 and d128 the
  // special-function unit (16 exponentials per clock per SM) bounds the kernel. Some of them then go to the FMA pipe.
  static constexpr int kPolyExpEvery = V.poly_exp_every;
  static constexpr bool kWarpSpecialized = true;
  static constexpr bool kOAliasQ = false;
  static constexpr int kOPasses = V.o_staging == OStaging::kTwoPasses ? 2 : 1;
  static constexpr int kThreads = 128 * (kConsumerWGs + 1);
  static constexpr int kProducerRegs = 24;
  // 128·24 + 256·240 = 64K registers (two consumers); 128·24 + 384·160 (three)
  static constexpr int kConsumerRegs = kConsumerWGs == 2 ? 240 : 160;

  // FP8 operand rows: kHeadDim bytes, loaded by TMA as swizzled slabs of 128-byte rows (64-byte rows at d64, with the
  // 64-byte swizzle: a slab is always one swizzle span wide).
  static constexpr int kSwizzleBytes = kHeadDim >= 128 ? 128 : 64;
  static constexpr int kInSlabs = kHeadDim / kSwizzleBytes;
  static constexpr int kQInSlabBytes = kBlockM * kSwizzleBytes;
  static constexpr int kKInSlabBytes = kBlockN * kSwizzleBytes;
  static constexpr int kQWgBytes = 64 * kSwizzleBytes;  // one consumer's 64 rows inside a Q slab
  static constexpr int kQBytes = kBlockM * kHeadDim;
  static constexpr int kKBytes = kBlockN * kHeadDim;
  // Vᵀ: kHeadDim rows of kBlockN keys, in slabs of 128 keys (128-byte rows, 128-byte swizzle).
  static constexpr int kVSlabs = kBlockN / 128;
  static constexpr int kVSlabBytes = kHeadDim * 128;
  static constexpr int kVBytes = kBlockN * kHeadDim;

  // O staging in Q's 16-bit layout: slabs of 64 columns (128 bytes) x kBlockM rows.
  static constexpr int kSlabs = kHeadDim / 64;
  static constexpr int kOSlabs = kSlabs / kOPasses;
  static constexpr int kQSlabBytes = kBlockM * 128;  // an O slab (the epilogue's name)
  static constexpr int kWgRowBytes = 64 * 128;       // one consumer's 64 rows inside an O slab

  static constexpr int kOffQ = 0;
  static constexpr int kOffK = kOffQ + kQStages * kQBytes;
  static constexpr int kOffV = kOffK + kStages * kKBytes;
  static constexpr int kOffO = kOffV + kStages * kVBytes;
  static constexpr int kOffBar = kOffO + kOSlabs * kQSlabBytes;
  static constexpr int kNumBars = 2 * kQStages + 4 * kStages;
  static constexpr int kOffTileSlots = kOffBar + 8 * kNumBars;
  static constexpr int kSmemBytes = 1024 /* alignment slack */ + kOffTileSlots + 8 * kQStages;
  static_assert(kSmemBytes <= 232448, "exceeds the 227 KB of shared memory a block may opt in to");

  // P enters the P·V GEMM multiplied by 2^kProbabilityShift (FlashAttention-3's Max_offset): P ≤ 256 uses E4M3's
  // mantissa over its whole range instead of flushing small probabilities; the row sum carries the same factor.
  static constexpr float kProbabilityShift = 8.f;

  static constexpr int kBarSchedule = 1;
  static constexpr int kBarEpilogue = 1 + kConsumerWGs;
};

}  // namespace fa
