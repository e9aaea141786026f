namespace FlashAttention;

/// <summary>
/// A validated variable-length call whose offsets live on the device (<see cref="AttentionValidation.ForwardVarlenOnDevice"/>):
/// the attention problem (packed strides, <see cref="AttentionProblem.SeqLenQ"/> and <see cref="AttentionProblem.SeqLenK"/>
/// the declared longest lengths) and the offset tensors, whose values only the device can read.
/// </summary>
internal sealed class DeviceVarlenProblem
{
    public required AttentionProblem Attention { get; init; }
    public required TensorLayout CuSeqLensQ { get; init; }
    public required TensorLayout CuSeqLensK { get; init; }
    public TensorLayout? SeqUsedK { get; init; }
    /// <summary>Rows of the packed query (and output) tensor.</summary>
    public required int TotalQ { get; init; }
    /// <summary>Rows of the packed key and value tensors.</summary>
    public required int TotalK { get; init; }
}

internal static partial class AttentionValidation
{
    /// <summary>
    /// Varlen forward with device-resident offsets: q (Tq,Hq,D), k/v (Tk,Hk,D), o like q, lse (Hq,Tq) float32 or absent;
    /// cuSeqLensQ/K (batch + 1) int32 and seqUsedK (batch) int32, contiguous; the declared longest lengths within the
    /// packed tensors. What the host cannot see (the offsets' values) is the device's to check on request.
    /// </summary>
    public static DeviceVarlenProblem ForwardVarlenOnDevice(in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        TensorLayout? lse, in TensorLayout cuSeqLensQ, in TensorLayout cuSeqLensK, int maxSeqLenQ, int maxSeqLenK,
        TensorLayout? seqUsedK, AttentionOptions? options)
    {
        var g = DeviceVarlenGeometry(q, k, v, cuSeqLensQ, cuSeqLensK, maxSeqLenQ, maxSeqLenK, seqUsedK);
        ExpectLike(o, q, "query");
        if (lse is { } l) ExpectLse(l, [g.HeadsQ, q.Lengths[0]], "(heads_q, total_q)");
        var inputs = Offsets(cuSeqLensQ, cuSeqLensK, seqUsedK, q, k, v);
        ExpectOutputs(inputs, lse is { } l2 ? [o, l2] : [o]);
        return Packed(Build(g, options, q, k, v, o, lse, null, null, packed: true), q, k, cuSeqLensQ, cuSeqLensK, seqUsedK);
    }

    /// <summary>Varlen backward with device-resident offsets: the forward's tensors, dO like q, lse (Hq,Tq), dq like q, dk/dv like k.</summary>
    public static DeviceVarlenProblem BackwardVarlenOnDevice(in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        in TensorLayout dO, in TensorLayout lse, in TensorLayout dq, in TensorLayout dk, in TensorLayout dv,
        in TensorLayout cuSeqLensQ, in TensorLayout cuSeqLensK, int maxSeqLenQ, int maxSeqLenK, TensorLayout? seqUsedK,
        AttentionOptions? options)
    {
        var g = DeviceVarlenGeometry(q, k, v, cuSeqLensQ, cuSeqLensK, maxSeqLenQ, maxSeqLenK, seqUsedK);
        ExpectBackwardTensors(q, k, o, dO, lse, [g.HeadsQ, q.Lengths[0]], "(heads_q, total_q)", dq, dk, dv);
        ExpectOutputs(Offsets(cuSeqLensQ, cuSeqLensK, seqUsedK, q, k, v, o, dO, lse), [dq, dk, dv]);
        var p = WithGradients(Build(g, options, q, k, v, o, lse, null, null, packed: true), dO, dq, dk, dv);
        return Packed(p, q, k, cuSeqLensQ, cuSeqLensK, seqUsedK);
    }

    private static TensorLayout[] Offsets(in TensorLayout cuQ, in TensorLayout cuK, TensorLayout? used, params TensorLayout[] rest)
        => used is { } u ? [cuQ, cuK, u, .. rest] : [cuQ, cuK, .. rest];

    private static DeviceVarlenProblem Packed(AttentionProblem p, in TensorLayout q, in TensorLayout k, in TensorLayout cuQ,
        in TensorLayout cuK, TensorLayout? used)
        => new() { Attention = p, CuSeqLensQ = cuQ, CuSeqLensK = cuK, SeqUsedK = used, TotalQ = (int)q.Lengths[0], TotalK = (int)k.Lengths[0] };

    private static Geometry DeviceVarlenGeometry(in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout cuQ,
        in TensorLayout cuK, int maxSeqLenQ, int maxSeqLenK, TensorLayout? seqUsedK)
    {
        ExpectRank(q, 3, "(total_q, heads_q, head_dim)");
        ExpectRank(k, 3, "(total_k, heads_k, head_dim)");
        ExpectRank(v, 3, "(total_k, heads_k, head_dim)");
        int totalQ = ToInt(q, 0, "total_q"), totalK = ToInt(k, 0, "total_k");
        int heads = ToInt(q, 1, "heads_q"), headsK = ToInt(k, 1, "heads_k"), dim = ToInt(q, 2, "head_dim");
        CheckHeadsAndDim(q, k, heads, headsK, dim, dimIndex: 2);
        ExpectLike(v, k, "key");
        foreach (var t in new[] { q, k, v }) ExpectType(t, q.Type);
        if (cuQ.Rank != 1 || cuQ.Lengths[0] < 1)
            throw Fail(cuQ, $"expected rank 1 (batch + 1) with at least one entry; got shape {cuQ.ShapeText}");
        int batch = ToInt(cuQ, 0, "batch + 1") - 1;
        ExpectInts(cuQ, [batch + 1], "(batch + 1)");
        ExpectInts(cuK, [batch + 1], "(batch + 1, as cuSeqLensQ has)");
        foreach (var t in seqUsedK is { } u ? new[] { cuQ, cuK, u } : [cuQ, cuK])
            if (t.Lengths[0] > 1 && t.Strides[0] != 1)
                throw Fail(t, $"expected contiguous entries (stride 1); got strides {t.StrideText}");
        if (seqUsedK is { } used) ExpectInts(used, [batch], "(batch)");
        if (maxSeqLenQ < 0 || maxSeqLenQ > totalQ)
            throw new AttentionArgumentException("maxSeqLenQ", $"maxSeqLenQ: expected the longest query sequence, 0 … total_q = {totalQ}; got {maxSeqLenQ}");
        if (maxSeqLenK < 0 || maxSeqLenK > totalK)
            throw new AttentionArgumentException("maxSeqLenK", $"maxSeqLenK: expected the longest key sequence, 0 … total_k = {totalK}; got {maxSeqLenK}");
        return new Geometry(q.Type, batch, maxSeqLenQ, maxSeqLenK, heads, headsK, dim);
    }
}
