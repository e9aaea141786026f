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

// A rows job covers kTokens tokens of one (batch, head) — a K/V descale block, two of Q's — with kD/32 threads per
// token, each holding 32 elements of the head dim: four pieces of 8, piece j of lane `part` at elements
// (j·kD/32 + part)·8 …, so that each copy and store instruction covers whole 32-byte sectors of a row. The Hadamard
// transform's spans 1, 2, 4 and its top two run inside a thread, the log2(kD/32) spans between them across lanes. A
// descale block's largest magnitude is reduced inside one CTA: no CTA waits on another.
constexpr int kQBlockTokens = 64;  // Q's descale block: one consumer warpgroup's rows in the FP8 kernel

// The quantiser of a bf16/fp16 call: CTAs of kThreads threads (a K/V descale block of kKvBlock tokens, 32 elements a
// thread), 1024 threads per SM at 64 registers each. Resident (kResident): as many CTAs as fit at once, each walking
// every G-th job through a two-stage ring in shared memory; every thread copies (cp.async) exactly the four 16-byte
// pieces it later reads, so a stage needs no barrier between its copy and its use, and the next job's bytes travel
// while the current job computes. Else a CTA per job, its pieces loaded straight into registers.
template <int kD, int kKvBlock, bool kResident>
struct QuantizeConfig {
  static constexpr int kThreads = kKvBlock * kD / 32;
  static constexpr int kCtasPerSm = 32768 / (kKvBlock * kD);
  static constexpr int kStageBytes = kThreads * 64;                   // four 16-byte pieces a thread
  static constexpr int kOffSigns = kResident ? 2 * kStageBytes : 0;   // the Hadamard signs as packed-pair masks: kD/2 words
  static constexpr int kSmemBytes = kOffSigns + kD * 2;               // dynamic; Vᵀ's staging tile is static
  static_assert(kKvBlock % kQBlockTokens == 0 && kKvBlock * kD <= 32768, "a CTA of at most 1024 threads holds whole Q blocks");
};

// Piece j of a thread's four in a stage: [piece][thread], so that a warp's 16-byte reads are contiguous.
template <int kThreads>
__device__ __forceinline__ uint32_t stage_piece(uint32_t stage, int j) { return stage + (uint32_t)(j * kThreads + (int)threadIdx.x) * 16u; }

// A thread's 32 elements of a 16-bit row from its four pieces, in float32.
template <typename E>
__device__ __forceinline__ void unpack_pieces(const uint4_t (&w)[4], float (&x)[32]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    unpack2<E>(w[j].x, x[8 * j + 0], x[8 * j + 1]);
    unpack2<E>(w[j].y, x[8 * j + 2], x[8 * j + 3]);
    unpack2<E>(w[j].z, x[8 * j + 4], x[8 * j + 5]);
    unpack2<E>(w[j].w, x[8 * j + 6], x[8 * j + 7]);
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

// x ← H·x/√kD (x already multiplied by the signs) for a token whose kD/32 threads are adjacent lanes, in the pieces'
// layout: butterflies of span 1, 2, 4, … in the order of the CPU's Hadamard.Rotate, spans 1-4 and the top two inside
// the thread, the rest across lanes.
template <int kD>
__device__ __forceinline__ void hadamard32(int part, float (&x)[32]) {
  constexpr int kLanes = kD / 32;
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

// The signs of the rotation as masks over packed 16-bit pairs (bit 15: the pair's first element, bit 31: its second),
// written once per CTA: flipping the sign bits of the raw pieces is exactly the CPU's multiplication by ±1, one XOR
// per pair. Q and K share the signs (the host writes the same words into both passes).
template <int kD>
__device__ __forceinline__ void write_sign_masks(const uint32_t (&signs)[8], uint32_t table) {
  for (int k = threadIdx.x; k < kD / 2; k += blockDim.x) {
    const uint32_t pair = (signs[k / 16] >> (2 * (k % 16))) & 3u;
    st_shared_s32(table + 4 * k, (int)((pair & 1u) << 15 | (pair >> 1) << 31));
  }
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
// shared memory. NaN wins (max.NaN), an infinity stays infinite. Two slots alternate by job (`parity`): a thread may
// write the next job's while another still reads this one's.
template <int kThreads, int kGroups>
__device__ __forceinline__ float block_amax(float amax, int parity) {
  constexpr int kWarps = kThreads / 32, kGroupWarps = kWarps / kGroups;
  static_assert(kWarps % kGroups == 0, "a descale block is whole warps");
  __shared__ float warp_amax[2][kWarps];
#pragma unroll
  for (int lanes = 16; lanes >= 1; lanes /= 2) amax = fmax_nan(amax, shfl_xor(amax, lanes));
  if (threadIdx.x % 32 == 0) warp_amax[parity][threadIdx.x / 32] = amax;
  block_sync();
  const int first = threadIdx.x / 32 / kGroupWarps * kGroupWarps;
  float m = warp_amax[parity][first];
#pragma unroll
  for (int w = 1; w < kGroupWarps; ++w) m = fmax_nan(m, warp_amax[parity][first + w]);
  return m;
}

// ---- Q and K rows ---------------------------------------------------------------------------------------------
// Where this thread's four pieces of the kTokens-token tile `tile` of (head h, batch b) live; tokens past the sequence
// read as zeros.
template <int kD, int kTokens>
struct RowPieces {
  static constexpr int kLanes = kD / 32;
  const uint4_t* row;
  bool valid;
  int part;
  __device__ __forceinline__ RowPieces(const QuantizeParams& q, int tile, int h, int b) {
    part = threadIdx.x % kLanes;
    const int s = tile * kTokens + (int)threadIdx.x / kLanes;
    valid = s < q.seqlen;
    row = reinterpret_cast<const uint4_t*>(reinterpret_cast<const uint16_t*>(q.src) + b * q.src_stride_b + (int64_t)(valid ? s : 0) * q.src_stride_s +
                                           h * q.src_stride_h);
  }
  __device__ __forceinline__ const uint4_t* at(int j) const { return row + j * kLanes + part; }
  __device__ __forceinline__ void copy_to(uint32_t stage) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) cp_async_16(stage_piece<kTokens * kLanes>(stage, j), at(j), valid);
  }
  __device__ __forceinline__ void load(uint4_t (&w)[4]) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) w[j] = valid ? *at(j) : uint4_t{0u, 0u, 0u, 0u};
  }
};

// Four pieces of a stage into registers.
template <int kThreads>
__device__ __forceinline__ void load_stage(uint32_t stage, uint4_t (&w)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) w[j] = ld_shared_v4_u32(stage_piece<kThreads>(stage, j));
}

// The tile's rows from this thread's pieces `w`: rotated (signs, then the Hadamard transform) when the pass asks, each
// kBlock-token descale block's descale, and the E4M3 codes.
template <typename E, int kD, int kTokens, int kBlock>
__device__ __forceinline__ void quantize_rows(const QuantizeParams& q, int tile, int h, int b, uint4_t (&w)[4], uint32_t signs, int parity) {
  constexpr int kLanes = kD / 32, kThreads = kTokens * kLanes, kGroups = kTokens / kBlock;
  static_assert(kTokens % kBlock == 0, "a CTA holds whole descale blocks");
  const int part = threadIdx.x % kLanes, token = threadIdx.x / kLanes;
  const int s = tile * kTokens + token;
  float x[32];
  if (q.rotate) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint4_t m = ld_shared_v4_u32(signs + (uint32_t)(j * kLanes + part) * 16u);
      w[j] = uint4_t{w[j].x ^ m.x, w[j].y ^ m.y, w[j].z ^ m.z, w[j].w ^ m.w};
    }
    unpack_pieces<E>(w, x);
    hadamard32<kD>(part, x);
  } else {
    unpack_pieces<E>(w, x);
  }
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < 32; ++i) amax = fmax_nan(amax, fabs_(x[i]));
  const float descale = block_descale(block_amax<kThreads, kGroups>(amax, parity));
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

// ---- V into Vᵀ ----------------------------------------------------------------------------------------------
// A V job covers kTokens keys of one (batch, head), one descale block (no rotation), written as Vᵀ rows of keys with
// every key at its permuted position (vt_position_of_key). A thread holds 8 dims (piece `chunk` of a key's row) of
// the 4 keys 2a, 2a+1, 2a+8, 2a+9 of a 16-key group (quad 4g + a holds group g), which that permutation stores side
// by side (positions 4·quad … 4·quad+3): one 32-bit word per dim, staged in shared memory and written 16 keys at a
// time. A warp takes 8 chunks × 4 quads: its copies read 128 contiguous bytes of each of 4 keys, and with the tile's
// swizzle its staging stores hit 32 different banks.
template <int kD, int kTokens>
struct VtThread {
  static constexpr int kChunks = kD / 8, kChunkGroups = kChunks / 8;
  int chunk, quad, key0;
  __device__ __forceinline__ VtThread() {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    chunk = (warp % kChunkGroups) * 8 + lane % 8;
    quad = (warp / kChunkGroups) * 4 + lane / 8;
    key0 = 16 * (quad / 4) + 2 * (quad % 4);
  }
  // Key of piece j: 2a, 2a+1, 2a+8, 2a+9 of the quad's group.
  __device__ __forceinline__ int key(int j) const { return key0 + (j & 1) + 8 * (j >> 1); }
};

// The staging tile of Vᵀ: kD rows (dims) of kTokens/4 words (4 keys each); the 16-byte group of a word is XORed with
// the row's chunk (d/8) so that a warp's 32 stores (8 chunks, 4 quads) fall in 32 banks and a row's groups still read
// as whole 16-byte vectors.
template <int kTokens>
__device__ __forceinline__ int vt_tile_word(int d, int quad) {
  constexpr int kQuads = kTokens / 4;
  return d * kQuads + (quad ^ (((d / 8) << 2) & (kQuads - 4)));
}

// Vᵀ from each thread's 8 words (word i: dim 8·chunk + i of its 4 keys), through the staging tile; the last job's keys
// past seqlen, up to seqlen_padded, are 0.
template <int kD, int kTokens>
__device__ __forceinline__ void write_vt(const QuantizeParams& q, int key_tile, int h, int b, const VtThread<kD, kTokens>& t,
                                         const uint32_t (&word)[8]) {
  constexpr int kThreads = kTokens * kD / 32, kPieces = kTokens / 16, kQuads = kTokens / 4;
  __shared__ __align__(16) uint32_t tile[kD * kQuads];
#pragma unroll
  for (int i = 0; i < 8; ++i) tile[vt_tile_word<kTokens>(t.chunk * 8 + i, t.quad)] = word[i];
  block_sync();
  // Each dim's row of kTokens keys is kPieces pieces of 16 bytes; those at or past seqlen_padded are not written.
  const int s0 = key_tile * kTokens;
  uint8_t* base = q.dst + ((int64_t)b * q.heads + h) * kD * q.seqlen_padded + s0;
  static_assert(kPieces * kD % kThreads == 0, "every thread writes the same number of pieces");
#pragma unroll
  for (int k = 0; k < kPieces * kD / kThreads; ++k) {
    const int i = k * kThreads + threadIdx.x, d = i / kPieces, piece = i % kPieces;
    if (s0 + 16 * piece >= q.seqlen_padded) continue;
    *reinterpret_cast<uint4_t*>(base + (int64_t)d * q.seqlen_padded + 16 * piece) =
        *reinterpret_cast<const uint4_t*>(tile + vt_tile_word<kTokens>(d, 4 * piece));
  }
}

// Where this thread's four pieces of V's key tile `key_tile` of (head h, batch b) live (piece j: key t.key(j)); keys
// past the sequence read as zeros.
template <int kD, int kTokens>
struct VtPieces {
  const uint4_t* src[4];
  bool valid[4];
  __device__ __forceinline__ VtPieces(const QuantizeParams& q, int key_tile, int h, int b, const VtThread<kD, kTokens>& t) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int s = key_tile * kTokens + t.key(j);
      valid[j] = s < q.seqlen;
      src[j] = reinterpret_cast<const uint4_t*>(reinterpret_cast<const uint16_t*>(q.src) + b * q.src_stride_b + (int64_t)(valid[j] ? s : 0) * q.src_stride_s +
                                                h * q.src_stride_h) + t.chunk;
    }
  }
  __device__ __forceinline__ void copy_to(uint32_t stage) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) cp_async_16(stage_piece<kTokens * kD / 32>(stage, j), src[j], valid[j]);
  }
  __device__ __forceinline__ void load(uint4_t (&w)[4]) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) w[j] = valid[j] ? *src[j] : uint4_t{0u, 0u, 0u, 0u};
  }
};

// The key tile from this thread's pieces `w`: its descale and its codes into Vᵀ.
template <typename E, int kD, int kTokens>
__device__ __forceinline__ void quantize_vt(const QuantizeParams& q, int key_tile, int h, int b, const uint4_t (&w)[4], int parity) {
  constexpr int kThreads = kTokens * kD / 32;
  const VtThread<kD, kTokens> t;
  float x[4][8];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    unpack2<E>(w[j].x, x[j][0], x[j][1]);
    unpack2<E>(w[j].y, x[j][2], x[j][3]);
    unpack2<E>(w[j].z, x[j][4], x[j][5]);
    unpack2<E>(w[j].w, x[j][6], x[j][7]);
  }
  float amax = 0.f;
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int i = 0; i < 8; ++i) amax = fmax_nan(amax, fabs_(x[j][i]));
  const float descale = block_descale(block_amax<kThreads, 1>(amax, parity));
  if (threadIdx.x == 0) q.descale[((int64_t)b * q.heads + h) * q.blocks + key_tile] = descale;
  const float scale = 1.0f / descale;
  uint32_t word[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) word[i] = pack4_e4m3(x[0][i] * scale, x[1][i] * scale, x[2][i] * scale, x[3][i] * scale);
  write_vt<kD, kTokens>(q, key_tile, h, b, t, word);
}

// Byte `i` of a 64-bit pair of words.
__device__ __forceinline__ uint32_t byte_of(const uint2_t& w, int i) { return ((i < 4 ? w.x : w.y) >> (8 * (i & 3))) & 0xFFu; }

// An E4M3 V (pre-quantised callers) into Vᵀ: a CTA per (64 keys, head, batch), codes copied.
template <int kD>
__global__ void __launch_bounds__(2 * kD) fp8_transpose_vt(const __grid_constant__ QuantizeParams v) {
  constexpr int kTokens = 64;
  const int key_tile = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const VtThread<kD, kTokens> t;
  uint2_t w[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int s = key_tile * kTokens + t.key(j);
    const uint8_t* src = reinterpret_cast<const uint8_t*>(v.src) + b * v.src_stride_b + (int64_t)s * v.src_stride_s + h * v.src_stride_h;
    w[j] = s < v.seqlen ? *reinterpret_cast<const uint2_t*>(src + t.chunk * 8) : uint2_t{0u, 0u};
  }
  uint32_t word[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) word[i] = byte_of(w[0], i) | byte_of(w[1], i) << 8 | byte_of(w[2], i) << 16 | byte_of(w[3], i) << 24;
  write_vt<kD, kTokens>(v, key_tile, h, b, t, word);
}

// ---- the three passes in one launch ---------------------------------------------------------------------------
// Jobs: a K or V descale block of kKvBlock tokens, or kKvBlock tokens of Q (kKvBlock/64 of its descale blocks).
struct QuantizeCall {
  QuantizeParams q, k, v;  // 0, 104, 208
  int q_jobs;              // 312: batch × heads_q × tiles of kKvBlock Q tokens
  int kv_jobs;             // 316: batch × heads_k × descale blocks (the same for K and for V)
};                         // 320 bytes

// Which pass a job serves and its index among that pass's jobs. While all three have jobs left they come in triplets,
// the pass rotating with the triplet, so that a CTA taking every G-th job meets all three kinds whatever G is (the
// rotations' arithmetic of Q and K and V's plain copy share each SM); then the rest of whichever is longer (Q with
// grouped-query heads, or K and V alternately).
__device__ __forceinline__ void quantize_job(const QuantizeCall& c, int job, int& pass, int& index) {
  const int m = c.q_jobs < c.kv_jobs ? c.q_jobs : c.kv_jobs;
  if (job < 3 * m) {
    index = job / 3;
    pass = (job % 3 + index) % 3;
  } else if (c.q_jobs > m) {
    pass = 0;
    index = job - 2 * m;
  } else {
    const int rest = job - 3 * m;
    pass = 1 + rest % 2;
    index = m + rest / 2;
  }
}

// A job's pass (0 Q, 1 K, 2 V), its tile of kKvBlock tokens, head and batch: decoded once, when its copies are issued.
struct alignas(16) QuantizeJob {
  int pass, tile, h, b;
};

template <int kKvBlock>
__device__ __forceinline__ QuantizeJob decode_job(const QuantizeCall& c, int job) {
  int pass, index;
  quantize_job(c, job, pass, index);
  // K and V have the same blocks and heads.
  const int tiles = pass == 0 ? (c.q.seqlen + kKvBlock - 1) / kKvBlock : c.k.blocks, heads = pass == 0 ? c.q.heads : c.k.heads;
  return QuantizeJob{pass, index % tiles, (index / tiles) % heads, index / (tiles * heads)};
}

// `act` on the job's pieces (where this thread's four 16-byte pieces of its rows or keys live).
template <int kD, int kKvBlock, class Act>
__device__ __forceinline__ void with_job_pieces(const QuantizeCall& c, const QuantizeJob& j, const Act& act) {
  if (j.pass == 2) act(VtPieces<kD, kKvBlock>(c.v, j.tile, j.h, j.b, VtThread<kD, kKvBlock>()));
  else act(RowPieces<kD, kKvBlock>(j.pass == 0 ? c.q : c.k, j.tile, j.h, j.b));
}

// The job from its pieces, which `load(w)` puts in registers (from a stage, or from global memory) inside each pass's
// branch, so that they are live no longer than the pass needs them.
template <typename E, int kD, int kKvBlock, class Load>
__device__ __forceinline__ void quantize_job_from(const QuantizeCall& c, const QuantizeJob& j, const Load& load, uint32_t signs, int parity) {
  uint4_t w[4];
  if (j.pass == 0) {
    load(w);
    quantize_rows<E, kD, kKvBlock, kQBlockTokens>(c.q, j.tile, j.h, j.b, w, signs, parity);
  } else if (j.pass == 1) {
    load(w);
    quantize_rows<E, kD, kKvBlock, kKvBlock>(c.k, j.tile, j.h, j.b, w, signs, parity);
  } else {
    load(w);
    quantize_vt<E, kD, kKvBlock>(c.v, j.tile, j.h, j.b, w, parity);
  }
}

// Resident: CTA i takes jobs i, i + G, i + 2G, … (G = gridDim.x), the next one's copies in flight during each. Every
// thread decodes the next job for its own copies, and thread 0 keeps it in a ring of three slots for the job's own
// step, which reads it by reference: slot (t + 1) % 3 is written in step t, after job t − 1's barrier, which every
// thread reaches only when done with job t − 2, the slot's last user.
// Else: CTA i takes job i, its loads issued before the sign masks are written.
template <typename E, int kD, int kKvBlock, bool kResident>
__global__ void __launch_bounds__(QuantizeConfig<kD, kKvBlock, kResident>::kThreads, QuantizeConfig<kD, kKvBlock, kResident>::kCtasPerSm)
fp8_quantize_qkv(const __grid_constant__ QuantizeCall c) {
  using Cfg = QuantizeConfig<kD, kKvBlock, kResident>;
  extern __shared__ __align__(16) uint8_t smem_raw[];
  const uint32_t smem = smem_u32(smem_raw), signs = smem + Cfg::kOffSigns;
  if constexpr (!kResident) {
    const QuantizeJob job = decode_job<kKvBlock>(c, blockIdx.x);
    uint4_t w[4];
    with_job_pieces<kD, kKvBlock>(c, job, [&](const auto& pieces) { pieces.load(w); });
    write_sign_masks<kD>(c.q.signs, signs);
    block_sync();
    quantize_job_from<E, kD, kKvBlock>(c, job, [&](uint4_t(&into)[4]) {
#pragma unroll
      for (int i = 0; i < 4; ++i) into[i] = w[i];
    }, signs, 0);
  } else {
    __shared__ QuantizeJob slot[3];
    const int jobs = c.q_jobs + 2 * c.kv_jobs, first = blockIdx.x, stride = gridDim.x;
    if (first < jobs) {
      const QuantizeJob job = decode_job<kKvBlock>(c, first);
      with_job_pieces<kD, kKvBlock>(c, job, [smem](const auto& pieces) { pieces.copy_to(smem); });
      if (threadIdx.x == 0) slot[0] = job;
    }
    cp_async_commit();
    write_sign_masks<kD>(c.q.signs, signs);
    block_sync();
    // The job index is recomputed from t rather than carried: across a job's work every register counts.
    for (int t = 0; first + t * stride < jobs; ++t) {
      if (first + (t + 1) * stride < jobs) {
        const QuantizeJob following = decode_job<kKvBlock>(c, first + (t + 1) * stride);
        const uint32_t next_stage = smem + ((t + 1) & 1) * Cfg::kStageBytes;
        with_job_pieces<kD, kKvBlock>(c, following, [next_stage](const auto& pieces) { pieces.copy_to(next_stage); });
        if (threadIdx.x == 0) slot[(t + 1) % 3] = following;
      }
      cp_async_commit();
      cp_async_wait<1>();
      const uint32_t stage = smem + (t & 1) * Cfg::kStageBytes;
      quantize_job_from<E, kD, kKvBlock>(c, slot[t % 3], [stage](uint4_t(&w)[4]) { load_stage<Cfg::kThreads>(stage, w); }, signs, t & 1);
    }
  }
}

}  // namespace fa
