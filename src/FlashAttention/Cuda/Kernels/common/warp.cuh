// Whole-warp helpers (all 32 lanes take part): synchronisation, reductions and votes, as inline PTX.
#pragma once
#include "common/ptx.cuh"

namespace fa {

// Orders the lanes' memory accesses before it against those after it, within the warp.
__device__ __forceinline__ void warp_sync() { asm volatile("bar.warp.sync 0xffffffff;" ::: "memory"); }

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = fmax_(v, shfl_xor(v, m));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += shfl_xor(v, m);
  return v;
}

// True in every lane when `pred` holds in any.
__device__ __forceinline__ bool warp_any(bool pred) {
  uint32_t r;
  asm volatile("{\n.reg .pred p, q;\nsetp.ne.u32 p, %1, 0;\nvote.sync.any.pred q, p, 0xffffffff;\nselp.u32 %0, 1, 0, q;\n}\n"
               : "=r"(r) : "r"((uint32_t)pred));
  return r != 0;
}

}  // namespace fa
