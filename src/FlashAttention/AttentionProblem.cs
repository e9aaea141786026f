namespace FlashAttention;

/// <summary>Element strides of a (batch, sequence, head, dim) tensor; the dim stride is always 1.</summary>
/// <param name="Batch">Stride between batch entries (unused for variable-length batches, whose rows are packed).</param>
/// <param name="Sequence">Stride between consecutive tokens.</param>
/// <param name="Head">Stride between heads.</param>
internal readonly record struct TokenStrides(long Batch, long Sequence, long Head);

/// <summary>Element strides of a log-sum-exp tensor: (batch, head, query) dense, or (head, token) for varlen.</summary>
internal readonly record struct LseStrides(long Batch, long Head, long Query);

/// <summary>
/// A validated attention call: every size, stride and option checked once, in <see cref="AttentionValidation"/>,
/// for every backend. Engines read their geometry from here and never re-validate.
/// </summary>
internal sealed class AttentionProblem
{
    public required DataType Type { get; init; }
    /// <summary>Number of sequences.</summary>
    public required int Batch { get; init; }
    /// <summary>Query length (dense), or the longest query sequence (varlen).</summary>
    public required int SeqLenQ { get; init; }
    /// <summary>Key length (dense), or the longest key sequence (varlen).</summary>
    public required int SeqLenK { get; init; }
    public required int HeadsQ { get; init; }
    public required int HeadsK { get; init; }
    public required int HeadDim { get; init; }
    public required float Scale { get; init; }
    public required float Softcap { get; init; }
    public required bool Causal { get; init; }
    /// <summary>Left window, −1 = unbounded.</summary>
    public required int WindowLeft { get; init; }
    /// <summary>Right window after causal normalisation (causal ⇒ 0), −1 = unbounded.</summary>
    public required int WindowRight { get; init; }
    public required bool Deterministic { get; init; }

    /// <summary>Cumulative query offsets (length Batch+1) for varlen batches; null for dense.</summary>
    public int[]? CuSeqLensQ { get; init; }
    /// <summary>Cumulative key offsets (length Batch+1) for varlen batches; null for dense.</summary>
    public int[]? CuSeqLensK { get; init; }

    public required TokenStrides Q { get; init; }
    public required TokenStrides K { get; init; }
    public required TokenStrides V { get; init; }
    public required TokenStrides O { get; init; }
    public required LseStrides Lse { get; init; }
    /// <summary>Backward only: dO, dQ, dK, dV strides.</summary>
    public TokenStrides DO { get; init; }
    public TokenStrides DQ { get; init; }
    public TokenStrides DK { get; init; }
    public TokenStrides DV { get; init; }

    public bool IsVarlen => CuSeqLensQ is not null;
    /// <summary>Tensors packed as (tokens, heads, head_dim) whose sequence offsets live on the device (see <see cref="DeviceVarlenProblem"/>).</summary>
    public bool Packed { get; init; }
    /// <summary>Query heads per key/value head (1 = MHA, HeadsQ = MQA).</summary>
    public int GroupSize => HeadsQ / HeadsK;
    /// <summary>Total query rows over the batch.</summary>
    public long TotalQ => IsVarlen ? CuSeqLensQ![Batch] : (long)Batch * SeqLenQ;
    /// <summary>Total key rows over the batch.</summary>
    public long TotalK => IsVarlen ? CuSeqLensK![Batch] : (long)Batch * SeqLenK;

    public int SeqLenQOf(int b) => IsVarlen ? CuSeqLensQ![b + 1] - CuSeqLensQ[b] : SeqLenQ;
    public int SeqLenKOf(int b) => IsVarlen ? CuSeqLensK![b + 1] - CuSeqLensK[b] : SeqLenK;

    /// <summary>Element offset of (batch b, query token s, head h, dim 0) in a query-shaped tensor with strides t.</summary>
    public long QueryOffset(in TokenStrides t, int b, int s, int h)
        => (IsVarlen ? (CuSeqLensQ![b] + (long)s) * t.Sequence : b * t.Batch + s * t.Sequence) + h * t.Head;

    /// <summary>Element offset of (batch b, key token s, head h, dim 0) in a key-shaped tensor with strides t.</summary>
    public long KeyOffset(in TokenStrides t, int b, int s, int h)
        => (IsVarlen ? (CuSeqLensK![b] + (long)s) * t.Sequence : b * t.Batch + s * t.Sequence) + h * t.Head;

    /// <summary>Element offset of the log-sum-exp of (batch b, head h, query s).</summary>
    public long LseOffset(int b, int h, int s)
        => IsVarlen ? h * Lse.Head + (CuSeqLensQ![b] + (long)s) * Lse.Query : b * Lse.Batch + h * Lse.Head + s * Lse.Query;

    /// <summary>The visible key range of a query row of sequence b; see <see cref="AttentionMask"/>.</summary>
    public AttentionMask MaskOf(int b) => new(SeqLenQOf(b), SeqLenKOf(b), WindowLeft, WindowRight);
}
