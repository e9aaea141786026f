// The FP8 forward's second parameter block (the first is FwdParams): where the descales live and how many tokens each
// covers. Mirrored field for field by Fp8Params in Cuda/Launchers/KernelParams.cs (explicit offsets).
#pragma once
#include "common/ptx.cuh"

namespace fa {

struct Fp8Params {
  const float* q_descale;  // 0: (batch, heads_q, q_blocks) float32: the value of an E4M3 code is code · descale
  const float* k_descale;  // 8: (batch, heads_k, kv_blocks)
  const float* v_descale;  // 16: (batch, heads_k, kv_blocks)
  int q_blocks;            // 24: blocks per (batch, head) of Q
  int kv_blocks;           // 28: blocks per (batch, head) of K and V
  int q_block;             // 32: tokens per Q block, a multiple of 64
  int kv_block;            // 36: tokens per K/V block, a multiple of the kernel's key block
};                         // 40 bytes

}  // namespace fa
