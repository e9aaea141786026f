// Merging partial attention results through their log-sum-exp. Parts i of one query row were each computed over a
// subset of its keys and normalised over that subset: Oᵢ, lseᵢ (−∞ for a part that saw no key). The merged row is
//   lse = log Σᵢ exp(lseᵢ),   O = Σᵢ exp(lseᵢ − lse) · Oᵢ,
// −∞ and 0 when every part is empty. The split-KV decode merges its key-range splits with it (the last split of a
// row block to finish, decode/decode_combine.cuh); context parallelism merges the ring's steps the same way.
#pragma once
#include "common/ptx.cuh"
#include "common/numeric.cuh"
#include "common/warp.cuh"

namespace fa {

constexpr int kCombineMaxParts = 128;

// The merged log-sum-exp of a warp's row (every lane gets it) and, in weights[i], each part's exp(lseᵢ − lse): 0 for
// an empty part, all 0 when every part is empty. Natural-log inputs and output.
__device__ __forceinline__ float merge_weights(const float* lse_parts, int64_t part_stride, int num_parts, float* weights) {
  constexpr int kPerLane = kCombineMaxParts / 32;
  const int lane = (int)lane_id();
  // Every lane reads every weight of the warp's previous row: none overwrites them before all lanes are here.
  warp_sync();
  // The parts' LSE are read once, all together: the merge is the tail of a decode step, and each read waits out the L2.
  float l[kPerLane];
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int i = lane + 32 * j;
    l[j] = i < num_parts ? lse_parts[i * part_stride] : neg_inf();
  }
  float m = l[0];
#pragma unroll
  for (int j = 1; j < kPerLane; ++j) m = fmax_(m, l[j]);
  m = warp_max(m);
  if (m == neg_inf()) {
    for (int i = lane; i < num_parts; i += 32) weights[i] = 0.f;
    warp_sync();
    return neg_inf();
  }
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) sum += fast_exp2((l[j] - m) * kLog2e);  // exp2(−∞) = 0 for the lanes past num_parts
  sum = warp_sum(sum);
  const float lse = m + fast_log2(sum) * kLn2;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j)
    if (lane + 32 * j < num_parts) weights[lane + 32 * j] = fast_exp2((l[j] - lse) * kLog2e);
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

// One warp merges one row: the parts' weights from their LSE (into `weights`, num_parts floats of shared memory), then
// each lane kHeadDim / 32 columns, stored as E at `out`. Part i of the row is o_parts[i · o_part_stride … + kHeadDim)
// and lse_parts[i · lse_part_stride]. Returns the merged LSE.
template <typename E, int kHeadDim>
__device__ __forceinline__ float merge_row(const float* o_parts, int64_t o_part_stride, const float* lse_parts, int64_t lse_part_stride,
                                           int num_parts, float* weights, void* out) {
  constexpr int kPerLane = kHeadDim / 32;
  const int lane = (int)lane_id();
  const float lse = merge_weights(lse_parts, lse_part_stride, num_parts, weights);
  float acc[kPerLane];
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) acc[c] = 0.f;
  // 64 floats of parts' loads in flight per lane before their sums: one part after another, each would wait out the
  // L2's latency. An empty part holds O = 0 and weighs 0, so it is read like the others rather than branched around.
  constexpr int kBatch = 64 / kPerLane;
  const float* part_row = o_parts + lane * kPerLane;
  for (int i = 0; i < num_parts; i += kBatch) {
    float part[kBatch][kPerLane];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (i + u < num_parts) {
        load_floats(part_row + (i + u) * o_part_stride, part[u]);
      } else {
#pragma unroll
        for (int c = 0; c < kPerLane; ++c) part[u][c] = 0.f;
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const float w = i + u < num_parts ? weights[i + u] : 0.f;
#pragma unroll
      for (int c = 0; c < kPerLane; ++c) acc[c] += w * part[u][c];
    }
  }
  store_packed<E>(reinterpret_cast<uint16_t*>(out) + lane * kPerLane, acc);
  return lse;
}

}  // namespace fa
