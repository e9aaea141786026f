// Merging partial attention results through their log-sum-exp. Parts i of one query row were each computed over a
// subset of its keys and normalised over that subset: Oᵢ, lseᵢ (−∞ for a part that saw no key). The merged row is
//   lse = log Σᵢ exp(lseᵢ),   O = Σᵢ exp(lseᵢ − lse) · Oᵢ,
// −∞ and 0 when every part is empty. The split-KV decode merges its key-range splits with it; context parallelism
// merges the ring's steps the same way.
#pragma once
#include "common/ptx.cuh"
#include "common/numeric.cuh"
#include "common/grid_dependency.cuh"
#include "common/warp.cuh"

namespace fa {

// Parts laid out as (part, row, head_dim) float32 and (part, row), rows in (batch, seqlen_q, heads_q) order; the
// merged row goes to O (element type) and LSE with the caller's strides. Mirrored by CombineParams in
// Cuda/Launchers/KernelParams.cs.
struct CombineParams {
  int num_parts;             // 0
  int batch;                 // 4
  int seqlen_q;              // 8
  int heads_q;               // 12
  const float* o_partial;    // 16
  const float* lse_partial;  // 24
  void* o;                   // 32: (batch, seqlen_q, heads_q, head_dim)
  int64_t o_stride_b;        // 40 (elements)
  int64_t o_stride_s;        // 48
  int64_t o_stride_h;        // 56
  float* lse;                // 64: (batch, heads_q, seqlen_q); may be null
  int64_t lse_stride_b;      // 72
  int64_t lse_stride_h;      // 80
  int64_t lse_stride_s;      // 88
  const int* seqlens;        // 96: optional (the KV-cache contract): rows of a sequence with seqlens[b] outside
  int max_seqlen;            // 104   [0, max_seqlen] are not written, as the decode kernel did not write its parts
  int reserved;              // 108
};                           // 112 bytes

constexpr int kCombineMaxParts = 128;
constexpr int kCombineRowsPerBlock = 4;  // one warp per row
constexpr int kCombineBatch = 8;         // parts whose loads are issued together

// The merged log-sum-exp of a warp's row (every lane gets it) and, in weights[i], each part's exp(lseᵢ − lse): 0 for
// an empty part, all 0 when every part is empty. Natural-log inputs and output.
__device__ __forceinline__ float merge_weights(const float* lse_parts, int64_t part_stride, int num_parts, float* weights) {
  const int lane = (int)lane_id();
  float m = neg_inf();
  for (int i = lane; i < num_parts; i += 32) m = fmax_(m, lse_parts[i * part_stride]);
  m = warp_max(m);
  if (m == neg_inf()) {
    for (int i = lane; i < num_parts; i += 32) weights[i] = 0.f;
    warp_sync();
    return neg_inf();
  }
  float sum = 0.f;
  for (int i = lane; i < num_parts; i += 32) sum += fast_exp2((lse_parts[i * part_stride] - m) * kLog2e);
  sum = warp_sum(sum);
  const float lse = m + fast_log2(sum) * kLn2;
  for (int i = lane; i < num_parts; i += 32) weights[i] = fast_exp2((lse_parts[i * part_stride] - lse) * kLog2e);
  warp_sync();
  return lse;
}

struct alignas(16) Float4 { float x, y, z, w; };
struct alignas(8) Float2 { float x, y; };

// kValues consecutive floats from global memory (16 or 8 bytes at a time).
template <int kValues>
__device__ __forceinline__ void load_floats(const float* src, float (&v)[kValues]) {
  if constexpr (kValues % 4 == 0) {
#pragma unroll
    for (int i = 0; i < kValues / 4; ++i) {
      const Float4 f = reinterpret_cast<const Float4*>(src)[i];
      v[4 * i] = f.x; v[4 * i + 1] = f.y; v[4 * i + 2] = f.z; v[4 * i + 3] = f.w;
    }
  } else {
    static_assert(kValues == 2, "2, or a multiple of 4, floats per lane");
    const Float2 f = *reinterpret_cast<const Float2*>(src);
    v[0] = f.x; v[1] = f.y;
  }
}

// kValues floats packed into 16-bit elements and stored at once (4, 8 or 16 bytes).
template <typename E, int kValues>
__device__ __forceinline__ void store_packed(void* dst, const float (&v)[kValues]) {
  if constexpr (kValues == 2) {
    *reinterpret_cast<uint32_t*>(dst) = pack2<E>(v[0], v[1]);
  } else if constexpr (kValues == 4) {
    struct alignas(8) U2 { uint32_t a, b; };
    *reinterpret_cast<U2*>(dst) = U2{pack2<E>(v[0], v[1]), pack2<E>(v[2], v[3])};
  } else {
    static_assert(kValues % 8 == 0, "2, 4 or a multiple of 8 values");
    struct alignas(16) U4 { uint32_t a, b, c, d; };
#pragma unroll
    for (int i = 0; i < kValues / 8; ++i)
      reinterpret_cast<U4*>(dst)[i] = U4{pack2<E>(v[8 * i], v[8 * i + 1]), pack2<E>(v[8 * i + 2], v[8 * i + 3]),
                                         pack2<E>(v[8 * i + 4], v[8 * i + 5]), pack2<E>(v[8 * i + 6], v[8 * i + 7])};
  }
}

// One warp per query row: the parts' weights from their LSE, then each lane merges head_dim / 32 columns.
template <typename E, int kHeadDim>
__global__ void __launch_bounds__(32 * kCombineRowsPerBlock)
flash_combine_kernel(const __grid_constant__ CombineParams p) {
  constexpr int kPerLane = kHeadDim / 32;
  __shared__ float weights[kCombineRowsPerBlock][kCombineMaxParts];
  wait_prior_grids();  // the parts come from the grid before
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t rows = (int64_t)p.batch * p.seqlen_q * p.heads_q;
  const int64_t row = (int64_t)blockIdx.x * kCombineRowsPerBlock + warp;
  if (row >= rows) return;
  const int h = (int)(row % p.heads_q), s = (int)(row / p.heads_q % p.seqlen_q), b = (int)(row / ((int64_t)p.heads_q * p.seqlen_q));
  if (p.seqlens != nullptr && !(p.seqlens[b] >= 0 && p.seqlens[b] <= p.max_seqlen)) return;

  const float lse = merge_weights(p.lse_partial + row, rows, p.num_parts, weights[warp]);
  float acc[kPerLane];
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) acc[c] = 0.f;
  // Eight parts' loads in flight before their sums: one after another, each would wait out the L2's latency. An empty
  // part holds O = 0 and weighs 0, so it is read like the others rather than branched around.
  const float* part_row = p.o_partial + row * kHeadDim + lane * kPerLane;
  const int64_t part_stride = rows * kHeadDim;
  int i = 0;
  for (; i + kCombineBatch <= p.num_parts; i += kCombineBatch) {
    float part[kCombineBatch][kPerLane];
#pragma unroll
    for (int u = 0; u < kCombineBatch; ++u) load_floats(part_row + (i + u) * part_stride, part[u]);
#pragma unroll
    for (int u = 0; u < kCombineBatch; ++u)
#pragma unroll
      for (int c = 0; c < kPerLane; ++c) acc[c] += weights[warp][i + u] * part[u][c];
  }
  for (; i < p.num_parts; ++i) {
    float part[kPerLane];
    load_floats(part_row + i * part_stride, part);
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) acc[c] += weights[warp][i] * part[c];
  }
  store_packed<E>(reinterpret_cast<uint16_t*>(p.o) + b * p.o_stride_b + s * p.o_stride_s + h * p.o_stride_h + lane * kPerLane, acc);
  if (p.lse != nullptr && lane == 0) p.lse[b * p.lse_stride_b + h * p.lse_stride_h + s * p.lse_stride_s] = lse;
}

}  // namespace fa
