namespace FlashAttention;

/// <summary>
/// The one validation path: every public call, on every backend, passes its tensors and options through here
/// before anything runs, and nothing is written when a check fails. Messages name the argument, what was
/// expected and what was given.
/// </summary>
internal static partial class AttentionValidation
{
    /// <summary>Largest head dimension any backend accepts (FlashAttention's limit).</summary>
    public const int MaxHeadDim = 256;

    /// <summary>Dense forward: q (B,Sq,Hq,D), k/v (B,Sk,Hk,D), o like q, lse (B,Hq,Sq) float32 or absent.</summary>
    public static AttentionProblem Forward(in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        TensorLayout? lse, AttentionOptions? options)
    {
        var g = DenseGeometry(q, k, v);
        ExpectLike(o, q, "query");
        if (lse is { } l) ExpectLse(l, [g.Batch, g.HeadsQ, g.SeqQ], "(batch, heads_q, seqlen_q)");
        ExpectOutputs([q, k, v], lse is { } l2 ? [o, l2] : [o]);
        return Build(g, options, q, k, v, o, lse, cuQ: null, cuK: null);
    }

    /// <summary>Varlen forward: q (Tq,Hq,D), k/v (Tk,Hk,D), o like q, lse (Hq,Tq) float32 or absent.</summary>
    public static AttentionProblem ForwardVarlen(in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        TensorLayout? lse, ReadOnlySpan<int> cuSeqLensQ, ReadOnlySpan<int> cuSeqLensK, AttentionOptions? options)
    {
        var g = VarlenGeometry(q, k, v, cuSeqLensQ, cuSeqLensK, out int[] cuQ, out int[] cuK);
        ExpectLike(o, q, "query");
        if (lse is { } l) ExpectLse(l, [g.HeadsQ, q.Lengths[0]], "(heads_q, total_q)");
        ExpectOutputs([q, k, v], lse is { } l2 ? [o, l2] : [o]);
        return Build(g, options, q, k, v, o, lse, cuQ, cuK);
    }

    /// <summary>Dense backward: q,k,v,o,dO and lse as the forward gave them; dq like q, dk/dv like k.</summary>
    public static AttentionProblem Backward(in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        in TensorLayout dO, in TensorLayout lse, in TensorLayout dq, in TensorLayout dk, in TensorLayout dv, AttentionOptions? options)
    {
        var g = DenseGeometry(q, k, v);
        ExpectBackwardTensors(q, k, o, dO, lse, [g.Batch, g.HeadsQ, g.SeqQ], "(batch, heads_q, seqlen_q)", dq, dk, dv);
        ExpectOutputs([q, k, v, o, dO, lse], [dq, dk, dv]);
        return WithGradients(Build(g, options, q, k, v, o, lse, null, null), dO, dq, dk, dv);
    }

    /// <summary>Varlen backward: packed (tokens, heads, dim) tensors and lse (Hq, Tq).</summary>
    public static AttentionProblem BackwardVarlen(in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        in TensorLayout dO, in TensorLayout lse, in TensorLayout dq, in TensorLayout dk, in TensorLayout dv,
        ReadOnlySpan<int> cuSeqLensQ, ReadOnlySpan<int> cuSeqLensK, AttentionOptions? options)
    {
        var g = VarlenGeometry(q, k, v, cuSeqLensQ, cuSeqLensK, out int[] cuQ, out int[] cuK);
        ExpectBackwardTensors(q, k, o, dO, lse, [g.HeadsQ, q.Lengths[0]], "(heads_q, total_q)", dq, dk, dv);
        ExpectOutputs([q, k, v, o, dO, lse], [dq, dk, dv]);
        return WithGradients(Build(g, options, q, k, v, o, lse, cuQ, cuK), dO, dq, dk, dv);
    }

    /// <summary>
    /// Attention against a KV cache: q (B,Sq,Hq,D); the caches (B, capacity, Hk, D), or with a page table
    /// (B, max_pages) int32 a pool (num_pages, page_size, Hk, D); cacheSeqLens (B) int32; optional new keys and values
    /// (B, Snew, Hk, D) appended first; o like q, lse (B,Hq,Sq) float32 or absent. The device-resident lengths and page
    /// entries are the kernels' to guard; what the host can check is checked here: shapes, types, the page size, and
    /// that the declared maximum length plus the append fits the cache.
    /// </summary>
    public static KvCacheProblem ForwardWithKvCache(in TensorLayout q, in TensorLayout kCache, in TensorLayout vCache,
        in TensorLayout cacheSeqLens, TensorLayout? pageTable, TensorLayout? kNew, TensorLayout? vNew, in TensorLayout o,
        TensorLayout? lse, AttentionOptions? options, int? maxCacheSeqLen)
    {
        bool paged = pageTable is not null;
        ExpectRank(q, 4, "(batch, seqlen_q, heads_q, head_dim)");
        ExpectRank(kCache, 4, paged ? "(num_pages, page_size, heads_k, head_dim) with a page table" : "(batch, capacity, heads_k, head_dim)");
        var g = new Geometry(q.Type, ToInt(q, 0, "batch"), ToInt(q, 1, "seqlen_q"), 0, ToInt(q, 2, "heads_q"),
            ToInt(kCache, 2, "heads_k"), ToInt(q, 3, "head_dim"));
        CheckHeadsAndDim(q, kCache, g.HeadsQ, g.HeadsK, g.HeadDim, dimIndex: 3);
        ExpectType(kCache, g.Type);
        ExpectLike(vCache, kCache, "keyCache");
        ExpectInts(cacheSeqLens, [g.Batch], "(batch)");
        if (g.Batch > 1 && cacheSeqLens.Strides[0] != 1)
            throw Fail(cacheSeqLens, $"expected contiguous lengths (stride 1); got strides {cacheSeqLens.StrideText}");

        int capacity, pageSize = 0, numPages, maxPages = 0;
        if (pageTable is { } table)
        {
            if (table.Rank != 2) throw Fail(table, $"expected rank 2 (batch, max_pages); got rank {table.Rank} with shape {table.ShapeText}");
            ExpectInts(table, [g.Batch, table.Lengths[1]], "(batch, max_pages)");
            if (table.Lengths[1] > 1 && table.Strides[1] != 1)
                throw Fail(table, $"expected each row's entries to be contiguous (last stride 1); got strides {table.StrideText}");
            pageSize = ToInt(kCache, 1, "page_size");
            if (pageSize < 16 || pageSize % 16 != 0)
                throw Fail(kCache, $"pages of {pageSize} tokens (dimension 1 of {kCache.ShapeText}): the kernels take pages of a multiple of 16 tokens");
            numPages = ToInt(kCache, 0, "num_pages");
            maxPages = ToInt(table, 1, "max_pages");
            long pagedCapacity = (long)maxPages * pageSize;
            if (pagedCapacity > int.MaxValue)
                throw Fail(table, $"{maxPages} pages of {pageSize} tokens per sequence = {pagedCapacity} tokens exceeds {int.MaxValue}");
            capacity = (int)pagedCapacity;
        }
        else
        {
            if (kCache.Lengths[0] != g.Batch)
                throw Fail(kCache, $"expected batch {g.Batch} (the batch of query {q.ShapeText}); got shape {kCache.ShapeText} (a paged cache needs pageTable)");
            capacity = ToInt(kCache, 1, "capacity");
            numPages = g.Batch;
        }

        int seqLenNew = 0;
        if ((kNew is null) != (vNew is null))
        {
            string missing = kNew is null ? "newKeys" : "newValues", given = kNew is null ? "newValues" : "newKeys";
            throw new AttentionArgumentException(missing, $"{missing}: expected together with {given} (both appended, or neither); got only {given}");
        }
        if (kNew is { } kn && vNew is { } vn)
        {
            ExpectRank(kn, 4, "(batch, seqlen_new, heads_k, head_dim)");
            if (kn.Lengths[0] != g.Batch || kn.Lengths[2] != g.HeadsK || kn.Lengths[3] != g.HeadDim)
                throw Fail(kn, $"expected shape ({g.Batch}, seqlen_new, {g.HeadsK}, {g.HeadDim}) (batch of query, heads and head dim of keyCache); got {kn.ShapeText}");
            ExpectType(kn, g.Type);
            ExpectLike(vn, kn, "newKeys");
            seqLenNew = ToInt(kn, 1, "seqlen_new");
            if (seqLenNew > capacity)
                throw Fail(kn, $"appends {seqLenNew} tokens per sequence; the cache holds {capacity}");
        }
        int maxLen = maxCacheSeqLen ?? capacity - seqLenNew;
        if (maxLen < 0 || maxLen > capacity - seqLenNew)
            throw new AttentionArgumentException("maxCacheSeqLen",
                $"maxCacheSeqLen: expected 0 … {capacity - seqLenNew} (the cache holds {capacity} tokens per sequence" +
                (seqLenNew > 0 ? $" and {seqLenNew} are appended" : "") + $"); got {maxLen}");

        ExpectLike(o, q, "query");
        if (lse is { } l) ExpectLse(l, [g.Batch, g.HeadsQ, g.SeqQ], "(batch, heads_q, seqlen_q)");
        // The caches are written when new keys are appended: then they are outputs too.
        var inputs = new List<TensorLayout> { q, cacheSeqLens };
        if (pageTable is { } pt) inputs.Add(pt);
        if (kNew is { } k2 && vNew is { } v2) { inputs.Add(k2); inputs.Add(v2); }
        var outputs = new List<TensorLayout> { o };
        if (lse is { } l2) outputs.Add(l2);
        if (seqLenNew > 0) { outputs.Add(kCache); outputs.Add(vCache); }
        else { inputs.Add(kCache); inputs.Add(vCache); }
        ExpectOutputs(inputs.ToArray(), outputs.ToArray());

        var attention = Build(g with { SeqK = maxLen + seqLenNew }, options, q, kCache, vCache, o, lse, cuQ: null, cuK: null);
        return new KvCacheProblem
        {
            Attention = attention,
            SeqLenNew = seqLenNew,
            MaxCacheSeqLen = maxLen,
            Capacity = capacity,
            PageSize = pageSize,
            NumPages = numPages,
            MaxPages = maxPages,
            PageTableStride = pageTable is { } t2 ? t2.Strides[0] : 0,
            NewK = kNew is { } k3 ? Strides(k3, varlen: false) : default,
            NewV = vNew is { } v3 ? Strides(v3, varlen: false) : default,
        };
    }

    private readonly record struct Geometry(DataType Type, int Batch, int SeqQ, int SeqK, int HeadsQ, int HeadsK, int HeadDim);

    private static Geometry DenseGeometry(in TensorLayout q, in TensorLayout k, in TensorLayout v)
    {
        ExpectRank(q, 4, "(batch, seqlen_q, heads_q, head_dim)");
        ExpectRank(k, 4, "(batch, seqlen_k, heads_k, head_dim)");
        ExpectRank(v, 4, "(batch, seqlen_k, heads_k, head_dim)");
        var g = new Geometry(q.Type, ToInt(q, 0, "batch"), ToInt(q, 1, "seqlen_q"), ToInt(k, 1, "seqlen_k"),
            ToInt(q, 2, "heads_q"), ToInt(k, 2, "heads_k"), ToInt(q, 3, "head_dim"));
        if (k.Lengths[0] != g.Batch)
            throw Fail(k, $"expected batch {g.Batch} (the batch of query {q.ShapeText}); got shape {k.ShapeText}");
        CheckHeadsAndDim(q, k, g.HeadsQ, g.HeadsK, g.HeadDim, dimIndex: 3);
        ExpectLike(v, k, "key");
        foreach (var t in new[] { q, k, v }) ExpectType(t, g.Type);
        return g;
    }

    private static Geometry VarlenGeometry(in TensorLayout q, in TensorLayout k, in TensorLayout v,
        ReadOnlySpan<int> cuSeqLensQ, ReadOnlySpan<int> cuSeqLensK, out int[] cuQ, out int[] cuK)
    {
        ExpectRank(q, 3, "(total_q, heads_q, head_dim)");
        ExpectRank(k, 3, "(total_k, heads_k, head_dim)");
        ExpectRank(v, 3, "(total_k, heads_k, head_dim)");
        int heads = ToInt(q, 1, "heads_q"), headsK = ToInt(k, 1, "heads_k"), dim = ToInt(q, 2, "head_dim");
        CheckHeadsAndDim(q, k, heads, headsK, dim, dimIndex: 2);
        ExpectLike(v, k, "key");
        foreach (var t in new[] { q, k, v }) ExpectType(t, q.Type);
        cuQ = CheckCumulative("cuSeqLensQ", cuSeqLensQ, q.Lengths[0], "total_q = query.Lengths[0]");
        cuK = CheckCumulative("cuSeqLensK", cuSeqLensK, k.Lengths[0], "total_k = key.Lengths[0]");
        if (cuQ.Length != cuK.Length)
            throw new AttentionArgumentException("cuSeqLensK",
                $"cuSeqLensK: expected {cuQ.Length} entries (batch + 1, as cuSeqLensQ has); got {cuK.Length}");
        int batch = cuQ.Length - 1, maxQ = 0, maxK = 0;
        for (int b = 0; b < batch; b++)
        {
            maxQ = Math.Max(maxQ, cuQ[b + 1] - cuQ[b]);
            maxK = Math.Max(maxK, cuK[b + 1] - cuK[b]);
        }
        return new Geometry(q.Type, batch, maxQ, maxK, heads, headsK, dim);
    }

    private static void CheckHeadsAndDim(in TensorLayout q, in TensorLayout k, int headsQ, int headsK, int dim, int dimIndex)
    {
        if (dim < 1 || dim > MaxHeadDim)
            throw Fail(q, $"expected head_dim in 1…{MaxHeadDim}; got {dim} (shape {q.ShapeText})");
        if (k.Lengths[dimIndex] != dim)
            throw Fail(k, $"expected head_dim {dim} (the head dim of query); got shape {k.ShapeText}");
        if (headsQ < 1) throw Fail(q, $"expected at least one head; got shape {q.ShapeText}");
        if (headsK < 1) throw Fail(k, $"expected at least one head; got shape {k.ShapeText}");
        if (headsQ % headsK != 0)
            throw Fail(k, $"expected heads_k to divide heads_q = {headsQ} (GQA/MQA); got heads_k = {headsK}");
    }

    private static int[] CheckCumulative(string name, ReadOnlySpan<int> cu, long total, string totalText)
    {
        if (cu.Length < 1)
            throw new AttentionArgumentException(name, $"{name}: expected batch + 1 ≥ 1 cumulative offsets starting at 0; got none");
        if (cu[0] != 0)
            throw new AttentionArgumentException(name, $"{name}: expected {name}[0] = 0; got {cu[0]}");
        for (int i = 1; i < cu.Length; i++)
            if (cu[i] < cu[i - 1])
                throw new AttentionArgumentException(name, $"{name}: expected non-decreasing offsets; got {name}[{i}] = {cu[i]} < {name}[{i - 1}] = {cu[i - 1]}");
        if (cu[^1] != total)
            throw new AttentionArgumentException(name, $"{name}: expected the last offset to equal {totalText} = {total}; got {cu[^1]}");
        return cu.ToArray();
    }

    private static AttentionProblem Build(Geometry g, AttentionOptions? options, in TensorLayout q, in TensorLayout k,
        in TensorLayout v, in TensorLayout o, TensorLayout? lse, int[]? cuQ, int[]? cuK, bool packed = false)
    {
        options ??= AttentionOptions.Default;
        // 1/√d rounded once to float32, as FlashAttention passes head_dim ** -0.5 to its kernels (1f / MathF.Sqrt(d)
        // rounds twice and is an ulp off for 54 of the head dims 1…256).
        float scale = options.SoftmaxScale ?? (float)(1.0 / Math.Sqrt(g.HeadDim));
        if (!float.IsFinite(scale) || scale <= 0)
            throw new AttentionArgumentException(nameof(options), $"options.SoftmaxScale: expected a finite value > 0 (or null for 1/sqrt(head_dim)); got {scale}");
        if (!float.IsFinite(options.Softcap) || options.Softcap < 0)
            throw new AttentionArgumentException(nameof(options), $"options.Softcap: expected a finite value ≥ 0 (0 = off); got {options.Softcap}");
        if (options.WindowLeft < -1)
            throw new AttentionArgumentException(nameof(options), $"options.WindowLeft: expected −1 (unbounded) or ≥ 0; got {options.WindowLeft}");
        if (options.WindowRight < -1)
            throw new AttentionArgumentException(nameof(options), $"options.WindowRight: expected −1 (unbounded) or ≥ 0; got {options.WindowRight}");
        if (options.Causal && options.WindowRight > 0)
            throw new AttentionArgumentException(nameof(options), $"options.WindowRight: a causal mask sees no key to the right; expected −1 or 0 with Causal = true; got {options.WindowRight}");
        bool varlen = cuQ is not null || packed;
        return new AttentionProblem
        {
            Packed = packed,
            Type = g.Type,
            Batch = g.Batch,
            SeqLenQ = g.SeqQ,
            SeqLenK = g.SeqK,
            HeadsQ = g.HeadsQ,
            HeadsK = g.HeadsK,
            HeadDim = g.HeadDim,
            Scale = scale,
            Softcap = options.Softcap,
            Causal = options.Causal,
            WindowLeft = options.WindowLeft,
            WindowRight = options.Causal ? 0 : options.WindowRight,
            Deterministic = options.Deterministic,
            CuSeqLensQ = cuQ,
            CuSeqLensK = cuK,
            Q = Strides(q, varlen),
            K = Strides(k, varlen),
            V = Strides(v, varlen),
            O = Strides(o, varlen),
            Lse = lse is { } l
                ? (varlen ? new LseStrides(0, l.Strides[0], l.Strides[1]) : new LseStrides(l.Strides[0], l.Strides[1], l.Strides[2]))
                : default,
        };
    }

    private static AttentionProblem WithGradients(AttentionProblem p, in TensorLayout dO, in TensorLayout dq, in TensorLayout dk, in TensorLayout dv)
    {
        bool varlen = p.IsVarlen || p.Packed;
        return new AttentionProblem
        {
            Packed = p.Packed,
            Type = p.Type, Batch = p.Batch, SeqLenQ = p.SeqLenQ, SeqLenK = p.SeqLenK, HeadsQ = p.HeadsQ, HeadsK = p.HeadsK,
            HeadDim = p.HeadDim, Scale = p.Scale, Softcap = p.Softcap, Causal = p.Causal, WindowLeft = p.WindowLeft,
            WindowRight = p.WindowRight, Deterministic = p.Deterministic, CuSeqLensQ = p.CuSeqLensQ, CuSeqLensK = p.CuSeqLensK,
            Q = p.Q, K = p.K, V = p.V, O = p.O, Lse = p.Lse,
            DO = Strides(dO, varlen), DQ = Strides(dq, varlen), DK = Strides(dk, varlen), DV = Strides(dv, varlen),
        };
    }

    private static TokenStrides Strides(in TensorLayout t, bool varlen)
        => varlen ? new TokenStrides(0, t.Strides[0], t.Strides[1]) : new TokenStrides(t.Strides[0], t.Strides[1], t.Strides[2]);

    // layout: the expected layout's text, or likeName: the tensor whose layout is expected (the text is then built
    // only for the message: this runs for every tensor of every call).
    private static void ExpectRank(in TensorLayout t, int rank, string? layout, string? likeName = null)
    {
        if (t.Rank != rank)
            throw Fail(t, $"expected rank {rank} {layout ?? "(the layout of " + likeName + ")"}; got rank {t.Rank} with shape {t.ShapeText}");
        for (int i = 0; i < rank; i++)
        {
            if (t.Lengths[i] < 0) throw Fail(t, $"expected non-negative lengths; got shape {t.ShapeText}");
            if (t.Strides[i] < 0) throw Fail(t, $"expected non-negative strides; got strides {t.StrideText}");
        }
        if (t.Lengths[rank - 1] > 1 && t.Strides[rank - 1] != 1)
            throw Fail(t, $"expected the head dim to be contiguous (last stride 1); got strides {t.StrideText}");
    }

    private static void ExpectType(in TensorLayout t, DataType type)
    {
        if (t.Type != type)
            throw Fail(t, $"expected element type {type} (the type of query); got {t.Type}");
    }

    private static void ExpectLike(in TensorLayout t, in TensorLayout model, string modelName)
    {
        ExpectRank(t, model.Rank, layout: null, likeName: modelName);
        if (!t.Lengths.AsSpan().SequenceEqual(model.Lengths))
            throw Fail(t, $"expected shape {model.ShapeText} (that of {modelName}); got {t.ShapeText}");
        ExpectType(t, model.Type);
    }

    // The backward's tensors besides q, k and v, in the order their faults are reported: o, dO, the LSE, dq, dk, dv.
    private static void ExpectBackwardTensors(in TensorLayout q, in TensorLayout k, in TensorLayout o, in TensorLayout dO,
        in TensorLayout lse, long[] lseLengths, string lseLayout, in TensorLayout dq, in TensorLayout dk, in TensorLayout dv)
    {
        ExpectLike(o, q, "query");
        ExpectLike(dO, q, "query");
        ExpectLse(lse, lseLengths, lseLayout);
        ExpectLike(dq, q, "query");
        ExpectLike(dk, k, "key");
        ExpectLike(dv, k, "key");
    }

    private static void ExpectInts(in TensorLayout t, long[] lengths, string layout) => ExpectExact(t, DataType.Int32, lengths, layout);

    private static void ExpectLse(in TensorLayout lse, long[] lengths, string layout) => ExpectExact(lse, DataType.Float32, lengths, layout);

    // A side tensor whose type and whole shape are fixed by the problem (LSE, sequence offsets, page tables).
    private static void ExpectExact(in TensorLayout t, DataType type, long[] lengths, string layout)
    {
        if (t.Type != type)
            throw Fail(t, $"expected element type {type}; got {t.Type}");
        if (t.Rank != lengths.Length || !t.Lengths.AsSpan().SequenceEqual(lengths))
            throw Fail(t, $"expected shape ({string.Join(", ", lengths)}) {layout}; got {t.ShapeText}");
        foreach (long s in t.Strides)
            if (s < 0) throw Fail(t, $"expected non-negative strides; got {t.StrideText}");
    }

    private static void ExpectOutputs(ReadOnlySpan<TensorLayout> inputs, ReadOnlySpan<TensorLayout> outputs)
    {
        for (int i = 0; i < outputs.Length; i++)
        {
            var o = outputs[i];
            if (o.SelfOverlaps)
                throw Fail(o, $"an output must give every element its own address; strides {o.StrideText} with shape {o.ShapeText} overlap");
            foreach (var other in inputs) ExpectApart(o, other);
            foreach (var other in outputs[..i]) ExpectApart(o, other);
        }
    }

    private static void ExpectApart(in TensorLayout output, in TensorLayout other)
    {
        switch (TensorLayout.Overlap(output, other))
        {
            case ElementOverlap.Shared:
                throw Fail(output, $"an output must not share memory with {other.Name}; elements of both lie at the same address");
            case ElementOverlap.Undecided:
                throw Fail(output, $"an output must not share memory with {other.Name}; their byte ranges overlap and strides {output.StrideText} and {other.StrideText} are too entangled to show that no element is shared");
        }
    }

    private static int ToInt(in TensorLayout t, int dim, string what)
    {
        long n = t.Lengths[dim];
        if (n > int.MaxValue) throw Fail(t, $"{what} = {n} exceeds {int.MaxValue}");
        return (int)n;
    }

    private static AttentionArgumentException Fail(in TensorLayout t, string message) => new(t.Name, $"{t.Name}: {message}");
}

/// <summary>An attention argument (tensor, offsets or option) is not what the call needs; the message says what was expected.</summary>
public sealed class AttentionArgumentException(string paramName, string message) : ArgumentException(message, paramName)
{
    private readonly string _message = message;

    /// <summary>The message alone: it already names the argument, so ArgumentException's "(Parameter …)" suffix is left off.</summary>
    public override string Message => _message;
}
