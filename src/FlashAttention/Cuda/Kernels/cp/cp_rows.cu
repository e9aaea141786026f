// Context parallelism's row kernels: the merge of one ring step's partial O and LSE into the running float32
// accumulators (through common/combine.cuh's merge_weights, the decode combine's formula), the float32 accumulation
// of partial gradients, and the copies that pack, reorder and convert rows between element types.
// Name expressions (Cuda/ContextParallel/ContextParallelKernels.cs): fa::cp_merge_kernel<fa::bf16_t, 128>,
// fa::cp_add_kernel<fa::bf16_t, 128>, fa::cp_copy_kernel<float, fa::bf16_t, 128>, …
#include "cp/cp_params.cuh"
#include "common/combine.cuh"

namespace fa {

// kValues consecutive elements of type T at src as floats (T is float, bf16_t or half_t).
template <typename T, int kValues>
__device__ __forceinline__ void load_row_part(const void* src, float (&v)[kValues]) {
  if constexpr (sizeof(T) == 4) {
    load_floats<kValues>(reinterpret_cast<const float*>(src), v);
  } else if constexpr (kValues == 2) {
    unpack2<T>(*reinterpret_cast<const uint32_t*>(src), v[0], v[1]);
  } else if constexpr (kValues == 4) {
    struct alignas(8) U2 { uint32_t a, b; };
    const U2 u = *reinterpret_cast<const U2*>(src);
    unpack2<T>(u.a, v[0], v[1]); unpack2<T>(u.b, v[2], v[3]);
  } else {
    static_assert(kValues % 8 == 0, "2, 4 or a multiple of 8 values");
    struct alignas(16) U4 { uint32_t a, b, c, d; };
#pragma unroll
    for (int i = 0; i < kValues / 8; ++i) {
      const U4 u = reinterpret_cast<const U4*>(src)[i];
      unpack2<T>(u.a, v[8 * i], v[8 * i + 1]); unpack2<T>(u.b, v[8 * i + 2], v[8 * i + 3]);
      unpack2<T>(u.c, v[8 * i + 4], v[8 * i + 5]); unpack2<T>(u.d, v[8 * i + 6], v[8 * i + 7]);
    }
  }
}

// kValues floats stored as type T at dst.
template <typename T, int kValues>
__device__ __forceinline__ void store_row_part(void* dst, const float (&v)[kValues]) {
  if constexpr (sizeof(T) == 4) {
    if constexpr (kValues == 2) {
      *reinterpret_cast<Float2*>(dst) = Float2{v[0], v[1]};
    } else {
#pragma unroll
      for (int i = 0; i < kValues / 4; ++i) reinterpret_cast<Float4*>(dst)[i] = Float4{v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]};
    }
  } else {
    store_packed<T, kValues>(dst, v);
  }
}

// The warp's (batch, row, head) and whether it has one; lanes split head_dim.
struct CpRow {
  int b, s, h;
  bool valid;
};

__device__ __forceinline__ CpRow cp_row(const CpRowsParams& p) {
  const int64_t row = (int64_t)blockIdx.x * kCpRowsPerBlock + threadIdx.x / 32;
  const int64_t total = (int64_t)p.batch * p.rows * p.heads;
  CpRow r;
  r.valid = row < total;
  r.h = (int)(row % p.heads);
  r.s = (int)(row / p.heads % p.rows);
  r.b = (int)(row / ((int64_t)p.heads * p.rows));
  return r;
}

template <typename T>
__device__ __forceinline__ T* row_at(T* base, int64_t sb, int64_t ss, int64_t sh, const CpRow& r, int64_t column) {
  return base + r.b * sb + r.s * ss + r.h * sh + column;
}

// Running accumulators (dst: float32 O, dst_lse) absorb a part (src: O in E, src_lse): both normalised over their own
// keys, so the merged row is their LSE-weighted sum. The accumulators start as O = 0, LSE = −∞ (an empty part).
template <typename E, int kHeadDim>
__global__ void __launch_bounds__(32 * kCpRowsPerBlock) cp_merge_kernel(const __grid_constant__ CpRowsParams p) {
  constexpr int kPerLane = kHeadDim / 32;
  __shared__ float lse_pair[kCpRowsPerBlock][2];
  __shared__ float weights[kCpRowsPerBlock][2];
  const CpRow r = cp_row(p);
  if (!r.valid) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* acc_lse = p.dst_lse + r.b * p.dst_lse_stride_b + r.h * p.dst_lse_stride_h + r.s * p.dst_lse_stride_s;
  if (lane == 0) lse_pair[warp][0] = *acc_lse;
  if (lane == 1) lse_pair[warp][1] = p.src_lse[r.b * p.src_lse_stride_b + r.h * p.src_lse_stride_h + r.s * p.src_lse_stride_s];
  warp_sync();
  const float lse = merge_weights(lse_pair[warp], 1, 2, weights[warp]);

  float* acc = row_at(reinterpret_cast<float*>(p.dst), p.dst_stride_b, p.dst_stride_s, p.dst_stride_h, r, lane * kPerLane);
  const uint16_t* part = row_at(reinterpret_cast<const uint16_t*>(p.src), p.src_stride_b, p.src_stride_s, p.src_stride_h, r, lane * kPerLane);
  float a[kPerLane], o[kPerLane];
  load_row_part<float, kPerLane>(acc, a);
  load_row_part<E, kPerLane>(part, o);
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) a[c] = weights[warp][0] * a[c] + weights[warp][1] * o[c];
  store_row_part<float, kPerLane>(acc, a);
  if (lane == 0) *acc_lse = lse;
}

// dst (float32) += src (S: a partial gradient in E, or another rank's float32 accumulator).
template <typename S, int kHeadDim>
__global__ void __launch_bounds__(32 * kCpRowsPerBlock) cp_add_kernel(const __grid_constant__ CpRowsParams p) {
  constexpr int kPerLane = kHeadDim / 32;
  const CpRow r = cp_row(p);
  if (!r.valid) return;
  const int lane = threadIdx.x % 32;
  float* acc = row_at(reinterpret_cast<float*>(p.dst), p.dst_stride_b, p.dst_stride_s, p.dst_stride_h, r, lane * kPerLane);
  const S* part = row_at(reinterpret_cast<const S*>(p.src), p.src_stride_b, p.src_stride_s, p.src_stride_h, r, lane * kPerLane);
  float a[kPerLane], x[kPerLane];
  load_row_part<float, kPerLane>(acc, a);
  load_row_part<S, kPerLane>(part, x);
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) a[c] += x[c];
  store_row_part<float, kPerLane>(acc, a);
}

// dst (T) = src (S), converted through float32 (exact for E → E and E → float); with LSE pointers, the row's LSE too.
template <typename S, typename T, int kHeadDim>
__global__ void __launch_bounds__(32 * kCpRowsPerBlock) cp_copy_kernel(const __grid_constant__ CpRowsParams p) {
  constexpr int kPerLane = kHeadDim / 32;
  const CpRow r = cp_row(p);
  if (!r.valid) return;
  const int lane = threadIdx.x % 32;
  const S* src = row_at(reinterpret_cast<const S*>(p.src), p.src_stride_b, p.src_stride_s, p.src_stride_h, r, lane * kPerLane);
  T* dst = row_at(reinterpret_cast<T*>(p.dst), p.dst_stride_b, p.dst_stride_s, p.dst_stride_h, r, lane * kPerLane);
  float x[kPerLane];
  load_row_part<S, kPerLane>(src, x);
  store_row_part<T, kPerLane>(dst, x);
  if (p.dst_lse != nullptr && lane == 0)
    p.dst_lse[r.b * p.dst_lse_stride_b + r.h * p.dst_lse_stride_h + r.s * p.dst_lse_stride_s] =
        p.src_lse[r.b * p.src_lse_stride_b + r.h * p.src_lse_stride_h + r.s * p.src_lse_stride_s];
}

}  // namespace fa
