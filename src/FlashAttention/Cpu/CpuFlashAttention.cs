namespace FlashAttention.Cpu;

// Placeholder so the skeleton compiles; the tiled SIMD engine replaces it.
internal static unsafe class CpuFlashAttention
{
    public static void Forward<T>(AttentionProblem p, T* q, T* k, T* v, T* o, float* lse) where T : unmanaged
        => Forward<T, NoRounding>(p, q, k, v, o, lse);

    /// <summary>Forward with P rounded by <typeparamref name="TRound"/> before P·V (see <see cref="IProbabilityRounding"/>).</summary>
    public static void Forward<T, TRound>(AttentionProblem p, T* q, T* k, T* v, T* o, float* lse)
        where T : unmanaged where TRound : struct, IProbabilityRounding
        => throw new NotImplementedException();

    public static void Backward<T>(AttentionProblem p, T* q, T* k, T* v, T* o, T* dO, float* lse, T* dq, T* dk, T* dv) where T : unmanaged
        => throw new NotImplementedException();
}
