namespace FlashAttention.Cuda.ContextParallel;

/// <summary>How the ranks of context parallelism see each other's keys and values.</summary>
public enum ContextParallelStrategy
{
    /// <summary>Chosen by <see cref="ContextParallelAttention.Choose"/> from the shapes and the GPU's memory.</summary>
    Auto,
    /// <summary>K/V shards pass round the ring, one step per rank, while the current step computes; partial outputs merge through their LSE. Backward passes dK/dV round with them.</summary>
    Ring,
    /// <summary>Every rank gathers all K/V (cheap under GQA) and attends in one go; backward reduce-scatters dK/dV.</summary>
    AllGather,
}

/// <summary>One local rank's tensors: shards of the sequence as <see cref="ContextParallelLayout"/> lays them out.</summary>
/// <param name="Rank">The rank these shards belong to.</param>
/// <param name="Query">(batch, shard_len, heads_q, head_dim).</param>
/// <param name="Key">(batch, shard_len, heads_k, head_dim).</param>
/// <param name="Value">Same shape as <paramref name="Key"/>.</param>
/// <param name="Output">Like <paramref name="Query"/>: the forward writes it; the backward reads it.</param>
/// <param name="LogSumExp">(batch, heads_q, shard_len) float32: the forward writes it; the backward reads it.</param>
/// <param name="Stream">The rank's compute stream, on its GPU: the call is ordered after earlier work on it, and later work after the call.</param>
public sealed record ContextParallelShard(int Rank, DeviceTensor Query, DeviceTensor Key, DeviceTensor Value, DeviceTensor Output,
    DeviceTensor LogSumExp, CudaStream Stream);

/// <summary>One local rank's gradients for <see cref="ContextParallelAttention.Backward"/>, shaped like its shards.</summary>
public sealed record ContextParallelGradients(DeviceTensor OutputGradient, DeviceTensor QueryGradient, DeviceTensor KeyGradient, DeviceTensor ValueGradient);

/// <summary>
/// Exact attention over a sequence sharded across GPUs (context parallelism). Q, K and V are split by sequence with
/// zigzag shards (<see cref="ContextParallelLayout"/>), one per rank; each rank gets the rows of O, LSE and the
/// gradients that its shard holds, equal to single-GPU attention of the whole sequence up to the rounding of the merged
/// partial results (float32 accumulators, one rounding to the element type at the end). Full and causal masks, GQA,
/// softcap; no sliding window. Transfers go through NCCL on a stream of their own and overlap the compute.
/// </summary>
public static class ContextParallelAttention
{
    /// <summary>
    /// The strategy <see cref="ContextParallelStrategy.Auto"/> runs: all-gather when query heads are at least four times
    /// the K/V heads (the K/V it moves are a quarter of Q's size or less, and one large kernel per chunk beats N small
    /// steps and their merges) and the gathered K/V with float32 dK/dV fit in a quarter of the GPU; the ring otherwise.
    /// </summary>
    public static ContextParallelStrategy Choose(int ranks, int batch, int seqLen, int headsQ, int headsK, int headDim, DataType type, long deviceMemoryBytes)
    {
        if (ranks <= 1) return ContextParallelStrategy.Ring;
        long gatheredBytes = 2L * batch * seqLen * headsK * headDim * (2L * DataTypes.SizeOf(type) + 2 * sizeof(float));
        return headsQ >= 4 * headsK && gatheredBytes <= deviceMemoryBytes / 4 ? ContextParallelStrategy.AllGather : ContextParallelStrategy.Ring;
    }

    /// <summary>
    /// Forward pass of every rank this process drives (all of them in one call: their transfers are grouped).
    /// <paramref name="shards"/> holds one entry per local rank of <paramref name="group"/>.
    /// </summary>
    /// <param name="group">The ranks and their transport.</param>
    /// <param name="shards">The local ranks' tensors.</param>
    /// <param name="seqLen">The whole sequence's length (every rank's shards are cut from it).</param>
    /// <param name="options">Scale, causal, softcap; sliding windows are refused.</param>
    /// <param name="strategy">Ring, all-gather, or <see cref="ContextParallelStrategy.Auto"/> (every rank must pass the same).</param>
    public static void Forward(ContextParallelGroup group, IReadOnlyList<ContextParallelShard> shards, int seqLen,
        AttentionOptions? options = null, ContextParallelStrategy strategy = ContextParallelStrategy.Auto)
    {
        var run = ContextParallelRun.Prepare(group, shards, null, seqLen, options, strategy);
        if (run.Strategy == ContextParallelStrategy.AllGather) AllGatherSchedule.Forward(run);
        else RingSchedule.Forward(run);
    }

    /// <summary>
    /// Backward pass of every rank this process drives: from the forward's shards (its O and LSE included) and the
    /// output gradient, the query, key and value gradients of each shard. <paramref name="gradients"/> pairs with
    /// <paramref name="shards"/> by index.
    /// </summary>
    public static void Backward(ContextParallelGroup group, IReadOnlyList<ContextParallelShard> shards, IReadOnlyList<ContextParallelGradients> gradients,
        int seqLen, AttentionOptions? options = null, ContextParallelStrategy strategy = ContextParallelStrategy.Auto)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        var run = ContextParallelRun.Prepare(group, shards, gradients, seqLen, options, strategy);
        if (run.Strategy == ContextParallelStrategy.AllGather) AllGatherSchedule.Backward(run);
        else RingSchedule.Backward(run);
    }
}

/// <summary>One call's checked arguments: the group, each local rank's tensors and state, the shapes.</summary>
internal sealed class ContextParallelRun
{
    public required ContextParallelGroup Group { get; init; }
    public required IReadOnlyList<RankWork> Ranks { get; init; }
    public required int SeqLen { get; init; }
    public required int Batch { get; init; }
    public required int HeadsQ { get; init; }
    public required int HeadsK { get; init; }
    public required int HeadDim { get; init; }
    public required DataType Type { get; init; }
    public required AttentionOptions Options { get; init; }
    public required ContextParallelStrategy Strategy { get; init; }

    public int Size => Group.Size;
    public int ElementSize => DataTypes.SizeOf(Type);
    public bool Causal => Options.Causal;
    public int ShardLength(int rank) => ContextParallelLayout.ShardLength(SeqLen, Size, rank);
    public int MaxShardLength => Enumerable.Range(0, Size).Max(ShardLength);

    public static ContextParallelRun Prepare(ContextParallelGroup group, IReadOnlyList<ContextParallelShard> shards,
        IReadOnlyList<ContextParallelGradients>? gradients, int seqLen, AttentionOptions? options, ContextParallelStrategy strategy)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(shards);
        options ??= AttentionOptions.Default;
        AttentionValidation.ExpectDefaultPrecision(options, "context parallelism");
        if (options.WindowLeft >= 0 || options.WindowRight >= 0)
            throw new AttentionArgumentException("options", "options: context parallelism takes full or causal masks; a sliding window is not supported");
        ContextParallelLayout.Validate(seqLen, group.Size);
        var local = group.LocalRanks;
        if (shards.Count != local.Count || !shards.Select(s => s.Rank).Order().SequenceEqual(local))
            throw new AttentionArgumentException(nameof(shards), $"shards: expected one per local rank ({string.Join(", ", local)}); got ranks {string.Join(", ", shards.Select(s => s.Rank))}");
        if (gradients is not null && gradients.Count != shards.Count)
            throw new AttentionArgumentException(nameof(gradients), $"gradients: expected one per shard ({shards.Count}); got {gradients.Count}");

        AttentionProblem? first = null;
        var ranks = new List<RankWork>();
        for (int i = 0; i < shards.Count; i++)
        {
            var s = shards[i];
            if (s.Stream is null) throw new AttentionArgumentException(nameof(shards), $"shards[{i}].Stream: a stream on rank {s.Rank}'s GPU is needed");
            var state = group.State(s.Rank);
            if (s.Stream.Device != state.Device)
                throw new AttentionArgumentException(nameof(shards), $"shards[{i}].Stream: rank {s.Rank} runs on device {state.Device.Ordinal}; the stream is on device {s.Stream.Device.Ordinal}");
            var (q, k, v, o, lse) = (s.Query.ToLayout("query"), s.Key.ToLayout("key"), s.Value.ToLayout("value"), s.Output.ToLayout("output"), s.LogSumExp.ToLayout("logSumExp"));
            AttentionProblem p;
            if (gradients is null)
            {
                p = AttentionValidation.Forward(q, k, v, o, lse, options);
                GpuRequirements.Check(p, ContextParallelKernels.HeadDims, "forward", q, k, v, o);
            }
            else
            {
                var g = gradients[i];
                var (dO, dq, dk, dv) = (g.OutputGradient.ToLayout("outputGradient"), g.QueryGradient.ToLayout("queryGradient"), g.KeyGradient.ToLayout("keyGradient"), g.ValueGradient.ToLayout("valueGradient"));
                p = AttentionValidation.Backward(q, k, v, o, dO, lse, dq, dk, dv, options);
                GpuRequirements.Check(p, ContextParallelKernels.HeadDims, "backward", q, k, v, o, dO, dq, dk, dv);
            }
            int expected = ContextParallelLayout.ShardLength(seqLen, group.Size, s.Rank);
            if (p.SeqLenQ != expected || p.SeqLenK != expected)
                throw new AttentionArgumentException("query", $"shards[{i}]: rank {s.Rank}'s shard of a {seqLen}-row sequence over {group.Size} ranks has {expected} rows; got {p.SeqLenQ} query and {p.SeqLenK} key rows");
            if (first is { } f && (f.Batch != p.Batch || f.HeadsQ != p.HeadsQ || f.HeadsK != p.HeadsK || f.HeadDim != p.HeadDim || f.Type != p.Type))
                throw new AttentionArgumentException("query", $"shards[{i}]: every rank's shards must share batch, heads, head_dim and element type");
            first ??= p;
            ranks.Add(new RankWork(s, gradients?[i], state));
        }
        var p0 = first!;
        if (strategy == ContextParallelStrategy.Auto)
            strategy = ContextParallelAttention.Choose(group.Size, p0.Batch, seqLen, p0.HeadsQ, p0.HeadsK, p0.HeadDim, p0.Type,
                ranks.Min(r => r.State.Device.TotalMemoryBytes));
        return new ContextParallelRun
        {
            Group = group, Ranks = ranks, SeqLen = seqLen, Batch = p0.Batch, HeadsQ = p0.HeadsQ, HeadsK = p0.HeadsK,
            HeadDim = p0.HeadDim, Type = p0.Type, Options = options, Strategy = strategy,
        };
    }

    /// <summary>A contiguous (batch, rows, heads, head_dim) tensor at <paramref name="pointer"/>.</summary>
    public DeviceTensor Dense(nint pointer, int rows, int heads, DataType? type = null)
        => DeviceTensor.Contiguous(pointer, type ?? Type, Batch, rows, heads, HeadDim);

    /// <summary>A contiguous (batch, heads, rows) float32 LSE at <paramref name="pointer"/>.</summary>
    public DeviceTensor DenseLse(nint pointer, int rows, int heads) => DeviceTensor.Contiguous(pointer, DataType.Float32, Batch, heads, rows);

    /// <summary>Bytes of a dense (batch, rows, heads, head_dim) tensor of <paramref name="elementSize"/>-byte elements.</summary>
    public long Bytes(int rows, int heads, int elementSize) => (long)Batch * rows * heads * HeadDim * elementSize;
}

/// <summary>A local rank's tensors and state for one call.</summary>
internal sealed record RankWork(ContextParallelShard Shard, ContextParallelGradients? Gradients, RankState State)
{
    public int Rank => Shard.Rank;
    public CudaStream Stream => Shard.Stream;
}

/// <summary>Sub-views of (batch, seqlen, heads, dim) tensors and their (batch, heads, seqlen) LSE, without copies.</summary>
internal static class Views
{
    public static DeviceTensor Rows(DeviceTensor t, SequenceRange rows)
    {
        long[] lengths = t.Lengths.ToArray();
        lengths[1] = rows.Length;
        return new DeviceTensor(t.Pointer + (nint)(rows.Start * t.Strides[1] * DataTypes.SizeOf(t.Type)), t.Type, lengths, t.Strides);
    }

    public static DeviceTensor LseRows(DeviceTensor lse, SequenceRange rows)
    {
        long[] lengths = lse.Lengths.ToArray();
        lengths[2] = rows.Length;
        return new DeviceTensor(lse.Pointer + (nint)(rows.Start * lse.Strides[2] * sizeof(float)), lse.Type, lengths, lse.Strides);
    }
}
