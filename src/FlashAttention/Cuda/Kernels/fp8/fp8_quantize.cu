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

// Every CTA covers kTokens tokens of one (batch, head) — a K/V descale block, two of Q's — with kD/32 threads per token,
// each holding 32 elements of the head dim: four chunks of 8, chunk j of lane `part` at elements (j·kD/32 + part)·8 …,
// so that each load and store instruction covers whole 32-byte sectors of a row. The Hadamard transform's spans 1, 2, 4
// and its top two run inside a thread, the log2(kD/32) spans between them across lanes. A descale block's largest
// magnitude is reduced inside one CTA: no CTA waits on another.
constexpr int kQBlockTokens = 64;  // Q's descale block: one consumer warpgroup's rows in the FP8 kernel

// A thread's 32 elements of a 16-bit row (four 16-byte loads, the warp's lanes side by side) in float32.
template <typename E, int kLanes>
__device__ __forceinline__ void load_chunks(const uint16_t* row, int part, float (&x)[32]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const uint4_t w = reinterpret_cast<const uint4_t*>(row)[j * kLanes + part];
    unpack2<E>(w.x, x[8 * j + 0], x[8 * j + 1]);
    unpack2<E>(w.y, x[8 * j + 2], x[8 * j + 3]);
    unpack2<E>(w.z, x[8 * j + 4], x[8 * j + 5]);
    unpack2<E>(w.w, x[8 * j + 6], x[8 * j + 7]);
  }
}

// One butterfly stage inside a thread over register span `span` (the lower index gets a + b, the higher a − b).
__device__ __forceinline__ void butterfly32(int span, float (&x)[32]) {
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    if (i & span) continue;
    const float a = x[i], b = x[i + span];
    x[i] = a + b;
    x[i + span] = a - b;
  }
}

// x ← H·(signs ∘ x)/√kD for a token whose kD/32 threads are adjacent lanes, in load_chunks' layout: butterflies of span
// 1, 2, 4, … in the order of the CPU's Hadamard.Rotate, spans 1-4 and the top two inside the thread, the rest across lanes.
template <int kD>
__device__ __forceinline__ void rotate32(const uint32_t (&signs)[8], int part, float (&x)[32]) {
  constexpr int kLanes = kD / 32;
  uint32_t mine = 0;  // bit 8j + e: the sign of this thread's element 8j + e
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int chunk = j * kLanes + part;
    mine |= ((signs[chunk / 4] >> (8 * (chunk % 4))) & 0xFFu) << (8 * j);
  }
#pragma unroll
  for (int i = 0; i < 32; ++i) x[i] = bits_to_float(float_bits(x[i]) ^ ((mine << (31 - i)) & 0x80000000u));
  butterfly32(1, x);
  butterfly32(2, x);
  butterfly32(4, x);
#pragma unroll
  for (int lanes = 1; lanes < kLanes; lanes *= 2) {
    // The upper partner keeps other − x, the lower x + other: one FMA each, rounded once as the CPU's subtraction/sum.
    const float sign = (part & lanes) ? -1.f : 1.f;
#pragma unroll
    for (int i = 0; i < 32; ++i) x[i] = fmaf_(sign, x[i], shfl_xor(x[i], lanes));
  }
  butterfly32(8, x);
  butterfly32(16, x);
  // 1/√kD rounded once from its exact value, as the CPU's (float)(1.0 / Math.Sqrt(d)).
  constexpr float norm = kD == 64 ? 0.125f : kD == 128 ? 0.0883883476483184405f : 0.0625f;
#pragma unroll
  for (int i = 0; i < 32; ++i) x[i] *= norm;
}

// The block's descale from its largest magnitude (BlockQuantizer.DescaleFor): 1 for an all-zero block, at least the
// smallest normal float; NaN when the block holds a NaN or an infinity, so that non-finite input propagates.
__device__ __forceinline__ float block_descale(float amax) {
  if (!is_finite_(amax)) return bits_to_float(0x7FC00000u);
  if (amax == 0.f) return 1.f;
  const float d = amax / 448.f;
  return d > 1.17549435e-38f ? d : 1.17549435e-38f;
}

// The largest magnitude over each of the CTA's kGroups groups of consecutive threads (a descale block each), through
// shared memory. NaN wins (max.NaN), an infinity stays infinite.
template <int kThreads, int kGroups>
__device__ __forceinline__ float block_amax(float amax) {
  constexpr int kWarps = kThreads / 32, kGroupWarps = kWarps / kGroups;
  static_assert(kWarps % kGroups == 0, "a descale block is whole warps");
  __shared__ float warp_amax[kWarps];
#pragma unroll
  for (int lanes = 16; lanes >= 1; lanes /= 2) amax = fmax_nan(amax, shfl_xor(amax, lanes));
  if (threadIdx.x % 32 == 0) warp_amax[threadIdx.x / 32] = amax;
  block_sync();
  const int first = threadIdx.x / 32 / kGroupWarps * kGroupWarps;
  float m = warp_amax[first];
#pragma unroll
  for (int w = 1; w < kGroupWarps; ++w) m = fmax_nan(m, warp_amax[first + w]);
  return m;
}

// Q or K rows: a CTA per (kTokens tokens, head, batch) — `tile` counts the kTokens-token tiles of the sequence — holding
// kTokens/kBlock descale blocks of kBlock tokens.
template <typename E, int kD, int kTokens, int kBlock>
__device__ __forceinline__ void quantize_rows_cta(const QuantizeParams& q, int tile, int h, int b) {
  constexpr int kLanes = kD / 32, kThreads = kTokens * kLanes, kGroups = kTokens / kBlock;
  static_assert(kTokens % kBlock == 0, "a CTA holds whole descale blocks");
  const int part = threadIdx.x % kLanes, token = threadIdx.x / kLanes;
  const int s = tile * kTokens + token;
  float x[32];
  if (s < q.seqlen) {
    load_chunks<E, kLanes>(reinterpret_cast<const uint16_t*>(q.src) + b * q.src_stride_b + (int64_t)s * q.src_stride_s + h * q.src_stride_h, part, x);
  } else {
#pragma unroll
    for (int i = 0; i < 32; ++i) x[i] = 0.f;
  }
  if (q.rotate) rotate32<kD>(q.signs, part, x);
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < 32; ++i) amax = fmax_nan(amax, fabs_(x[i]));
  const float descale = block_descale(block_amax<kThreads, kGroups>(amax));
  const int block = tile * kGroups + token / kBlock;
  if (token % kBlock == 0 && part == 0 && block < q.blocks) q.descale[((int64_t)b * q.heads + h) * q.blocks + block] = descale;
  const float scale = 1.0f / descale;
  if (s < q.seqlen) {
    uint2_t* row = reinterpret_cast<uint2_t*>(q.dst + (((int64_t)b * q.seqlen + s) * q.heads + h) * kD);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float* y = x + 8 * j;
      row[j * kLanes + part] = uint2_t{pack4_e4m3(y[0] * scale, y[1] * scale, y[2] * scale, y[3] * scale),
                                       pack4_e4m3(y[4] * scale, y[5] * scale, y[6] * scale, y[7] * scale)};
    }
  }
}

// Byte `i` of a 64-bit pair of words.
__device__ __forceinline__ uint32_t byte_of(const uint2_t& w, int i) { return ((i < 4 ? w.x : w.y) >> (8 * (i & 3))) & 0xFFu; }

// V: a CTA per (kTokens keys, head, batch), one descale block (no rotation), written as Vᵀ rows of keys
// with every key at its permuted position (vt_position_of_key). A thread holds 8 dims of the 4 keys 2a, 2a+1, 2a+8,
// 2a+9 of a 16-key group, which that permutation stores side by side (positions 4a … 4a+3): one 32-bit word per dim,
// staged in shared memory and written 16 keys at a time. An E4M3 source (descale null) is copied code for code. The
// last CTA's keys past seqlen, up to seqlen_padded, are 0.
template <typename E, int kD, int kTokens>
__device__ __forceinline__ void quantize_vt_cta(const QuantizeParams& q, int key_tile, int h, int b) {
  constexpr int kThreads = kTokens * kD / 32, kChunks = kD / 8, kPitch = kTokens / 4 + 1, kPieces = kTokens / 16;
  constexpr bool kCopy = sizeof(E) == 1;
  __shared__ uint32_t tile[kD * kPitch];
  const int s0 = key_tile * kTokens;
  const int chunk = threadIdx.x % kChunks, quad = threadIdx.x / kChunks;
  const int key0 = 16 * (quad / 4) + 2 * (quad % 4);
  uint32_t word[8];
  if constexpr (kCopy) {
    uint2_t w[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int s = s0 + key0 + (j & 1) + 8 * (j >> 1);
      const uint8_t* src = reinterpret_cast<const uint8_t*>(q.src) + b * q.src_stride_b + (int64_t)s * q.src_stride_s + h * q.src_stride_h;
      w[j] = s < q.seqlen ? *reinterpret_cast<const uint2_t*>(src + chunk * 8) : uint2_t{0u, 0u};
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) word[i] = byte_of(w[0], i) | byte_of(w[1], i) << 8 | byte_of(w[2], i) << 16 | byte_of(w[3], i) << 24;
  } else {
    float x[4][8];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int s = s0 + key0 + (j & 1) + 8 * (j >> 1);
      if (s < q.seqlen) {
        const uint16_t* src = reinterpret_cast<const uint16_t*>(q.src) + b * q.src_stride_b + (int64_t)s * q.src_stride_s + h * q.src_stride_h;
        const uint4_t v = reinterpret_cast<const uint4_t*>(src)[chunk];
        unpack2<E>(v.x, x[j][0], x[j][1]);
        unpack2<E>(v.y, x[j][2], x[j][3]);
        unpack2<E>(v.z, x[j][4], x[j][5]);
        unpack2<E>(v.w, x[j][6], x[j][7]);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) x[j][i] = 0.f;
      }
    }
    float amax = 0.f;
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int i = 0; i < 8; ++i) amax = fmax_nan(amax, fabs_(x[j][i]));
    const float descale = block_descale(block_amax<kThreads, 1>(amax));
    if (threadIdx.x == 0) q.descale[((int64_t)b * q.heads + h) * q.blocks + key_tile] = descale;
    const float scale = 1.0f / descale;
#pragma unroll
    for (int i = 0; i < 8; ++i) word[i] = pack4_e4m3(x[0][i] * scale, x[1][i] * scale, x[2][i] * scale, x[3][i] * scale);
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) tile[(chunk * 8 + i) * kPitch + quad] = word[i];
  block_sync();
  // Each dim's row of kTokens keys is kTokens/16 pieces of 16 bytes; those at or past seqlen_padded are not written.
  uint8_t* base = q.dst + ((int64_t)b * q.heads + h) * kD * q.seqlen_padded + s0;
#pragma unroll
  for (int i = threadIdx.x; i < kPieces * kD; i += kThreads) {
    const int d = i / kPieces, piece = i % kPieces;
    if (s0 + 16 * piece >= q.seqlen_padded) continue;
    const uint32_t* t = tile + d * kPitch + 4 * piece;
    *reinterpret_cast<uint4_t*>(base + (int64_t)d * q.seqlen_padded + 16 * piece) = uint4_t{t[0], t[1], t[2], t[3]};
  }
}

// An E4M3 V (pre-quantised callers) into Vᵀ: a CTA per (64 keys, head, batch), codes copied.
template <int kD>
__global__ void __launch_bounds__(2 * kD) fp8_transpose_vt(const __grid_constant__ QuantizeParams v) {
  quantize_vt_cta<e4m3_t, kD, 64>(v, blockIdx.x, blockIdx.y, blockIdx.z);
}

// The three passes of a bf16/fp16 call in one launch: a CTA per K or V descale block of kKvBlock tokens, or per kKvBlock
// tokens of Q (kKvBlock/64 of its descale blocks). The three kinds alternate, so the rotations' arithmetic (Q, K) and
// V's plain copy share the SMs and the memory system stays busy; one launch also has one tail, not three.
struct QuantizeCall {
  QuantizeParams q, k, v;  // 0, 104, 208
  int q_ctas;              // 312: batch × heads_q × tiles of kKvBlock Q tokens
  int kv_ctas;             // 316: batch × heads_k × descale blocks (the same for K and for V)
};                         // 320 bytes

// Which pass a CTA serves and its index among that pass's CTAs: round robin while all three have CTAs left, then the
// rest of whichever is longer (Q with grouped-query heads, or K and V alternately).
__device__ __forceinline__ void quantize_job(const QuantizeCall& c, int cta, int& pass, int& index) {
  const int m = c.q_ctas < c.kv_ctas ? c.q_ctas : c.kv_ctas;
  if (cta < 3 * m) {
    pass = cta % 3;
    index = cta / 3;
  } else if (c.q_ctas > m) {
    pass = 0;
    index = cta - 2 * m;
  } else {
    const int rest = cta - 3 * m;
    pass = 1 + rest % 2;
    index = m + rest / 2;
  }
}

// 1024 threads per SM, at most 64 registers a thread: the memory-bound pass wants its bytes in flight.
template <typename E, int kD, int kKvBlock>
__global__ void __launch_bounds__(kKvBlock * kD / 32, 32768 / (kKvBlock * kD)) fp8_quantize_qkv(const __grid_constant__ QuantizeCall c) {
  static_assert(kKvBlock % kQBlockTokens == 0 && kKvBlock * kD <= 32768, "a CTA of at most 1024 threads holds whole Q blocks");
  int pass, index;
  quantize_job(c, blockIdx.x, pass, index);
  if (pass == 0) {
    const int tiles = (c.q.seqlen + kKvBlock - 1) / kKvBlock, tile = index % tiles, h = (index / tiles) % c.q.heads,
              b = index / (tiles * c.q.heads);
    quantize_rows_cta<E, kD, kKvBlock, kQBlockTokens>(c.q, tile, h, b);
  } else {
    // K and V have the same blocks and heads.
    const int block = index % c.k.blocks, h = (index / c.k.blocks) % c.k.heads, b = index / (c.k.blocks * c.k.heads);
    if (pass == 1) quantize_rows_cta<E, kD, kKvBlock, kKvBlock>(c.k, block, h, b);
    else quantize_vt_cta<E, kD, kKvBlock>(c.v, block, h, b);
  }
}

}  // namespace fa
