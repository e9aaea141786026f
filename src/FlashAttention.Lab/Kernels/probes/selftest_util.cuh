// Helpers for selftest.cu. Header-free on purpose: like every kernel source of the library it includes no CUDA
// toolkit header, so it compiles where only the driver and NVRTC exist. Compiled with
// --device-as-default-execution-space, so plain functions here are device functions.
#pragma once

namespace fa_selftest {

// Global index of the calling thread in a one-dimensional grid.
inline unsigned int global_thread_index() { return blockIdx.x * blockDim.x + threadIdx.x; }

// a*x + y, spelled out per type so the test also exercises template specialisation through name expressions.
template <typename T> inline T axpy_value(T a, T x, T y) { return a * x + y; }

// Reads a special register of the thread-block cluster (sm_90): this block's rank within its cluster.
__device__ inline unsigned int cluster_block_rank() {
    unsigned int rank;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
    return rank;
}

// Number of blocks in this block's cluster.
__device__ inline unsigned int cluster_block_count() {
    unsigned int count;
    asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(count));
    return count;
}

} // namespace fa_selftest
