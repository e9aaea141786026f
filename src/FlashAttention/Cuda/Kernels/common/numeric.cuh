// Conversions between float32 registers and the 16-bit / 8-bit storage types, by `cvt` (no CUDA headers).
#pragma once
#include "common/ptx.cuh"

namespace fa {

// Packs two floats into one 32-bit register of two 16-bit values, `lo` in the low half (the lower-indexed
// element, as wgmma's register fragments and memory order expect). cvt's first source goes to the upper half.
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<bf16_t>(float lo, float hi) {
  uint32_t r; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
template <> __device__ __forceinline__ uint32_t pack2<half_t>(float lo, float hi) {
  uint32_t r; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}

template <typename T> __device__ __forceinline__ float to_float(uint16_t bits);
template <> __device__ __forceinline__ float to_float<bf16_t>(uint16_t bits) { return bits_to_float((uint32_t)bits << 16); }
template <> __device__ __forceinline__ float to_float<half_t>(uint16_t bits) {
  float r; asm("{\n.reg .b16 h;\nmov.b16 h, %1;\ncvt.f32.f16 %0, h;\n}\n" : "=f"(r) : "h"(bits)); return r;
}

// Four floats to four E4M3 bytes (saturating, as FP8 kernels do), a in the lowest byte.
__device__ __forceinline__ uint32_t pack4_e4m3(float a, float b, float c, float d) {
  uint32_t r;
  asm("{\n.reg .b16 lo, hi;\n"
      "cvt.rn.satfinite.e4m3x2.f32 lo, %2, %1;\n"
      "cvt.rn.satfinite.e4m3x2.f32 hi, %4, %3;\n"
      "mov.b32 %0, {lo, hi};\n}\n"
      : "=r"(r) : "f"(a), "f"(b), "f"(c), "f"(d));
  return r;
}

}  // namespace fa

namespace fa {
// The two floats of a packed 16-bit pair (the inverse of pack2: `lo` from the low half).
template <typename T> __device__ __forceinline__ void unpack2(uint32_t v, float& lo, float& hi);
template <> __device__ __forceinline__ void unpack2<bf16_t>(uint32_t v, float& lo, float& hi) {
  lo = bits_to_float(v << 16);
  hi = bits_to_float(v & 0xFFFF0000u);
}
template <> __device__ __forceinline__ void unpack2<half_t>(uint32_t v, float& lo, float& hi) {
  asm("{\n.reg .b16 l, h;\nmov.b32 {l, h}, %2;\ncvt.f32.f16 %0, l;\ncvt.f32.f16 %1, h;\n}\n" : "=f"(lo), "=f"(hi) : "r"(v));
}

}  // namespace fa
