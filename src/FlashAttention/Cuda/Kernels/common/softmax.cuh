// Online softmax over one warpgroup's wgmma accumulator fragment (m64 x N, f32). Each thread holds two rows
// (r and r + 8) and, per 8-column group j, the values s[4j], s[4j+1] (row r) and s[4j+2], s[4j+3] (row r+8);
// the four threads of a quad hold the rest of the two rows, so row reductions are two xor-shuffles.
// Exponentials are base 2 with the scale folded into one FFMA: p = 2^(s * c - m * c), c = scale * log2(e).
#pragma once
#include "common/ptx.cuh"

namespace fa {

template <int kValues>  // floats per thread = N / 2
struct OnlineSoftmax {
  float row_max[2];
  float row_sum[2];  // this thread's partial sums; the quad reduction happens once, in finalize

  __device__ __forceinline__ void reset() {
    row_max[0] = row_max[1] = neg_inf();
    row_sum[0] = row_sum[1] = 0.f;
  }

  // Folds scores s into the running max/sum, turns s into unnormalised probabilities in place, and returns
  // in `rescale` the factor by which the output accumulator's rows must be multiplied.
  __device__ __forceinline__ void step(float (&s)[kValues], float scale_log2, float (&rescale)[2]) {
    // One chain of max per row: ptxas may reassociate max (it is exact), so partial maxima would buy nothing.
    float m[2] = {row_max[0], row_max[1]};
#pragma unroll
    for (int j = 0; j < kValues / 4; ++j) {
      m[0] = fmax_(m[0], fmax_(s[4 * j], s[4 * j + 1]));
      m[1] = fmax_(m[1], fmax_(s[4 * j + 2], s[4 * j + 3]));
    }
    float m_scaled[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      m[h] = fmax_(m[h], shfl_xor(m[h], 1));
      m[h] = fmax_(m[h], shfl_xor(m[h], 2));
      // A row with no visible key so far keeps max -inf; use 0 so that -inf - max stays -inf, not NaN.
      float m_used = m[h] == neg_inf() ? 0.f : m[h];
      rescale[h] = fast_exp2((row_max[h] - m_used) * scale_log2);
      row_sum[h] *= rescale[h];
      row_max[h] = m[h];
      m_scaled[h] = m_used * scale_log2;
    }
#pragma unroll
    for (int j = 0; j < kValues / 4; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int h = e >> 1;
        float p = fast_exp2(s[4 * j + e] * scale_log2 - m_scaled[h]);
        s[4 * j + e] = p;
        row_sum[h] += p;
      }
    }
  }

  // Completes the row sums across the quad; returns 1/sum per row (0 for an empty row) and the natural-log
  // log-sum-exp (-inf for an empty row). score_scale is the multiplier of the score in the exponent.
  __device__ __forceinline__ void finalize(float score_scale, float (&inv_sum)[2], float (&lse)[2]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float sum = row_sum[h];
      sum += shfl_xor(sum, 1);
      sum += shfl_xor(sum, 2);
      bool empty = !(sum > 0.f);
      inv_sum[h] = empty ? 0.f : 1.f / sum;
      lse[h] = empty ? neg_inf() : row_max[h] * score_scale + fast_log2(sum) * kLn2;
    }
  }
};

// The online softmax with a multiplier per key block (FP8: the descales of Q and of the block's keys scale the raw
// scores) and probabilities scaled by 2^kShift. The running max is kept in the exponent's units (log2, scaled), so
// blocks with different multipliers compare; out_scale multiplies 1/rowsum at the end (V's last descale). With
// kPolyEvery = k > 0, column group j takes its exponentials from exp2_poly when j % k == k − 1 (the rest from ex2).
template <int kValues, int kShift, int kPolyEvery = 0>
struct ScaledOnlineSoftmax {
  float row_max[2];  // max of s·c over the keys seen, log2 units; -inf before any visible key
  float row_sum[2];  // this thread's partial sums of 2^(s·c − max + kShift)
  float out_scale;

  __device__ __forceinline__ void reset() {
    row_max[0] = row_max[1] = neg_inf();
    row_sum[0] = row_sum[1] = 0.f;
    out_scale = 1.f;
  }

  // Turns raw scores s of one block into scaled probabilities in place; c > 0 is the block's exponent multiplier.
  // Returns in `rescale` the factor for the output accumulator's rows.
  __device__ __forceinline__ void step(float (&s)[kValues], float c, float (&rescale)[2]) {
    float m[2] = {neg_inf(), neg_inf()};
#pragma unroll
    for (int j = 0; j < kValues / 4; ++j) {
      m[0] = fmax_(m[0], fmax_(s[4 * j], s[4 * j + 1]));
      m[1] = fmax_(m[1], fmax_(s[4 * j + 2], s[4 * j + 3]));
    }
    float bias[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      m[h] = fmax_(m[h], shfl_xor(m[h], 1));
      m[h] = fmax_(m[h], shfl_xor(m[h], 2));
      const float block_max = fmax_(row_max[h], m[h] * c);
      // A row with no visible key so far keeps max -inf; 0 in its place keeps -inf - max at -inf, not NaN.
      const float used = block_max == neg_inf() ? 0.f : block_max;
      rescale[h] = fast_exp2(row_max[h] - used);
      row_sum[h] *= rescale[h];
      row_max[h] = block_max;
      bias[h] = used - (float)kShift;
    }
#pragma unroll
    for (int j = 0; j < kValues / 4; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e >> 1;
        const float x = s[4 * j + e] * c - bias[h];
        const float p = kPolyEvery > 0 && j % kPolyEvery == kPolyEvery - 1 ? exp2_poly(x) : fast_exp2(x);
        s[4 * j + e] = p;
        row_sum[h] += p;
      }
    }
  }

  // 1/rowsum times out_scale per row (0 for an empty row) and the natural-log log-sum-exp (-inf for an empty row).
  __device__ __forceinline__ void finalize(float /*score_scale: already in the exponents*/, float (&inv_sum)[2], float (&lse)[2]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float sum = row_sum[h];
      sum += shfl_xor(sum, 1);
      sum += shfl_xor(sum, 2);
      const bool empty = !(sum > 0.f);
      inv_sum[h] = empty ? 0.f : out_scale / sum;
      lse[h] = empty ? neg_inf() : (row_max[h] - (float)kShift + fast_log2(sum)) * kLn2;
    }
  }
};

template <int kValues>
__device__ __forceinline__ void scale_rows(float (&acc)[kValues], const float (&factor)[2]) {
#pragma unroll
  for (int j = 0; j < kValues / 4; ++j) {
    acc[4 * j] *= factor[0];
    acc[4 * j + 1] *= factor[0];
    acc[4 * j + 2] *= factor[1];
    acc[4 * j + 3] *= factor[1];
  }
}

}  // namespace fa
