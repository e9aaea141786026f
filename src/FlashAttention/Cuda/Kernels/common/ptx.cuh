// Small named wrappers of the Hopper PTX our kernels use: shared-memory addresses, mbarriers, TMA (bulk
// tensor copies), named barriers, setmaxnreg, wgmma ordering, warp shuffles and fast math. No CUDA header is
// included anywhere: the library runs where only the driver and NVRTC exist. The PTX ISA is the source of each
// wrapper's semantics; the layouts they build are proved by the lab's probe kernels (probes/primitives.cu) on
// every `flashattn verify --device cuda`.
#pragma once

namespace fa {

// Our own fixed-width names, inside the namespace: no standard header is available to NVRTC here, and a
// global typedef could collide with one the compiler might predefine.
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
typedef long long int64_t;

// Element tags: storage is raw bits; arithmetic happens in float32 registers.
struct bf16_t { uint16_t bits; };
struct half_t { uint16_t bits; };
struct e4m3_t { uint8_t bits; };

// An opaque CUtensorMap (128 bytes, 64-byte aligned) built on the host by cuTensorMapEncodeTiled and passed
// by value as a __grid_constant__ kernel parameter.
struct alignas(64) TmaMap { uint64_t opaque[16]; };
// Vector load/store units (no CUDA header provides uint2/uint4 here).
struct alignas(8) uint2_t { uint32_t x, y; };
struct alignas(16) uint4_t { uint32_t x, y, z, w; };

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  uint32_t r;
  asm volatile("{\n.reg .u64 t;\ncvta.to.shared.u64 t, %1;\ncvt.u32.u64 %0, t;\n}\n" : "=r"(r) : "l"(p));
  return r;
}

// The dynamic shared memory rounded up to the 1024-byte alignment that 128-byte-swizzled tiles need (launchers add
// 1024 bytes of slack): as a shared-window address, and as a pointer the compiler knows to be shared.
__device__ __forceinline__ uint32_t smem_aligned_1024(const uint8_t* raw) { return (smem_u32(raw) + 1023u) & ~1023u; }
__device__ __forceinline__ uint8_t* smem_aligned_1024_ptr(uint8_t* raw) { return raw + (smem_aligned_1024(raw) - smem_u32(raw)); }

__device__ __forceinline__ uint32_t lane_id() { uint32_t r; asm volatile("mov.u32 %0, %%laneid;" : "=r"(r)); return r; }

// ---- mbarrier -------------------------------------------------------------------------------------------
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
// Makes barrier initialisation visible to the async proxy (TMA) before first use.
__device__ __forceinline__ void fence_barrier_init() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
// True once the phase with the given parity has completed.
__device__ __forceinline__ bool mbar_try_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done) : "r"(bar), "r"(parity) : "memory");
  return done != 0;
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  while (!mbar_try_wait(bar, parity)) {}
}

// ---- TMA ------------------------------------------------------------------------------------------------
__device__ __forceinline__ void tma_prefetch(const TmaMap* map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}
// Loads the box at coordinates (c0 innermost … c3) into shared memory; completion adds bytes to `bar`.
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const TmaMap* map, uint32_t bar, int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];"
      ::"r"(dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar) : "memory");
}
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const TmaMap* map, uint32_t bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
      ::"r"(dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar) : "memory");
}
// Stores a box from shared memory; elements outside the tensor are skipped by the copy engine.
__device__ __forceinline__ void tma_store_4d(const TmaMap* map, uint32_t src, int c0, int c1, int c2, int c3) {
  asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];"
               ::"l"(reinterpret_cast<uint64_t>(map)), "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3) : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
// Waits until the committed bulk stores have finished READING shared memory (it may be reused then).
__device__ __forceinline__ void bulk_wait_read_all() { asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory"); }
// Waits until the committed bulk stores are complete (visible in global memory).
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;" ::: "memory"); }
// Ordinary shared-memory stores must be fenced before the async proxy (TMA store, wgmma) reads them.
__device__ __forceinline__ void fence_proxy_async_smem() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// ---- barriers and registers -----------------------------------------------------------------------------
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(uint32_t id, uint32_t threads) {
  asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void block_sync() { asm volatile("bar.sync 0;" ::: "memory"); }
template <int N> __device__ __forceinline__ void setmaxnreg_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(N)); }
template <int N> __device__ __forceinline__ void setmaxnreg_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(N)); }

// ---- wgmma ordering -------------------------------------------------------------------------------------
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }
// Keeps the compiler from moving reads/writes of accumulator registers across an in-flight wgmma.
template <int N> __device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N> __device__ __forceinline__ void fence_regs(uint32_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// Shared-memory matrix descriptor with 128-byte swizzle (bits 62-63 = 1). Tiles start 1024-byte aligned so
// the base-offset field stays 0; k-steps inside a swizzle atom advance only the start address.
__device__ __forceinline__ uint64_t smem_desc_sw128(uint32_t addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  uint64_t d = 0;
  d |= (uint64_t)((addr & 0x3FFFF) >> 4);
  d |= (uint64_t)((lbo_bytes >> 4) & 0x3FFF) << 16;
  d |= (uint64_t)((sbo_bytes >> 4) & 0x3FFF) << 32;
  d |= (uint64_t)1 << 62;
  return d;
}

// ---- warp shuffles and math -----------------------------------------------------------------------------
__device__ __forceinline__ float shfl_xor(float v, int mask) {
  float r;
  asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(mask));
  return r;
}
__device__ __forceinline__ float fast_exp2(float x) { float r; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
__device__ __forceinline__ float fast_log2(float x) { float r; asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
__device__ __forceinline__ float fast_tanh(float x) { float r; asm("tanh.approx.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
// One FMNMX (a ? : select would be a compare and a select: the C++ form must keep NaN semantics the hardware
// max does not have).
__device__ __forceinline__ float fabs_(float a) { float r; asm("abs.f32 %0, %1;" : "=f"(r) : "f"(a)); return r; }
__device__ __forceinline__ bool is_finite_(float a) {
  uint32_t r; asm("{\n.reg .pred p;\ntestp.finite.f32 p, %1;\nselp.u32 %0, 1, 0, p;\n}" : "=r"(r) : "f"(a)); return r != 0;
}
// Bit i set where lane i's predicate holds (all 32 lanes take part).
__device__ __forceinline__ unsigned __ballot_sync_(bool v) {
  unsigned r; asm volatile("{\n.reg .pred p;\nsetp.ne.u32 p, %1, 0;\nvote.sync.ballot.b32 %0, p, 0xffffffff;\n}" : "=r"(r) : "r"((unsigned)v)); return r;
}
// The larger of two floats, NaN if either is NaN (max.f32 would drop it).
__device__ __forceinline__ float fmax_nan(float a, float b) { float r; asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); return r; }
__device__ __forceinline__ float fmax_(float a, float b) { float r; asm("max.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); return r; }

__device__ __forceinline__ float bits_to_float(uint32_t b) { float r; asm("mov.b32 %0, %1;" : "=f"(r) : "r"(b)); return r; }
__device__ __forceinline__ uint32_t float_bits(float f) { uint32_t r; asm("mov.b32 %0, %1;" : "=r"(r) : "f"(f)); return r; }
__device__ __forceinline__ float neg_inf() { return bits_to_float(0xFF800000u); }
__device__ __forceinline__ float fmaf_(float a, float b, float c) { float r; asm("fma.rn.f32 %0, %1, %2, %3;" : "=f"(r) : "f"(a), "f"(b), "f"(c)); return r; }
// 2^x on the FMA pipe, for the exponentials the special-function unit cannot keep up with: x rounded to an integer n by
// the 1.5·2^23 trick, 2^(x − n) on [−1/2, 1/2] by a cubic (relative error 8e-5, under E4M3's and float32-sum needs),
// n added to the exponent field. −∞ (and anything below 2^−126) gives 0, NaN stays NaN.
__device__ __forceinline__ float exp2_poly(float x) {
  const float shifter = 12582912.f;
  const float t = x + shifter;
  const float f = x - (t - shifter);
  const float p = fmaf_(fmaf_(fmaf_(0.0550886838f, f, 0.242604051f), f, 0.693276242f), f, 0.999928940f);
  int pi, ti, si;
  asm("mov.b32 %0, %1;" : "=r"(pi) : "f"(p));
  asm("mov.b32 %0, %1;" : "=r"(ti) : "f"(t));
  asm("mov.b32 %0, %1;" : "=r"(si) : "f"(shifter));
  const float r = bits_to_float((uint32_t)(pi + ((ti - si) << 23)));
  return x != x ? x : (x < -126.f ? 0.f : r);
}

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

}  // namespace fa

namespace fa {
// Non-tensor bulk copy global -> shared (size a multiple of 16 bytes, both addresses 16-byte aligned).
__device__ __forceinline__ void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
               ::"r"(dst), "l"(reinterpret_cast<uint64_t>(src)), "r"(bytes), "r"(bar) : "memory");
}
// Fire-and-forget float add to global memory.
__device__ __forceinline__ void red_add(float* address, float value) {
  asm volatile("red.global.add.f32 [%0], %1;" ::"l"(reinterpret_cast<uint64_t>(address)), "f"(value) : "memory");
}
// Four adjacent floats (16-byte aligned) added with one vector reduction (sm_90).
__device__ __forceinline__ void red_add4(float* address, float a, float b, float c, float d) {
  asm volatile("red.global.v4.f32.add [%0], {%1, %2, %3, %4};" ::"l"(reinterpret_cast<uint64_t>(address)), "f"(a), "f"(b),
               "f"(c), "f"(d) : "memory");
}
// Adds `bytes` floats' worth of shared memory into global memory element-wise (sm_90 bulk reduction; size a multiple
// of 16, both addresses 16-byte aligned), tracked by the bulk async-group of the issuing thread.
__device__ __forceinline__ void bulk_reduce_add_f32(float* dst, uint32_t src, uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;"
               ::"l"(reinterpret_cast<uint64_t>(dst)), "r"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void st_shared_v4_f32(uint32_t address, float a, float b, float c, float d) {
  asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};" ::"r"(address), "f"(a), "f"(b), "f"(c), "f"(d) : "memory");
}
__device__ __forceinline__ void ld_shared_v2_f32(uint32_t address, float& a, float& b) {
  asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];" : "=f"(a), "=f"(b) : "r"(address));
}
// Four 8x8 matrices of 16-bit values loaded as pairs: register i gets this thread's pair of matrix i (row lane/4,
// columns 2·(lane%4) and +1); lanes 8i … 8i+7 give the addresses of matrix i's rows (16 bytes each).
__device__ __forceinline__ void ldmatrix_x4(uint32_t address, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(address) : "memory");
}
// Four 8x8 matrices of 16-bit pairs stored transposed: register i holds this thread's pair of matrix i (row lane/4,
// columns 2·(lane%4) and +1); lanes 8i … 8i+7 give the addresses of matrix i's stored rows (its columns).
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t address, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(address), "r"(r0), "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}
// A 16-byte copy global -> shared through the per-thread asynchronous path (cp.async): `valid` false writes 16 zero bytes
// and reads nothing. Tracked by the thread's own commit groups: cp_async_wait<N> leaves at most N groups in flight.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(reinterpret_cast<uint64_t>(src)), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }
__device__ __forceinline__ uint4_t ld_shared_v4_u32(uint32_t address) {
  uint4_t r;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "r"(address) : "memory");
  return r;
}
// Orders this thread's completed async-proxy (bulk) global writes before its later generic-proxy accesses.
__device__ __forceinline__ void fence_proxy_async_global() { asm volatile("fence.proxy.async.global;" ::: "memory"); }
__device__ __forceinline__ void fence_acq_rel_gpu() { asm volatile("fence.acq_rel.gpu;" ::: "memory"); }
__device__ __forceinline__ int ld_acquire_gpu(const int* p) {
  int r; asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(r) : "l"(reinterpret_cast<uint64_t>(p)) : "memory"); return r;
}
__device__ __forceinline__ void st_release_gpu(int* p, int v) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;" ::"l"(reinterpret_cast<uint64_t>(p)), "r"(v) : "memory");
}
__device__ __forceinline__ float pos_inf() { return bits_to_float(0x7F800000u); }
// Relaxed atomic add at GPU scope, returning the old value (the dynamic tile scheduler's counter).
__device__ __forceinline__ int atom_add_gpu(int* p, int v) {
  int r; asm volatile("atom.relaxed.gpu.global.add.s32 %0, [%1], %2;" : "=r"(r) : "l"(reinterpret_cast<uint64_t>(p)), "r"(v) : "memory"); return r;
}
__device__ __forceinline__ void st_relaxed_gpu(int* p, int v) {
  asm volatile("st.relaxed.gpu.global.b32 [%0], %1;" ::"l"(reinterpret_cast<uint64_t>(p)), "r"(v) : "memory");
}
__device__ __forceinline__ void st_shared_s32(uint32_t address, int v) { asm volatile("st.shared.b32 [%0], %1;" ::"r"(address), "r"(v) : "memory"); }
__device__ __forceinline__ int ld_shared_s32(uint32_t address) {
  int r; asm volatile("ld.shared.b32 %0, [%1];" : "=r"(r) : "r"(address) : "memory"); return r;
}
// Lane 0's value in every lane. Besides broadcasting, it tells ptxas the value is warp-uniform, so what is computed
// from it can live in uniform registers: a tile index loaded from shared memory would otherwise move the key-block
// loop's bounds, stage arithmetic and wgmma descriptors to per-thread registers (an R2UR before every wgmma).
__device__ __forceinline__ int warp_uniform(int v) {
  int r; asm volatile("shfl.sync.idx.b32 %0, %1, 0, 0x1f, 0xffffffff;" : "=r"(r) : "r"(v)); return r;
}

// The same value, but one the compiler cannot see through: what is computed from it stays after this point. Used
// where ptxas would otherwise hoist per-thread address arithmetic out of a loop and keep it live (or spilled) across it.
__device__ __forceinline__ int opaque(int v) {
  asm volatile("" : "+r"(v));
  return v;
}
}  // namespace fa
