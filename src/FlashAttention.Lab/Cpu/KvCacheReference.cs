using System.Numerics.Tensors;

namespace FlashAttention.Lab.Cpu;

/// <summary>
/// The shape of a KV-cache attention call: the query, the cache (contiguous, or a pool of pages with a page table) and the
/// appended tokens, in FlashAttention's (batch, seqlen, heads, head_dim) layout, every tensor contiguous.
/// </summary>
/// <param name="PageSize">Tokens per page; 0 for a contiguous cache of <paramref name="Capacity"/> tokens per sequence.</param>
/// <param name="NumPages">Pages in the pool (paged).</param>
/// <param name="MaxPages">Page-table entries per sequence (paged).</param>
/// <param name="Capacity">Tokens per sequence of a contiguous cache.</param>
public sealed record KvCacheShape(int Batch, int SeqLenQ, int HeadsQ, int HeadsK, int HeadDim, int SeqLenNew,
    int PageSize = 0, int NumPages = 0, int MaxPages = 0, int Capacity = 0)
{
    public bool Paged => PageSize > 0;

    /// <summary>Tokens one sequence's cache holds.</summary>
    public int CacheCapacity => Paged ? MaxPages * PageSize : Capacity;

    public long[] QueryShape => [Batch, SeqLenQ, HeadsQ, HeadDim];
    public long[] CacheShape => Paged ? [NumPages, PageSize, HeadsK, HeadDim] : [Batch, Capacity, HeadsK, HeadDim];
    public long[] NewShape => [Batch, SeqLenNew, HeadsK, HeadDim];
    public long[] LseShape => [Batch, HeadsQ, SeqLenQ];
    public long[] PageTableShape => [Batch, MaxPages];

    /// <summary>Element offset of (token <paramref name="t"/> of sequence <paramref name="b"/>, KV head <paramref name="h"/>, dim 0) in the cache.</summary>
    public long CacheOffset(int[]? pageTable, int b, int t, int h)
        => Paged
            ? (((long)pageTable![b * MaxPages + t / PageSize] * PageSize + t % PageSize) * HeadsK + h) * HeadDim
            : (((long)b * Capacity + t) * HeadsK + h) * HeadDim;
}

/// <summary>
/// The CPU oracle of KV-cache attention: the append into a copy of the cache, then each sequence's keys gathered
/// through its page table and the attention of its queries over them, in float64 (<see cref="ReferenceAttention"/>) and
/// in plain same precision (<see cref="PlainAttention"/>, the tolerance rule's yardstick), as one variable-length batch
/// (sequence b's query rows sit at its last seqlen_q key positions: the bottom-right alignment).
/// </summary>
public static class KvCacheReference
{
    /// <summary>
    /// The caches after the append: token j of sequence b at position <c>cacheSeqLens[b] + j</c>, every head; the rest as given.
    /// </summary>
    public static (T[] Keys, T[] Values) Append<T>(KvCacheShape s, T[] keyCache, T[] valueCache, int[] cacheSeqLens, int[]? pageTable,
        T[]? newKeys, T[]? newValues) where T : unmanaged
    {
        var k = (T[])keyCache.Clone();
        var v = (T[])valueCache.Clone();
        if (newKeys is null || newValues is null) return (k, v);
        for (int b = 0; b < s.Batch; b++)
            for (int j = 0; j < s.SeqLenNew; j++)
                for (int h = 0; h < s.HeadsK; h++)
                {
                    long dst = s.CacheOffset(pageTable, b, cacheSeqLens[b] + j, h), src = (((long)b * s.SeqLenNew + j) * s.HeadsK + h) * s.HeadDim;
                    Array.Copy(newKeys, src, k, dst, s.HeadDim);
                    Array.Copy(newValues, src, v, dst, s.HeadDim);
                }
        return (k, v);
    }

    /// <summary>
    /// Attention of every sequence's queries over its <c>cacheSeqLens[b] + seqlen_new</c> keys, after the append; returns
    /// the float64 and plain results in the GPU call's order (O (batch, seqlen_q, heads_q, head_dim), LSE (batch, heads_q,
    /// seqlen_q)) and the caches after the append.
    /// </summary>
    public static (ReferenceForward Reference, PlainForward Plain, T[] KeyCache, T[] ValueCache) Forward<T>(KvCacheShape s, T[] query,
        T[] keyCache, T[] valueCache, int[] cacheSeqLens, int[]? pageTable, T[]? newKeys, T[]? newValues, AttentionOptions? options)
        where T : unmanaged
    {
        var (k, v) = Append(s, keyCache, valueCache, cacheSeqLens, pageTable, newKeys, newValues);
        var cuQ = new int[s.Batch + 1];
        var cuK = new int[s.Batch + 1];
        for (int b = 0; b < s.Batch; b++)
        {
            cuQ[b + 1] = cuQ[b] + s.SeqLenQ;
            cuK[b + 1] = cuK[b] + cacheSeqLens[b] + s.SeqLenNew;
        }
        long row = (long)s.HeadsK * s.HeadDim;
        var keys = new T[cuK[s.Batch] * row];
        var values = new T[keys.Length];
        for (int b = 0; b < s.Batch; b++)
            for (int t = 0; t < cuK[b + 1] - cuK[b]; t++)
                for (int h = 0; h < s.HeadsK; h++)
                {
                    long src = s.CacheOffset(pageTable, b, t, h), dst = (cuK[b] + t) * row + (long)h * s.HeadDim;
                    Array.Copy(k, src, keys, dst, s.HeadDim);
                    Array.Copy(v, src, values, dst, s.HeadDim);
                }
        nint[] qShape = [s.Batch * s.SeqLenQ, s.HeadsQ, s.HeadDim], kShape = [cuK[s.Batch], s.HeadsK, s.HeadDim];
        var q = new ReadOnlyTensorSpan<T>(query, qShape, []);
        var ks = new ReadOnlyTensorSpan<T>(keys, kShape, []);
        var vs = new ReadOnlyTensorSpan<T>(values, kShape, []);
        var reference = ReferenceAttention.ForwardVarlen(q, ks, vs, cuQ, cuK, options);
        var plain = PlainAttention.ForwardVarlen(q, ks, vs, cuQ, cuK, options);
        // The varlen LSE is (heads_q, total_q); the call's is (batch, heads_q, seqlen_q).
        var lse = new double[reference.LogSumExp.Length];
        var plainLse = new float[lse.Length];
        int total = s.Batch * s.SeqLenQ;
        for (int b = 0; b < s.Batch; b++)
            for (int h = 0; h < s.HeadsQ; h++)
                for (int i = 0; i < s.SeqLenQ; i++)
                {
                    lse[((long)b * s.HeadsQ + h) * s.SeqLenQ + i] = reference.LogSumExp[(long)h * total + b * s.SeqLenQ + i];
                    plainLse[((long)b * s.HeadsQ + h) * s.SeqLenQ + i] = plain.LogSumExp[(long)h * total + b * s.SeqLenQ + i];
                }
        return (reference with { LogSumExp = lse }, plain with { LogSumExp = plainLse }, k, v);
    }
}
