// Parameters of the context-parallel row kernels (cp/cp_rows.cu). Mirrored by CpRowsParams in
// Cuda/ContextParallel/CpRowsParams.cs; the host offsets every pointer to the first row it covers.
#pragma once
#include "common/ptx.cuh"

namespace fa {

// Rows of (batch, rows, heads, head_dim) tensors, head_dim contiguous, other strides in elements. The LSE pointers
// (batch, heads, rows) float32 are used by the merge (both) and by the copy (optional, null for none).
struct CpRowsParams {
  int batch;                   // 0
  int rows;                    // 4
  int heads;                   // 8
  int reserved;                // 12
  const void* src;             // 16
  int64_t src_stride_b;        // 24
  int64_t src_stride_s;        // 32
  int64_t src_stride_h;        // 40
  void* dst;                   // 48
  int64_t dst_stride_b;        // 56
  int64_t dst_stride_s;        // 64
  int64_t dst_stride_h;        // 72
  const float* src_lse;        // 80
  int64_t src_lse_stride_b;    // 88
  int64_t src_lse_stride_h;    // 96
  int64_t src_lse_stride_s;    // 104
  float* dst_lse;              // 112
  int64_t dst_lse_stride_b;    // 120
  int64_t dst_lse_stride_h;    // 128
  int64_t dst_lse_stride_s;    // 136
};                             // 144 bytes

constexpr int kCpRowsPerBlock = 4;  // one warp per (batch, row, head)

}  // namespace fa
