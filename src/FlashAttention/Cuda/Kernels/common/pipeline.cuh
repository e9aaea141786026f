// A position in a ring of shared-memory stages filled by TMA and drained by the consumers (mbarrier phases).
#pragma once
#include "common/ptx.cuh"

namespace fa {

// Position in the K/V ring: block `count` lives in stage count % kStages; the phase parity flips every lap.
template <int kStages>
struct PipelineState {
  int count = 0;
  __device__ __forceinline__ int stage() const { return count % kStages; }
  __device__ __forceinline__ uint32_t phase() const { return (uint32_t)((count / kStages) & 1); }
};

}  // namespace fa
