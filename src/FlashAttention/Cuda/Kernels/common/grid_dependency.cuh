// Programmatic dependent launch (sm_90): a grid launched with it may start while the grid before it in the stream is
// finishing, so its launch and prologue hide under that grid's tail. Both instructions are no-ops for a grid launched
// without it.
#pragma once
#include "common/ptx.cuh"

namespace fa {

// Blocks until every grid this one depends on has completed and its memory operations are visible: a kernel calls it
// before it touches memory that earlier work in the stream writes or reads.
__device__ __forceinline__ void wait_prior_grids() { asm volatile("griddepcontrol.wait;" ::: "memory"); }

// Lets the next grid in the stream begin launching once every CTA of this one has said so (or exited).
__device__ __forceinline__ void allow_dependents() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

}  // namespace fa
