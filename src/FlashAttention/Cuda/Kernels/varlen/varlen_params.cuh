// The parameters of the variable-length batches' prepare kernel (varlen_prepare.cu), mirrored field for field by
// VarlenPrepareParams in Cuda/Launchers/KernelParams.cs (explicit offsets): change both together.
#pragma once
#include "common/ptx.cuh"

namespace fa {

struct VarlenPrepareParams {
  const int* cu_seqlens_q;  // 0
  const int* cu_seqlens_k;  // 8
  const int* seqused_k;     // 16: may be null
  int* tile_order;          // 24: null = no tile order (the backward)
  int* tile_start;          // 32
  int* error;               // 40: null = no check; else {code, sequence, entry, value}, zero on entry
  int batch;                // 48
  int total_q;              // 52
  int total_k;              // 56
  int max_seqlen_q;         // 60
  int max_seqlen_k;         // 64
  int block_m;              // 68: query rows per tile
  int heads;                // 72: query heads (tiles per query block)
  int reserved;             // 76
};                          // 80 bytes

// Contract violations, decoded by FlashVarlen.DescribeViolation.
enum VarlenError : int {
  kQFirstNotZero = 1, kQDecreasing = 2, kQPastTotal = 3, kKFirstNotZero = 4, kKDecreasing = 5, kKPastTotal = 6,
  kQLongerThanMax = 7, kKLongerThanMax = 8, kUsedOutOfRange = 9,
};

}  // namespace fa
