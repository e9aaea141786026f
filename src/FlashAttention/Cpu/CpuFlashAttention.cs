namespace FlashAttention.Cpu;

// Placeholder so the skeleton compiles; the tiled SIMD engine replaces it.
internal static unsafe class CpuFlashAttention
{
    public static void Forward<T>(AttentionProblem p, T* q, T* k, T* v, T* o, float* lse) where T : unmanaged
        => throw new NotImplementedException();

    public static void Backward<T>(AttentionProblem p, T* q, T* k, T* v, T* o, T* dO, float* lse, T* dq, T* dk, T* dv) where T : unmanaged
        => throw new NotImplementedException();
}
