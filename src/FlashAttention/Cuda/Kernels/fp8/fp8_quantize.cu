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

// Every CTA covers 64 tokens of one (batch, head) with kD/32 threads per token, each holding 32 elements of the head
// dim: four chunks of 8, chunk j of lane `part` at elements (j·kD/32 + part)·8 …, so that each load and store
// instruction covers whole 32-byte sectors of a row. The Hadamard transform's spans 1, 2, 4 and its top two run inside
// a thread, the log2(kD/32) spans between them across lanes. A block of more than 64 tokens is a cluster of CTAs that
// share their largest magnitudes through distributed shared memory, which keeps every CTA small (many in flight per
// SM: the pass is memory-bound).
constexpr int kQuantizeTokens = 64;

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

// A cluster's largest magnitudes: every CTA pushes its own into each CTA's `part` with st.async, which completes on
// the receiver's `bar`. No CTA reads another's memory, so none waits for its neighbours before it exits.
template <int kCluster>
struct ClusterAmax {
  uint64_t bar;
  float part[kCluster];
};

template <int kCluster>
__device__ __forceinline__ ClusterAmax<kCluster>& cluster_amax_slots() {
  __shared__ ClusterAmax<kCluster> slots;
  return slots;
}

// At the CTA's start, so that the cluster barrier that publishes the mbarrier has long completed when block_amax waits
// on it: one arrival expecting the kCluster pushes.
template <int kCluster>
__device__ __forceinline__ void cluster_amax_begin() {
  if (threadIdx.x == 0) {
    const uint32_t bar = smem_u32(&cluster_amax_slots<kCluster>().bar);
    mbar_init(bar, 1);
    fence_barrier_init();
    mbar_arrive_expect_tx(bar, 4 * kCluster);
  }
  cluster_arrive();
}

// The largest magnitude over the block: the CTA's warps through shared memory, then (kCluster > 1, after
// cluster_amax_begin) the cluster's CTAs through pushes into each other's shared memory. NaN wins (max.NaN), an
// infinity stays infinite.
template <int kThreads, int kCluster>
__device__ __forceinline__ float block_amax(float amax) {
  constexpr int kWarps = kThreads / 32;
  __shared__ float warp_amax[kWarps];
#pragma unroll
  for (int lanes = 16; lanes >= 1; lanes /= 2) amax = fmax_nan(amax, shfl_xor(amax, lanes));
  if (threadIdx.x % 32 == 0) warp_amax[threadIdx.x / 32] = amax;
  block_sync();
  float m = warp_amax[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) m = fmax_nan(m, warp_amax[w]);
  if constexpr (kCluster > 1) {
    ClusterAmax<kCluster>& slots = cluster_amax_slots<kCluster>();
    cluster_wait();  // every CTA's barrier is initialised
    if (threadIdx.x < kCluster)
      st_async_cluster(smem_u32(&slots.part[cluster_ctarank()]), smem_u32(&slots.bar), threadIdx.x, float_bits(m));
    mbar_wait(smem_u32(&slots.bar), 0);
    m = slots.part[0];
#pragma unroll
    for (int r = 1; r < kCluster; ++r) m = fmax_nan(m, slots.part[r]);
  }
  return m;
}

// Q or K rows: a CTA per (64 tokens, head, batch) — `tile` counts the 64-token tiles of the sequence — and a cluster of
// kBlock/64 CTAs (cluster rank `rank`) per descale block.
template <typename E, int kD, int kBlock>
__device__ __forceinline__ void quantize_rows_cta(const QuantizeParams& q, int tile, int h, int b, int rank) {
  constexpr int kThreads = 2 * kD, kLanes = kD / 32, kCluster = kBlock / kQuantizeTokens;
  static_assert(kBlock % kQuantizeTokens == 0 && kCluster <= 8, "a descale block is 64 tokens or a cluster of up to 8 such CTAs");
  const int part = threadIdx.x % kLanes;
  if constexpr (kCluster > 1) cluster_amax_begin<kCluster>();
  const int s = tile * kQuantizeTokens + threadIdx.x / kLanes;
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
  const float descale = block_descale(block_amax<kThreads, kCluster>(amax));
  if (threadIdx.x == 0 && rank == 0) q.descale[((int64_t)b * q.heads + h) * q.blocks + tile / kCluster] = descale;
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

// V: a CTA per (64 keys, head, batch), a cluster per descale block as for K (no rotation), written as Vᵀ rows of keys
// with every key at its permuted position (vt_position_of_key). A thread holds 8 dims of the 4 keys 2a, 2a+1, 2a+8,
// 2a+9 of a 16-key group, which that permutation stores side by side (positions 4a … 4a+3): one 32-bit word per dim,
// staged in shared memory and written 16 keys at a time. An E4M3 source (descale null) is copied code for code. The
// last CTA's keys past seqlen, up to seqlen_padded, are 0.
template <typename E, int kD, int kBlock>
__device__ __forceinline__ void quantize_vt_cta(const QuantizeParams& q, int key_tile, int h, int b, int rank) {
  constexpr int kThreads = 2 * kD, kChunks = kD / 8, kCluster = kBlock / kQuantizeTokens, kPitch = kQuantizeTokens / 4 + 1;
  static_assert(kBlock % kQuantizeTokens == 0 && kCluster <= 8, "a descale block is 64 tokens or a cluster of up to 8 such CTAs");
  constexpr bool kCopy = sizeof(E) == 1;
  __shared__ uint32_t tile[kD * kPitch];
  if constexpr (!kCopy && kCluster > 1) cluster_amax_begin<kCluster>();
  const int s0 = key_tile * kQuantizeTokens;
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
    const float descale = block_descale(block_amax<kThreads, kCluster>(amax));
    if (threadIdx.x == 0 && rank == 0) q.descale[((int64_t)b * q.heads + h) * q.blocks + key_tile / kCluster] = descale;
    const float scale = 1.0f / descale;
#pragma unroll
    for (int i = 0; i < 8; ++i) word[i] = pack4_e4m3(x[0][i] * scale, x[1][i] * scale, x[2][i] * scale, x[3][i] * scale);
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) tile[(chunk * 8 + i) * kPitch + quad] = word[i];
  block_sync();
  // Each dim's row of 64 keys is four 16-byte pieces; those at or past seqlen_padded are not written.
  uint8_t* base = q.dst + ((int64_t)b * q.heads + h) * kD * q.seqlen_padded + s0;
#pragma unroll
  for (int i = threadIdx.x; i < 4 * kD; i += kThreads) {
    const int d = i / 4, piece = i % 4;
    if (s0 + 16 * piece >= q.seqlen_padded) continue;
    const uint32_t* t = tile + d * kPitch + 4 * piece;
    *reinterpret_cast<uint4_t*>(base + (int64_t)d * q.seqlen_padded + 16 * piece) = uint4_t{t[0], t[1], t[2], t[3]};
  }
}

// An E4M3 V (pre-quantised callers) into Vᵀ: a CTA per (64 keys, head, batch), codes copied.
template <int kD>
__global__ void __launch_bounds__(2 * kD) fp8_transpose_vt(const __grid_constant__ QuantizeParams v) {
  quantize_vt_cta<e4m3_t, kD, kQuantizeTokens>(v, blockIdx.x, blockIdx.y, blockIdx.z, 0);
}

// The three passes of a bf16/fp16 call in one launch: clusters of kKvBlock/64 CTAs, each cluster one descale block of K
// or of V, or kKvBlock/64 independent 64-token Q blocks. Clusters of the three kinds alternate, so the rotations' arithmetic
// (Q, K) and V's plain copy share the SMs and the memory system stays busy; one launch also has one tail, not three.
struct QuantizeCall {
  QuantizeParams q, k, v;  // 0, 104, 208
  int q_ctas;              // 312: batch × heads_q × 64-token tiles of Q
  int q_clusters;          // 316: q_ctas rounded up to whole clusters
  int kv_clusters;         // 320: batch × heads_k × descale blocks (the same for K and for V)
};                         // 328 bytes (8-byte aligned)

// Which pass a cluster serves and its index among that pass's clusters: round robin while all three have clusters left,
// then the rest of whichever is longer (Q with grouped-query heads, or K and V alternately).
__device__ __forceinline__ void quantize_job(const QuantizeCall& c, int cluster, int& pass, int& index) {
  const int m = c.q_clusters < c.kv_clusters ? c.q_clusters : c.kv_clusters;
  if (cluster < 3 * m) {
    pass = cluster % 3;
    index = cluster / 3;
  } else if (c.q_clusters > m) {
    pass = 0;
    index = cluster - 2 * m;
  } else {
    const int rest = cluster - 3 * m;
    pass = 1 + rest % 2;
    index = m + rest / 2;
  }
}

// 512/kD CTAs per SM, at most 64 registers a thread: the memory-bound pass wants its bytes in flight.
template <typename E, int kD, int kKvBlock>
__global__ void __launch_bounds__(2 * kD, 512 / kD) fp8_quantize_qkv(const __grid_constant__ QuantizeCall c) {
  constexpr int kCluster = kKvBlock / kQuantizeTokens;
  const int rank = blockIdx.x % kCluster;
  int pass, index;
  quantize_job(c, blockIdx.x / kCluster, pass, index);
  if (pass == 0) {
    // Q: descale blocks of 64 tokens; the cluster's CTAs are independent of each other.
    const int cta = index * kCluster + rank;
    if (cta >= c.q_ctas) return;
    const int tiles = c.q.blocks, tile = cta % tiles, h = (cta / tiles) % c.q.heads, b = cta / (tiles * c.q.heads);
    quantize_rows_cta<E, kD, kQuantizeTokens>(c.q, tile, h, b, 0);
  } else {
    const QuantizeParams& p = pass == 1 ? c.k : c.v;
    const int block = index % p.blocks, h = (index / p.blocks) % p.heads, b = index / (p.blocks * p.heads);
    if (pass == 1) quantize_rows_cta<E, kD, kKvBlock>(p, block * kCluster + rank, h, b, rank);
    else quantize_vt_cta<E, kD, kKvBlock>(p, block * kCluster + rank, h, b, rank);
  }
}

}  // namespace fa
