using System.Globalization;

namespace FlashAttention.Cli.Bench;

/// <summary>Which pass is timed.</summary>
public enum BenchDirection
{
    /// <summary>Forward: O and LSE from Q, K, V.</summary>
    Forward,
    /// <summary>Backward: dQ, dK, dV from dO (O and LSE come from an untimed forward).</summary>
    Backward,
}

/// <summary>
/// A decode case: attention against a KV cache (<c>CudaAttention.ForwardWithKvCache</c>) whose sequences all hold
/// <see cref="CacheLength"/> tokens, contiguous (<see cref="PageSize"/> 0) or in pages scattered over a pool, with
/// <see cref="AppendLength"/> new tokens per sequence appended in place by each call.
/// </summary>
public sealed record KvCacheBench(int CacheLength, int PageSize, int AppendLength)
{
    /// <summary>"contiguous" or "page16", and "+1" with an append.</summary>
    public string Label => (PageSize > 0 ? $"page{PageSize}" : "contiguous") + (AppendLength > 0 ? $" +{AppendLength}" : "");
}

/// <summary>One problem to time. FLOPs follow FlashAttention's convention (<see cref="FlopCount"/>).</summary>
/// <param name="KvCache">Set for a decode case; its keys are the cached tokens plus the appended ones (<see cref="SeqLenK"/>).</param>
/// <param name="SeqLens">
/// Set for a variable-length case (<c>CudaAttention.ForwardVarlen</c>): each sequence's length, queries and keys alike,
/// packed one after another; <see cref="Batch"/> is their count and <see cref="SeqLenQ"/>/<see cref="SeqLenK"/> the longest.
/// </param>
public sealed record BenchCase(int Batch, int SeqLenQ, int SeqLenK, int HeadsQ, int HeadsK, int HeadDim, DataType Type, bool Causal, BenchDirection Direction,
    KvCacheBench? KvCache = null, IReadOnlyList<int>? SeqLens = null)
{
    /// <summary>A variable-length case over <paramref name="seqLens"/> (query length = key length per sequence).</summary>
    public static BenchCase Varlen(IReadOnlyList<int> seqLens, int headsQ, int headsK, int headDim, DataType type, bool causal, BenchDirection direction)
    {
        int longest = seqLens.Max();
        return new BenchCase(seqLens.Count, longest, longest, headsQ, headsK, headDim, type, causal, direction, SeqLens: seqLens.ToArray());
    }

    /// <summary>Query (and key) rows of the packed tensors: the lengths' sum for a varlen case, batch × seqlen otherwise.</summary>
    public long TotalTokens => SeqLens is { } lens ? lens.Sum(l => (long)l) : (long)Batch * SeqLenQ;


    /// <summary>Bytes of keys and values one call must read: a decode call's floor of memory traffic.</summary>
    public double KvBytes => 2.0 * Batch * SeqLenK * HeadsK * HeadDim * DataTypes.SizeOf(Type);

    /// <summary>4·B·H·Sq·Sk·D, halved for causal, ×2.5 for backward; a varlen case sums 4·H·s²·D over its sequences.</summary>
    public double Flops => SeqLens is { } lens
        ? lens.Sum(s => Direction == BenchDirection.Forward ? FlopCount.Forward(1, HeadsQ, s, s, HeadDim, Causal) : FlopCount.Backward(1, HeadsQ, s, s, HeadDim, Causal))
        : Direction == BenchDirection.Forward
            ? FlopCount.Forward(Batch, HeadsQ, SeqLenQ, SeqLenK, HeadDim, Causal)
            : FlopCount.Backward(Batch, HeadsQ, SeqLenQ, SeqLenK, HeadDim, Causal);

    /// <summary>"full" or "causal" (the JSON's mask names; "window" is reserved for sliding windows).</summary>
    public string Mask => Causal ? "causal" : "full";

    /// <summary>"fwd" or "bwd".</summary>
    public string DirectionName => BenchNames.Direction(Direction);

    public string DtypeName => DataTypes.ShortName(Type);

    /// <summary>
    /// Compact shape: <c>b1 h8 s2048 d128</c> (with <c>h8/2</c> for GQA and <c>s512x2048</c> when Sq ≠ Sk), or for a varlen
    /// case <c>varlen 64 seqs 64…4096 (147624 tok) h16 d128</c>.
    /// </summary>
    public string Shape => SeqLens is { } lens ? BenchNames.VarlenShape(lens, HeadsQ, HeadsK, HeadDim) : BenchNames.Shape(Batch, HeadsQ, HeadsK, SeqLenQ, SeqLenK, HeadDim);

    public override string ToString() => $"{DirectionName} {Mask} {DtypeName} {Shape}" + (KvCache is { } kv ? $" kv {kv.Label}" : "");
}

/// <summary>Sequence lengths of a variable-length bench case.</summary>
public static class VarlenLengths
{
    /// <summary>
    /// <paramref name="count"/> lengths drawn uniformly from [<paramref name="min"/>, <paramref name="max"/>] by
    /// <c>new Random(seed)</c>: the same seed gives the same lengths on every machine and .NET version (the seeded
    /// generator's sequence is fixed). Python's <c>random</c> draws other numbers from the same seed, so the peer script
    /// passes its lengths to ours with <c>--seqlens</c>.
    /// </summary>
    public static int[] Draw(int count, int min, int max, int seed)
    {
        var rng = new Random(seed);
        var lengths = new int[count];
        for (int i = 0; i < count; i++) lengths[i] = rng.Next(min, max + 1);
        return lengths;
    }

    /// <summary>The dense comparison of a varlen case: as many sequences, all of the mean length (the same tokens, give or take rounding).</summary>
    public static BenchCase DenseAtMean(BenchCase varlen)
    {
        var lens = varlen.SeqLens ?? throw new ArgumentException("not a varlen case", nameof(varlen));
        int mean = (int)Math.Round((double)varlen.TotalTokens / lens.Count, MidpointRounding.AwayFromZero);
        return varlen with { SeqLenQ = mean, SeqLenK = mean, SeqLens = null };
    }
}

/// <summary>How GPU calls are timed (the CPU engine's calls are synchronous: a stopwatch around each).</summary>
public enum BenchTiming
{
    /// <summary>
    /// Each sample is CUDA events around a batch of calls queued back to back behind an untimed call that is still
    /// running, divided by the batch size: the GPU's time per call, with the host's queueing hidden as long as it is
    /// shorter than a call (how the FlashAttention-3 paper and Triton's <c>do_bench</c> time kernels).
    /// </summary>
    BackToBack,
    /// <summary>
    /// Each sample is CUDA events around one call queued on an idle stream: the latency of a lone call, which includes
    /// the host's time to queue it.
    /// </summary>
    PerCall,
}

/// <summary>How to time.</summary>
/// <param name="Warmup">Untimed calls before timing.</param>
/// <param name="Repeats">Timed samples; the median, min and max are reported.</param>
/// <param name="Seed">Seed of the random inputs (fresh each run unless given).</param>
/// <param name="Timing">GPU: how a sample is timed (<see cref="BenchTiming"/>).</param>
public sealed record BenchSettings(int Warmup, int Repeats, int Seed, BenchTiming Timing = BenchTiming.BackToBack)
{
    /// <summary>
    /// Back-to-back timing: calls per sample, so that a sample lasts about <see cref="BatchTargetMs"/> given one call's
    /// time (at least 1, at most <see cref="MaxBatchCalls"/>). bench/peers/sdpa_peers.py uses the same rule.
    /// </summary>
    public static int CallsPerSample(double callMs) =>
        callMs > 0 ? (int)Math.Clamp(Math.Ceiling(BatchTargetMs / callMs), 1, MaxBatchCalls) : MaxBatchCalls;

    public const double BatchTargetMs = 1.0;
    public const int MaxBatchCalls = 50;

    /// <summary>The JSON name of a timing mode: "back-to-back" or "per-call".</summary>
    public static string TimingName(BenchTiming timing) => timing == BenchTiming.BackToBack ? "back-to-back" : "per-call";
}

/// <summary>The device a backend runs on, as recorded with every row. Null fields are unknown or do not apply.</summary>
public sealed record BenchDeviceInfo
{
    /// <summary>"cpu" or "cuda" (the <c>--device</c> value).</summary>
    public required string Device { get; init; }
    /// <summary>CPU model or GPU name.</summary>
    public required string Name { get; init; }
    public int? SmCount { get; init; }
    public double? SmClockMhz { get; init; }
    public double? MemClockMhz { get; init; }
    public string? DriverVersion { get; init; }
    public string? NvrtcVersion { get; init; }
    public string? ComputeCapability { get; init; }
    public int? CpuCores { get; init; }
    /// <summary>Measured fp32 FMA peak (CPU), the yardstick for "% of peak".</summary>
    public double? PeakGflops { get; init; }
    /// <summary>Measured dense GEMM throughput in the benchmark's dtype (GPU), drawn as the ceiling in reports.</summary>
    public double? GemmTflops { get; init; }
}

/// <summary>Timings of one case.</summary>
/// <param name="TimesMs">Time per call of each sample.</param>
/// <param name="HostTimesMs">
/// GPU rows: the host's time to queue a call (validation, tensor maps, launches), per sample. Per-call timing
/// includes it in the GPU time; back-to-back timing hides it when it is shorter than a call.
/// </param>
/// <param name="Timing">GPU rows: how the samples were timed; null on the CPU.</param>
/// <param name="CallsPerSample">GPU rows: calls per sample (1 for per-call timing).</param>
public sealed record BenchMeasurement(BenchCase Case, IReadOnlyList<double> TimesMs, IReadOnlyList<double>? HostTimesMs = null,
    BenchTiming? Timing = null, int CallsPerSample = 1, double? BytesMoved = null)
{
    public double MedianMs => Median(TimesMs);
    public double? HostMedianMs => HostTimesMs is { Count: > 0 } h ? Median(h) : null;
    public double MinMs => TimesMs.Min();
    public double MaxMs => TimesMs.Max();

    /// <summary>FLOP/s at the median time.</summary>
    public double FlopsPerSecond => Case.Flops / (MedianMs * 1e-3);

    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("no timings", nameof(values));
        var sorted = values.Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
    }
}

/// <summary>Names shared by the table, the JSON and the report.</summary>
public static class BenchNames
{
    public static string Direction(BenchDirection d) => d == BenchDirection.Forward ? "fwd" : "bwd";

    public static string Shape(int batch, int headsQ, int headsK, int seqQ, int seqK, int headDim)
        => $"b{batch} h{headsQ}{(headsK != headsQ ? "/" + headsK : "")} s{seqQ}{(seqK != seqQ ? "x" + seqK : "")} d{headDim}";

    public static string VarlenShape(IReadOnlyList<int> seqLens, int headsQ, int headsK, int headDim)
        => $"varlen {seqLens.Count} seqs {seqLens.Min()}…{seqLens.Max()} ({seqLens.Sum(l => (long)l)} tok) h{headsQ}{(headsK != headsQ ? "/" + headsK : "")} d{headDim}";

    /// <summary>512 → "512", 2048 → "2k", 16384 → "16k", 1000 → "1000".</summary>
    public static string SeqLen(int s) => s >= 1024 && s % 1024 == 0 ? (s / 1024).ToString(CultureInfo.InvariantCulture) + "k" : s.ToString(CultureInfo.InvariantCulture);
}
