// Smoke-test kernels for the host layer (driver, NVRTC, cache, launches). Not used by attention itself.
// Each kernel checks one piece of the C# side:
//   axpy<T>                  templates through name expressions, pointer/scalar arguments, result copies;
//   copy_param_blob          a 128-byte, 64-byte-aligned by-value argument (the shape of a TMA descriptor);
//   reverse_in_shared        dynamic shared memory above 48 KB (the opt-in attribute);
//   report_cluster_rank      cluster launches through cuLaunchKernelEx.
#include "probes/selftest_util.cuh"

template <typename T>
__global__ void axpy(T a, const T* __restrict__ x, T* __restrict__ y, int n) {
    unsigned int i = fa_selftest::global_thread_index();
    if (i < (unsigned int)n) y[i] = fa_selftest::axpy_value(a, x[i], y[i]);
}

// Same size and alignment as CUtensorMap: 128 bytes, 64-byte aligned.
struct alignas(64) ParamBlob {
    unsigned int words[32];
};

// out[0..31] = blob.words, out[32] = tail: shows both the blob and the argument after it arrived intact.
__global__ void copy_param_blob(const __grid_constant__ ParamBlob blob, unsigned int tail, unsigned int* out) {
    unsigned int i = threadIdx.x;
    if (i < 32) out[i] = blob.words[i];
    if (i == 0) out[32] = tail;
}

// One block: stages n floats in dynamic shared memory and writes them back reversed.
__global__ void reverse_in_shared(const float* __restrict__ in, float* __restrict__ out, int n) {
    extern __shared__ float staged[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) staged[i] = in[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = staged[n - 1 - i];
}

// Thread 0 of each block writes (rank in cluster, blocks per cluster).
__global__ void report_cluster_rank(unsigned int* out) {
    if (threadIdx.x == 0) {
        out[2 * blockIdx.x] = fa_selftest::cluster_block_rank();
        out[2 * blockIdx.x + 1] = fa_selftest::cluster_block_count();
    }
}
