// FlashAttention-3 backward for Hopper (sm_90a): a pre-pass (D = rowsum(dO ∘ O), LSE in base 2, dQ buffer
// cleared), the warp-specialised main kernel (one CTA per block of 128 keys; see bwd_mainloop.cuh) and
// a post-pass (dQ = scale · dQ_accum in the input type). Name expressions (Cuda/Variants/BackwardVariant.cs), e.g.
//   fa::flash_bwd_kernel<fa::BwdConfig<fa::bf16_t, fa::BwdVariant{.head_dim = 128, …}>>, fa::flash_bwd_preprocess<fa::bf16_t, 128>
#include "bwd/bwd_config.cuh"
#include "bwd/bwd_mainloop.cuh"
#include "bwd/bwd_params.cuh"
#include "common/mask.cuh"
#include "common/numeric.cuh"

namespace fa {

// The CTA's roles for its key block: the producer thread, the dQ writer lane, the consumer warpgroups.
template <class Cfg>
__device__ __forceinline__ void bwd_roles(const BwdParams& p, const Mask& mask, const TmaMap* tma_q, const TmaMap* tma_k,
                                          const TmaMap* tma_v, const TmaMap* tma_do, uint32_t smem, const uint8_t* smem_ptr,
                                          const BwdBarriers<Cfg>& bars, int n_block, int head_k, const BwdSeq& seq) {
  // Warp-uniform by construction, and said so (warp_uniform): the consumers' shared-memory addresses derive from it,
  // and computed from threadIdx they take per-thread registers, so each wgmma's descriptor is built with vector
  // instructions and moved over with four R2UR each.
  const int warpgroup = warp_uniform(threadIdx.x / 128);
  if (warpgroup == 0) {
    setmaxnreg_dec<Cfg::kProducerRegs>();
    if (threadIdx.x == 0) {
      tma_prefetch(tma_q);
      tma_prefetch(tma_k);
      tma_prefetch(tma_v);
      tma_prefetch(tma_do);
      bwd_producer<Cfg>(p, mask, tma_q, tma_k, tma_v, tma_do, smem, bars, n_block, head_k, seq);
    } else if (Cfg::kDqBulk && threadIdx.x == 32) {
      bwd_dq_writer<Cfg>(p, mask, smem, bars, n_block, head_k, seq);
      bulk_wait_all();
    }
  } else {
    setmaxnreg_inc<Cfg::kConsumerRegs>();
    const BwdConsumer<Cfg> consumer{p, mask, bars, smem, smem_ptr, warpgroup - 1, (int)(threadIdx.x % 128), n_block, head_k, seq};
    consumer.run();
  }
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
flash_bwd_kernel(const __grid_constant__ BwdParams p, const __grid_constant__ TmaMap tma_q,
                 const __grid_constant__ TmaMap tma_k, const __grid_constant__ TmaMap tma_v,
                 const __grid_constant__ TmaMap tma_do) {
  extern __shared__ uint8_t smem_raw[];
  // Deterministic mode adds dQ from the last key block down (see dq_turn): launch in that order.
  const int n_block = p.deterministic ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
  const BwdSeq seq = bwd_seq<Cfg>(p, (int)blockIdx.z);
  // A variable-length batch's grid covers its longest sequence: blocks past this one's keys have nothing to do.
  if (Cfg::kVarlen && n_block * Cfg::kBlockN >= seq.seqlen_k) return;
  const uint32_t smem = smem_aligned_1024(smem_raw);
  const uint8_t* smem_ptr = smem_aligned_1024_ptr(smem_raw);
  const BwdBarriers<Cfg> bars{smem + Cfg::kOffBar};
  if (threadIdx.x == 0) {
    mbar_init(bars.kv_full(), 1);
    for (int s = 0; s < Cfg::kStages; ++s) {
      mbar_init(bars.full(s), 1);
      mbar_init(bars.empty(s), Cfg::kConsumerWGs * 128);  // one arrival per consumer thread
    }
    for (int c = 0; c < Cfg::kConsumerWGs; ++c) {
      mbar_init(bars.dq_full(c), 128);
      mbar_init(bars.dq_empty(c), 1);
    }
    fence_barrier_init();
  }
  block_sync();

  const Mask mask{seq.seqlen_q, seq.seqlen_k, p.window_left, p.window_right};
  bwd_roles<Cfg>(p, mask, &tma_q, &tma_k, &tma_v, &tma_do, smem, smem_ptr, bars, n_block, (int)blockIdx.y, seq);
}

// Where the pre- and post-pass find (sequence b, query head h): its query count, its first row in the tensors, its
// first row in the side buffers, and the rows of it the pre-pass clears there (whole 128-row blocks: a 128-query step
// of the main kernel adds whole blocks).
struct AuxSeq {
  int seqlen_q, q_row0;
  int64_t side_row;
  int rows_cleared;
};
__device__ __forceinline__ AuxSeq aux_seq(const BwdAuxParams& p, int b, int h) {
  if (p.cu_seqlens_q != nullptr) {
    const int q0 = clamp_offset(p.cu_seqlens_q[b], p.total_q), q1 = clamp_offset(p.cu_seqlens_q[b + 1], p.total_q);
    const int len = q1 > q0 ? q1 - q0 : 0;
    return AuxSeq{len, q0, (int64_t)h * p.seqlen_q_padded + varlen_side_row0(q0, b), (len + 127) / 128 * 128};
  }
  return AuxSeq{p.seqlen_q, 0, ((int64_t)b * p.heads_q + h) * p.seqlen_q_padded, p.seqlen_q_padded};
}

struct alignas(16) FloatQuad { float x, y, z, w; };  // our kernels include no CUDA headers (no float4)
struct alignas(16) HalfOctet { uint32_t a, b, c, d; };  // eight 16-bit values

// One CTA per 64 query rows of one head. Every access is a 16-byte vector and a warp's accesses are contiguous:
// a row of O and dO is read by kD/8 neighbouring threads (8 values each), and the block's dQ rows, contiguous in
// the float32 buffer, are cleared a quad at a time with the thread index fastest: each warp instruction touches as
// few lines as it can, which matters at short sequences where this pass is a visible share of the backward.
template <typename E, int kD>
__global__ void __launch_bounds__(256)
flash_bwd_preprocess(const __grid_constant__ BwdAuxParams p) {
  const int m_block = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const AuxSeq a = aux_seq(p, b, h);
  if (m_block * 64 >= a.rows_cleared) return;  // (a variable-length batch's grid covers its longest sequence)
  constexpr int kThreadsPerRow = kD / 8, kRowsPerPass = 256 / kThreadsPerRow;
  const int part = threadIdx.x % kThreadsPerRow;
  for (int r = threadIdx.x / kThreadsPerRow; r < 64; r += kRowsPerPass) {
    const int row = m_block * 64 + r;
    const int64_t token = (int64_t)a.q_row0 + row;
    float dot = 0.f;
    if (row < a.seqlen_q) {
      const HalfOctet o = *reinterpret_cast<const HalfOctet*>(
          reinterpret_cast<const uint16_t*>(p.o) + b * p.o_stride_b + token * p.o_stride_s + h * p.o_stride_h + 8 * part);
      const HalfOctet d_o = *reinterpret_cast<const HalfOctet*>(
          reinterpret_cast<const uint16_t*>(p.d_o) + b * p.do_stride_b + token * p.do_stride_s + h * p.do_stride_h + 8 * part);
      const uint32_t ov[4] = {o.a, o.b, o.c, o.d}, dv[4] = {d_o.a, d_o.b, d_o.c, d_o.d};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        float o0, o1, d0, d1;
        unpack2<E>(ov[i], o0, o1);
        unpack2<E>(dv[i], d0, d1);
        dot += o0 * d0 + o1 * d1;
      }
    }
#pragma unroll
    for (int lanes = 1; lanes < kThreadsPerRow; lanes *= 2) dot += shfl_xor(dot, lanes);
    if (part == 0) {
      const int64_t idx = a.side_row + row;
      float lse2 = pos_inf();  // rows that see no key (and padding rows) get P = 2^(s - inf) = 0
      if (row < a.seqlen_q) {
        const float lse = p.lse[b * p.lse_stride_b + h * p.lse_stride_h + token * p.lse_stride_s];
        if (lse != neg_inf()) lse2 = lse * kLog2e;
      }
      p.lse_log2[idx] = lse2;
      p.dpsum[idx] = dot;
    }
  }
  FloatQuad* acc = reinterpret_cast<FloatQuad*>(p.dq_accum + (a.side_row + m_block * 64) * kD);
#pragma unroll 4
  for (int i = threadIdx.x; i < 64 * kD / 4; i += 256) acc[i] = FloatQuad{0.f, 0.f, 0.f, 0.f};
  if (threadIdx.x == 0 && p.dq_semaphore != nullptr) p.dq_semaphore[a.side_row / 64 + m_block] = 0;
}

// One CTA per 64 query rows of one head. dQ_accum holds the rows in 64x64 blocks in accumulator order (see dq_block
// in the mainloop): the four threads t = 4k … 4k+3 of a wgmma quad left 8 columns 8g … of rows r and r + 8
// (r = 16·(k/8) + k%8) in 16 consecutive floats. Each thread here takes one such run (four 16-byte loads) and writes
// two 16-byte pieces of dQ; with g fastest across the lanes, eight lanes write 128 contiguous bytes of a row
// (narrower writes leave half the memory bandwidth unused).
template <typename E, int kD>
__global__ void __launch_bounds__(256)
flash_bwd_postprocess(const __grid_constant__ BwdAuxParams p) {
  const int m_block = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const AuxSeq a = aux_seq(p, b, h);
  if (m_block * 64 >= a.seqlen_q) return;
  const FloatQuad* blocks = reinterpret_cast<const FloatQuad*>(p.dq_accum + (a.side_row / 64 + m_block) * (64 * kD));
  uint16_t* dq = reinterpret_cast<uint16_t*>(p.dq) + b * p.dq_stride_b + h * p.dq_stride_h + (int64_t)a.q_row0 * p.dq_stride_s;
  constexpr int kChunks = kD / 8;  // 8-column pieces of a row
#pragma unroll
  for (int i = threadIdx.x; i < 32 * kChunks; i += 256) {
    const int piece = i % kChunks, quad = i / kChunks;  // quad k: rows r and r + 8
    const int slab = piece / 8, g = piece % 8;
    const int row = m_block * 64 + (quad / 8) * 16 + quad % 8, col = 8 * piece;
    const FloatQuad* run = blocks + slab * 1024 + 128 * g + 4 * quad;
    FloatQuad v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = run[j];
    const float s = p.softmax_scale;
    if (row < a.seqlen_q)
      *reinterpret_cast<HalfOctet*>(dq + row * p.dq_stride_s + col) =
          HalfOctet{pack2<E>(v[0].x * s, v[0].y * s), pack2<E>(v[1].x * s, v[1].y * s), pack2<E>(v[2].x * s, v[2].y * s), pack2<E>(v[3].x * s, v[3].y * s)};
    if (row + 8 < a.seqlen_q)
      *reinterpret_cast<HalfOctet*>(dq + (row + 8) * p.dq_stride_s + col) =
          HalfOctet{pack2<E>(v[0].z * s, v[0].w * s), pack2<E>(v[1].z * s, v[1].w * s), pack2<E>(v[2].z * s, v[2].w * s), pack2<E>(v[3].z * s, v[3].w * s)};
  }
}

}  // namespace fa
