// The FP8 forward's quantiser: one pass over a bf16/fp16 tensor that writes E4M3 codes and one float32 descale per
// (batch, head, block of tokens), the block's largest magnitude mapped to E4M3's largest (448). Q and K are rotated
// first along the head dim by the same Hadamard × random-sign matrix (incoherent processing: (QM)(KM)ᵀ = QKᵀ, and an
// outlier spreads over all coordinates). V is written transposed, keys contiguous and permuted inside every 16-key group
// as the FP8 kernel's P·V expects (fp8/fp8_gemm.cuh); an E4M3 V (callers with FP8 caches) is transposed the same way.
// The arithmetic matches the CPU's BlockQuantizer and Hadamard.Rotate operation for operation (butterflies in the
// same order, the same roundings), so the codes agree bit for bit.
#include "common/numeric.cuh"
#include "common/ptx.cuh"
#include "fp8/fp8_gemm.cuh"

namespace fa {

struct QuantizeParams {
  const void* src;         // 0: (batch, seqlen, heads, head_dim) elements with the strides below
  int64_t src_stride_b;    // 8 (elements)
  int64_t src_stride_s;    // 16
  int64_t src_stride_h;    // 24
  uint8_t* dst;            // 32: rows: (batch, seqlen, heads, head_dim) contiguous; Vᵀ: (batch, heads, head_dim, seqlen_padded)
  float* descale;          // 40: (batch, heads, blocks); null for an E4M3 source (its codes are copied)
  int seqlen;              // 48
  int heads;               // 52
  int blocks;              // 56: ceil(seqlen / block)
  int block;               // 60: tokens per block
  int seqlen_padded;       // 64: Vᵀ rows: seqlen rounded up to 16
  int rotate;              // 68: 1 = multiply by the signs, then the normalised Walsh–Hadamard transform
  uint32_t signs[8];       // 72: bit i of word i/32: coordinate i's sign is −1
};                         // 104 bytes

// Element i of a row in float32, from a 16-bit source.
template <typename E> __device__ __forceinline__ float load_element(const void* row, int i);
template <> __device__ __forceinline__ float load_element<bf16_t>(const void* row, int i) {
  return to_float<bf16_t>(reinterpret_cast<const uint16_t*>(row)[i]);
}
template <> __device__ __forceinline__ float load_element<half_t>(const void* row, int i) {
  return to_float<half_t>(reinterpret_cast<const uint16_t*>(row)[i]);
}

// The E4M3 code of one float (round to nearest even, saturating to ±448, NaN kept).
__device__ __forceinline__ uint8_t e4m3_code(float x) { return (uint8_t)(pack4_e4m3(x, 0.f, 0.f, 0.f) & 0xFF); }

// A warp's row of kD values, kD/32 consecutive ones per lane (lane L holds L·kE … L·kE + kE − 1), loaded as one vector.
template <typename E, int kD>
__device__ __forceinline__ void load_row(const QuantizeParams& q, int b, int s, int h, int lane, float (&x)[kD / 32]) {
  constexpr int kE = kD / 32;
  const uint16_t* row = reinterpret_cast<const uint16_t*>(q.src) + b * q.src_stride_b + (int64_t)s * q.src_stride_s + h * q.src_stride_h;
  uint32_t w[kE / 2];
  if constexpr (kE == 8) {
    const uint4_t v = *reinterpret_cast<const uint4_t*>(row + lane * kE);
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
  } else if constexpr (kE == 4) {
    const uint2_t v = *reinterpret_cast<const uint2_t*>(row + lane * kE);
    w[0] = v.x, w[1] = v.y;
  } else {
    w[0] = *reinterpret_cast<const uint32_t*>(row + lane * kE);
  }
#pragma unroll
  for (int i = 0; i < kE / 2; ++i) unpack2<E>(w[i], x[2 * i], x[2 * i + 1]);
}

// x ← H·(signs ∘ x)/√kD for a warp's row: butterflies of span 1, 2, 4, … as the CPU's Hadamard.Rotate does them (the
// lower index gets a + b, the higher a − b), the first log2(kD/32) inside a lane, the rest across lanes.
template <int kD>
__device__ __forceinline__ void rotate_row(const QuantizeParams& q, int lane, float (&x)[kD / 32]) {
  constexpr int kE = kD / 32;
#pragma unroll
  for (int i = 0; i < kE; ++i) {
    const int c = lane * kE + i;
    if ((q.signs[c / 32] >> (c % 32)) & 1u) x[i] = -x[i];
  }
#pragma unroll
  for (int span = 1; span < kE; span *= 2) {
#pragma unroll
    for (int i = 0; i < kE; ++i) {
      if (i & span) continue;
      const float a = x[i], b = x[i + span];
      x[i] = a + b;
      x[i + span] = a - b;
    }
  }
#pragma unroll
  for (int lanes = 1; lanes < 32; lanes *= 2) {
    const bool upper = (lane & lanes) != 0;
#pragma unroll
    for (int i = 0; i < kE; ++i) {
      const float other = shfl_xor(x[i], lanes);
      x[i] = upper ? other - x[i] : x[i] + other;
    }
  }
  // 1/√kD rounded once from its exact value, as the CPU's (float)(1.0 / Math.Sqrt(d)).
  constexpr float norm = kD == 64 ? 0.125f : kD == 128 ? 0.0883883476483184405f : 0.0625f;
#pragma unroll
  for (int i = 0; i < kE; ++i) x[i] *= norm;
}

// The block's descale from its largest magnitude (BlockQuantizer.DescaleFor): 1 for an all-zero block, at least the
// smallest normal float; NaN when the block holds a NaN or an infinity, so that non-finite input propagates.
__device__ __forceinline__ float block_descale(float amax, bool finite) {
  if (!finite) return bits_to_float(0x7FC00000u);
  if (amax == 0.f) return 1.f;
  const float d = amax / 448.f;
  return d > 1.17549435e-38f ? d : 1.17549435e-38f;
}

// The largest magnitude over the CTA (kWarps warps) and whether every value was finite, via shared memory.
template <int kWarps>
__device__ __forceinline__ float cta_amax(float amax, bool finite, bool& all_finite, float* scratch) {
#pragma unroll
  for (int lanes = 16; lanes >= 1; lanes /= 2) amax = fmax_(amax, shfl_xor(amax, lanes));
  const unsigned bad = __ballot_sync_(!finite);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = bad ? -1.f : amax;
  block_sync();
  float m = 0.f;
  all_finite = true;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const float v = scratch[w];
    all_finite = all_finite && v >= 0.f;
    m = fmax_(m, v);
  }
  return m;
}

// Q or K: a CTA per (block of tokens, head, batch), 8 warps, each owning rows warp, warp + 8, …; the rows stay in
// registers between the block's largest magnitude and the codes.
template <typename E, int kD, int kBlock>
__global__ void __launch_bounds__(256, 1) fp8_quantize_rows(const __grid_constant__ QuantizeParams q) {
  constexpr int kE = kD / 32, kRows = kBlock / 8;
  __shared__ float scratch[8];
  const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int s0 = blk * q.block;
  float x[kRows][kE];
  float amax = 0.f;
  bool finite = true;
  // Every row's load is issued before any is used: the pass is memory-bound, and a warp's kRows loads in flight
  // (instead of one between rotations) are what keeps the memory system busy.
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int s = s0 + warp + 8 * r;
    if (s < q.seqlen) {
      load_row<E, kD>(q, b, s, h, lane, x[r]);
    } else {
#pragma unroll
      for (int i = 0; i < kE; ++i) x[r][i] = 0.f;
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (q.rotate) rotate_row<kD>(q, lane, x[r]);
#pragma unroll
    for (int i = 0; i < kE; ++i) {
      finite = finite && is_finite_(x[r][i]);
      amax = fmax_(amax, fabs_(x[r][i]));
    }
  }
  bool all_finite;
  const float descale = block_descale(cta_amax<8>(amax, finite, all_finite, scratch), all_finite);
  if (threadIdx.x == 0) q.descale[((int64_t)b * q.heads + h) * q.blocks + blk] = descale;
  const float scale = 1.0f / descale;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int s = s0 + warp + 8 * r;
    if (s >= q.seqlen) continue;
    uint8_t* row = q.dst + (((int64_t)b * q.seqlen + s) * q.heads + h) * kD + lane * kE;
    if constexpr (kE == 2) {
      *reinterpret_cast<uint16_t*>(row) = (uint16_t)(pack4_e4m3(x[r][0] * scale, x[r][1] * scale, 0.f, 0.f) & 0xFFFF);
    } else {
#pragma unroll
      for (int i = 0; i < kE; i += 4)
        *reinterpret_cast<uint32_t*>(row + i) = pack4_e4m3(x[r][i] * scale, x[r][i + 1] * scale, x[r][i + 2] * scale, x[r][i + 3] * scale);
    }
  }
}

// V: a CTA per (block of keys, head, batch): codes as for K (no rotation), staged transposed in shared memory and
// written as Vᵀ rows of keys, each key at its permuted position (vt_position_of_key). An E4M3 source (descale null)
// is copied code for code. kBlock is a multiple of 16; the last block's keys past seqlen, up to seqlen_padded, are 0.
template <typename E, int kD, int kBlock>
__global__ void __launch_bounds__(256, 1) fp8_quantize_vt(const __grid_constant__ QuantizeParams q) {
  constexpr int kE = kD / 32, kRows = kBlock / 8, kPitch = kBlock + 4;
  __shared__ float scratch[8];
  __shared__ uint8_t tile[kD * kPitch];
  const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int s0 = blk * q.block;
  constexpr bool kCopy = sizeof(E) == 1;
  float x[kRows][kE];
  uint8_t code[kRows][kE];
  float amax = 0.f;
  bool finite = true;
  // Every row's load first (see fp8_quantize_rows).
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int s = s0 + warp + 8 * r;
    const bool live = s < q.seqlen;
    if constexpr (kCopy) {
      const uint8_t* row = reinterpret_cast<const uint8_t*>(q.src) + b * q.src_stride_b + (int64_t)s * q.src_stride_s + h * q.src_stride_h;
#pragma unroll
      for (int i = 0; i < kE; ++i) code[r][i] = live ? row[lane * kE + i] : 0;
    } else if (live) {
      load_row<E, kD>(q, b, s, h, lane, x[r]);
    } else {
#pragma unroll
      for (int i = 0; i < kE; ++i) x[r][i] = 0.f;
    }
  }
  if constexpr (!kCopy) {
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int i = 0; i < kE; ++i) {
        finite = finite && is_finite_(x[r][i]);
        amax = fmax_(amax, fabs_(x[r][i]));
      }
  }
  if constexpr (!kCopy) {
    bool all_finite;
    const float descale = block_descale(cta_amax<8>(amax, finite, all_finite, scratch), all_finite);
    if (threadIdx.x == 0) q.descale[((int64_t)b * q.heads + h) * q.blocks + blk] = descale;
    const float scale = 1.0f / descale;
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int i = 0; i < kE; ++i) code[r][i] = e4m3_code(x[r][i] * scale);
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int pos = vt_position_of_key(warp + 8 * r);
#pragma unroll
    for (int i = 0; i < kE; ++i) tile[(lane * kE + i) * kPitch + pos] = code[r][i];
  }
  block_sync();
  // Each thread writes 4-byte pieces of the block's kD rows; the keys this block covers, up to seqlen_padded.
  const int keys = (q.seqlen_padded - s0) < kBlock ? q.seqlen_padded - s0 : kBlock;
  uint8_t* base = q.dst + ((int64_t)b * q.heads + h) * kD * q.seqlen_padded + s0;
  for (int i = threadIdx.x; i < kD * (kBlock / 4); i += 256) {
    const int d = i / (kBlock / 4), k4 = 4 * (i % (kBlock / 4));
    if (k4 >= keys) continue;
    const uint8_t* t = tile + d * kPitch + k4;
    *reinterpret_cast<uint32_t*>(base + (int64_t)d * q.seqlen_padded + k4) =
        (uint32_t)t[0] | ((uint32_t)t[1] << 8) | ((uint32_t)t[2] << 16) | ((uint32_t)t[3] << 24);
  }
}

}  // namespace fa
