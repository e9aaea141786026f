// The decode kernel's epilogue: O normalised by the row sums and the natural-log LSE, written row by row from the
// accumulator fragment to each packed row's (query position, query head): straight into O and LSE when the key range
// is not split, else as float32 parts (one per split) that the last split to finish merges (decode_combine.cuh).
#pragma once
#include "decode/decode_config.cuh"
#include "decode/decode_mainloop.cuh"
#include "decode/decode_params.cuh"
#include "common/combine.cuh"
#include "common/numeric.cuh"
#include "common/softmax.cuh"

namespace fa {

template <class Cfg>
__device__ __forceinline__ void decode_epilogue(const DecodeParams& p, const DecodeUnit& u, const DecodeRows& rows, int thread,
                                                float (&o)[Cfg::kHeadDim / 2], OnlineSoftmax<Cfg::kBlockN / 2>& softmax) {
  float inv_sum[2], lse[2];
  softmax.finalize(p.score_scale, inv_sum, lse);
  scale_rows(o, inv_sum);
  const int col = 2 * (thread % 4);
  const bool writes_lse = thread % 4 == 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!rows.live[h]) continue;
    if (p.num_splits == 1) {
      uint16_t* out = reinterpret_cast<uint16_t*>(p.o) + u.batch * p.o_stride_b + rows.query[h] * p.o_stride_s + rows.head[h] * p.o_stride_h;
#pragma unroll
      for (int j = 0; j < Cfg::kHeadDim / 8; ++j)
        *reinterpret_cast<uint32_t*>(out + 8 * j + col) = pack2<typename Cfg::Element>(o[4 * j + 2 * h], o[4 * j + 2 * h + 1]);
      if (p.lse != nullptr && writes_lse)
        p.lse[u.batch * p.lse_stride_b + rows.head[h] * p.lse_stride_h + rows.query[h] * p.lse_stride_s] = lse[h];
    } else {
      // Parts in (split, row) order, rows in (batch, query, head) order: the merge's layout.
      const int64_t total_rows = (int64_t)p.batch * p.seqlen_q * p.heads_q;
      const int64_t part = u.split * total_rows + ((int64_t)u.batch * p.seqlen_q + rows.query[h]) * p.heads_q + rows.head[h];
      float* out = p.o_partial + part * Cfg::kHeadDim;
#pragma unroll
      for (int j = 0; j < Cfg::kHeadDim / 8; ++j)
        *reinterpret_cast<Float2*>(out + 8 * j + col) = Float2{o[4 * j + 2 * h], o[4 * j + 2 * h + 1]};
      if (writes_lse) p.lse_partial[part] = lse[h];
    }
  }
}

}  // namespace fa
