// Before a variable-length launch, one CTA reads the device-resident offsets: on request it checks them against the
// contract (the first violation goes to an error word the host reads), and for the forward it writes the tile order
// (fwd/fwd_varlen.cuh): sequences sorted by query blocks, most first (a counting sort), and each one's first tile.
// Name expression (Cuda/Launchers/KernelCatalog.cs): fa::varlen_prepare_kernel.
#include "common/ptx.cuh"
#include "varlen/varlen_bounds.cuh"
#include "varlen/varlen_params.cuh"

namespace fa {

__device__ __forceinline__ void record_varlen_error(int* error, int code, int sequence, int entry, int value) {
  int prior;
  asm volatile("atom.relaxed.gpu.global.cas.b32 %0, [%1], 0, %2;" : "=r"(prior) : "l"(reinterpret_cast<uint64_t>(error)), "r"(code) : "memory");
  if (prior == 0) {
    error[1] = sequence;
    error[2] = entry;
    error[3] = value;
  }
}

__device__ __forceinline__ void check_offsets(const VarlenPrepareParams& p, const int* cu, int total, int first_not_zero,
                                              int decreasing, int past_total) {
  for (int i = threadIdx.x; i <= p.batch; i += blockDim.x) {
    const int v = cu[i];
    if (i == 0 && v != 0) record_varlen_error(p.error, first_not_zero, 0, 0, v);
    if (i > 0 && v < cu[i - 1]) record_varlen_error(p.error, decreasing, i - 1, i, v);
    if (v > total) record_varlen_error(p.error, past_total, i == 0 ? 0 : i - 1, i, v);
  }
}

__device__ __forceinline__ void check_lengths(const VarlenPrepareParams& p) {
  for (int b = threadIdx.x; b < p.batch; b += blockDim.x) {
    const int len_q = p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b], len_k = p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b];
    if (len_q > p.max_seqlen_q) record_varlen_error(p.error, kQLongerThanMax, b, b, len_q);
    int keys = len_k;
    if (p.seqused_k != nullptr) {
      keys = p.seqused_k[b];
      if (keys < 0 || keys > len_k) record_varlen_error(p.error, kUsedOutOfRange, b, b, keys);
    }
    if (keys > p.max_seqlen_k) record_varlen_error(p.error, kKLongerThanMax, b, b, keys);
  }
}

__device__ __forceinline__ int shfl_up_s32(int v, int delta) {
  int r;
  asm volatile("shfl.sync.up.b32 %0, %1, %2, 0, 0xffffffff;" : "=r"(r) : "r"(v), "r"(delta));
  return r;
}

// Exclusive prefix sum over the CTA's threads (blockDim.x a multiple of 32, at most 1024); *total gets the sum.
__device__ __forceinline__ int block_exclusive_scan(int v, int* warp_sums, int* total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  int inclusive = v;
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const int up = shfl_up_s32(inclusive, d);
    if (lane >= d) inclusive += up;
  }
  if (lane == 31) warp_sums[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    int w = lane < warps ? warp_sums[lane] : 0, wi = w;
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const int up = shfl_up_s32(wi, d);
      if (lane >= d) wi += up;
    }
    if (lane < warps) warp_sums[lane] = wi - w;  // exclusive over warps
    if (lane == warps - 1) *total = wi;
  }
  __syncthreads();
  const int result = warp_sums[warp] + inclusive - v;
  __syncthreads();  // warp_sums and *total are read before the next call writes them
  return result;
}

constexpr int kPrepareThreads = 1024;
constexpr int kSortBins = 4096;  // query-block counts up to 4095 (sequences up to 524k rows at 128 per tile) are sorted

__global__ void __launch_bounds__(kPrepareThreads) varlen_prepare_kernel(const __grid_constant__ VarlenPrepareParams p) {
  __shared__ int bins[kSortBins];
  __shared__ int warp_sums[32];
  __shared__ int scan_total;
  if (p.error != nullptr) {
    check_offsets(p, p.cu_seqlens_q, p.total_q, kQFirstNotZero, kQDecreasing, kQPastTotal);
    check_offsets(p, p.cu_seqlens_k, p.total_k, kKFirstNotZero, kKDecreasing, kKPastTotal);
    check_lengths(p);
  }
  if (p.tile_order == nullptr) return;

  // Query blocks per sequence, as the kernels will see the sequence (clamped offsets), at most the longest's.
  const int max_blocks = (p.max_seqlen_q + p.block_m - 1) / p.block_m;
  auto blocks_of = [&](int b) {
    const SeqBounds s = varlen_bounds(p.cu_seqlens_q, p.cu_seqlens_k, p.seqused_k, b, p.total_q, p.total_k);
    const int n = (s.seqlen_q + p.block_m - 1) / p.block_m;
    return n < max_blocks ? n : max_blocks;
  };
  if (max_blocks < kSortBins) {
    for (int i = threadIdx.x; i <= max_blocks; i += blockDim.x) bins[i] = 0;
    __syncthreads();
    for (int b = threadIdx.x; b < p.batch; b += blockDim.x) atomicAdd(&bins[max_blocks - blocks_of(b)], 1);
    __syncthreads();
    // Each thread's run of bins, scanned in turn: bin i's first position in the order.
    const int per = (max_blocks + 1 + blockDim.x - 1) / blockDim.x, lo = threadIdx.x * per;
    int run = 0;
    for (int i = lo; i < lo + per && i <= max_blocks; ++i) run += bins[i];
    int offset = block_exclusive_scan(run, warp_sums, &scan_total);
    for (int i = lo; i < lo + per && i <= max_blocks; ++i) {
      const int n = bins[i];
      bins[i] = offset;
      offset += n;
    }
    __syncthreads();
    for (int b = threadIdx.x; b < p.batch; b += blockDim.x) p.tile_order[atomicAdd(&bins[max_blocks - blocks_of(b)], 1)] = b;
  } else {
    for (int b = threadIdx.x; b < p.batch; b += blockDim.x) p.tile_order[b] = b;
  }
  __syncthreads();  // the order, written by every thread, is read below by others (global memory, one CTA)

  int carry = 0;
  for (int base = 0; base < p.batch; base += blockDim.x) {
    const int i = base + threadIdx.x;
    const int tiles = i < p.batch ? blocks_of(p.tile_order[i]) * p.heads : 0;
    const int before = block_exclusive_scan(tiles, warp_sums, &scan_total);
    if (i < p.batch) p.tile_start[i] = carry + before;
    carry += scan_total;
  }
  if (threadIdx.x == 0) p.tile_start[p.batch] = carry;
}

}  // namespace fa
