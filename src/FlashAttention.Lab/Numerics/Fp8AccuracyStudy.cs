using System.Diagnostics;
using System.Numerics.Tensors;
using FlashAttention.Cpu;

namespace FlashAttention.Lab.Numerics;

/// <summary>The problem the accuracy study runs on.</summary>
public sealed record AccuracyStudyOptions
{
    /// <summary>Seed of the inputs (Q, K, V drawn in that order from one <see cref="Random(int)"/>) and of the Hadamard signs.</summary>
    public int Seed { get; init; }
    public int Batch { get; init; } = 1;
    /// <summary>Heads (default 4: with 8, the b1 h8 s4096 d128 problem the study was specified on, a run takes ~45 s on 2 cores, almost all in the float64 reference; 4 heads halve that).</summary>
    public int Heads { get; init; } = 4;
    public int SeqLen { get; init; } = 4096;
    public int HeadDim { get; init; } = 128;
    /// <summary>Tokens per FP8 scale block.</summary>
    public int BlockSize { get; init; } = BlockQuantizer.DefaultBlockSize;
    /// <summary>Fraction of entries that get an outlier added (the paper: 0.001).</summary>
    public double OutlierProbability { get; init; } = 0.001;
    /// <summary>Standard deviation of the outliers (the paper's N(0, 100): 10).</summary>
    public double OutlierStdDev { get; init; } = 10;
}

/// <summary>One line of the study: a way of computing attention and its error against float64.</summary>
/// <param name="Method">What was run, e.g. "FP8 per-block + incoherent".</param>
/// <param name="Rmse">sqrt(mean((O − O_ref)²)) over every output element, O_ref the float64 reference on the same float32 inputs.</param>
/// <param name="PaperRmse">The FlashAttention-3 paper's figure for the same configuration (Table 3), or null where it has none.</param>
/// <param name="PaperLabel">The paper's name for that configuration.</param>
/// <param name="Seconds">Wall time of this method's forward pass (quantisation included).</param>
public sealed record AccuracyStudyRow(string Method, double Rmse, double? PaperRmse, string PaperLabel, double Seconds);

/// <summary>The study's outcome.</summary>
/// <param name="ReferenceSeconds">Wall time of the float64 reference.</param>
/// <param name="TotalSeconds">Wall time of the whole study (input generation included).</param>
public sealed record AccuracyStudyResult(AccuracyStudyOptions Options, IReadOnlyList<AccuracyStudyRow> Rows, double ReferenceSeconds, double TotalSeconds);

/// <summary>
/// The numerical-error study of the FlashAttention-3 paper (§4.3, Table 3), on the CPU: inputs drawn from
/// <c>N(0,1) + N(0,100)·Bernoulli(0.001)</c> (0.1 % of entries carry an outlier of standard deviation 10), attention computed
/// in FP16, BF16 and FP8 with and without block quantisation and incoherent processing, each compared by RMSE with a float64
/// reference (<see cref="ReferenceAttention"/>) on the same float32 inputs.
/// </summary>
/// <remarks>
/// <para>The methods:</para>
/// <list type="bullet">
/// <item><b>FP16</b>, <b>BF16</b>: FlashAttention-2 in that precision — Q, K, V rounded to the type, S and O accumulated in
///   float32, P rounded to the type for P·V, O written in the type (the CPU engine run with that element type).</item>
/// <item><b>FP8</b> (E4M3) per tensor or per block of <see cref="AccuracyStudyOptions.BlockSize"/> tokens, with or without the
///   Hadamard rotation of Q and K: <see cref="Fp8AttentionEmulation"/>, P cast to E4M3 unscaled as the paper describes, O float32.</item>
/// <item>One extra line, <b>FP8 per-block + incoherent, P·2^8</b>: the same with P scaled by 2^8 before its cast, as the
///   FlashAttention-3 code does (<see cref="Fp8AttentionOptions.ScaleProbabilities"/>); the paper has no figure for it.</item>
/// </list>
/// <para>The paper's figures come from its own runs on an H100 (same distribution; its sizes may differ from ours).
/// Its FP16 figure is FlashAttention-2 in FP16 (its naive FP16 baseline:
/// 3.2e-4); its "Baseline FP8" is per-tensor FP8 without incoherent processing; its two FP8 ablations are "No block quant"
/// (per-tensor + incoherent, 9.3e-3) and "No incoherent processing" (per-block without the rotation, 2.4e-2).</para>
/// </remarks>
public static class Fp8AccuracyStudy
{
    /// <summary>Method names, in the order of the table.</summary>
    public const string Fp16 = "FP16", BFloat16Name = "BF16", Fp8PerTensor = "FP8 per-tensor", Fp8PerBlock = "FP8 per-block",
        Fp8PerTensorIncoherent = "FP8 per-tensor + incoherent", Fp8PerBlockIncoherent = "FP8 per-block + incoherent",
        Fp8PerBlockIncoherentScaledP = "FP8 per-block + incoherent, P·2^8";

    /// <summary>
    /// Fills <paramref name="destination"/> with independent draws of <c>N(0,1) + N(0, σ²)·Bernoulli(p)</c>
    /// (the paper: p = 0.001, σ = 10), using Box–Muller normals from <paramref name="random"/>.
    /// </summary>
    public static void FillOutlierDistribution(Span<float> destination, Random random, double outlierProbability = 0.001, double outlierStdDev = 10)
    {
        ArgumentNullException.ThrowIfNull(random);
        if (!(outlierProbability >= 0 && outlierProbability <= 1))
            throw new ArgumentOutOfRangeException(nameof(outlierProbability), outlierProbability, $"outlierProbability: expected a probability in [0, 1]; got {outlierProbability}");
        if (!(outlierStdDev >= 0) || double.IsInfinity(outlierStdDev))
            throw new ArgumentOutOfRangeException(nameof(outlierStdDev), outlierStdDev, $"outlierStdDev: expected a finite value ≥ 0; got {outlierStdDev}");
        var normal = new NormalSource(random);
        for (int i = 0; i < destination.Length; i++)
        {
            double x = normal.Next();
            if (random.NextDouble() < outlierProbability) x += outlierStdDev * normal.Next();
            destination[i] = (float)x;
        }
    }

    /// <summary>sqrt(mean((actual − reference)²)), accumulated in float64.</summary>
    public static double Rmse(ReadOnlySpan<float> actual, ReadOnlySpan<double> reference)
    {
        if (actual.Length != reference.Length)
            throw new ArgumentException($"actual: expected {reference.Length} elements (the length of reference); got {actual.Length}", nameof(actual));
        if (actual.Length == 0) return 0;
        double sum = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double e = actual[i] - reference[i];
            sum += e * e;
        }
        return Math.Sqrt(sum / actual.Length);
    }

    /// <summary>Runs the study; <paramref name="log"/>, when given, hears one line per finished step.</summary>
    /// <exception cref="ArgumentException">A size is not positive, the head dim is not a power of two (needed by the rotation) or above 256, or the block size is below 1.</exception>
    public static AccuracyStudyResult Run(AccuracyStudyOptions? options = null, Action<string>? log = null)
    {
        options ??= new AccuracyStudyOptions();
        Check(options);
        var total = Stopwatch.StartNew();
        var (q, k, v) = OutlierInputs(options);
        nint[] shape = [options.Batch, options.SeqLen, options.Heads, options.HeadDim];
        var (reference, referenceSeconds) = Reference(q, k, v, shape, log);

        var rows = new List<AccuracyStudyRow>();
        var output = new float[q.Length];
        void Add(string method, double? paper, string paperLabel, Action run)
        {
            var w = Stopwatch.StartNew();
            run();
            var row = new AccuracyStudyRow(method, Rmse(output, reference), paper, paperLabel, w.Elapsed.TotalSeconds);
            rows.Add(row);
            log?.Invoke($"{method}: RMSE {row.Rmse:0.00e+0} ({row.Seconds:F1} s)");
        }

        Add(Fp16, 1.9e-4, "FlashAttention-2 FP16", () => LowPrecision<Half, HalfProbabilityRounding>(q, k, v, shape, output,
            (src, dst) => TensorPrimitives.ConvertToHalf(src, dst), (src, dst) => TensorPrimitives.ConvertToSingle(src, dst)));
        Add(BFloat16Name, null, "—", () => LowPrecision<BFloat16, BFloat16ProbabilityRounding>(q, k, v, shape, output,
            (src, dst) => BFloat16.ConvertFromSingle(src, dst), (src, dst) => BFloat16.ConvertToSingle(src, dst)));

        var fp8 = new Fp8AttentionOptions { BlockSize = options.BlockSize, HadamardSeed = options.Seed };
        void Fp8(Fp8AttentionOptions o) => Fp8AttentionEmulation.Forward(new ReadOnlyTensorSpan<float>(q, shape, default),
            new ReadOnlyTensorSpan<float>(k, shape, default), new ReadOnlyTensorSpan<float>(v, shape, default),
            new TensorSpan<float>(output, shape, default), o);
        Add(Fp8PerTensor, 2.4e-2, "Baseline FP8",
            () => Fp8(fp8 with { Granularity = QuantizationGranularity.PerTensor, IncoherentProcessing = false }));
        Add(Fp8PerBlock, 2.4e-2, "No incoherent processing",
            () => Fp8(fp8 with { Granularity = QuantizationGranularity.PerBlock, IncoherentProcessing = false }));
        Add(Fp8PerTensorIncoherent, 9.3e-3, "No block quant",
            () => Fp8(fp8 with { Granularity = QuantizationGranularity.PerTensor, IncoherentProcessing = true }));
        Add(Fp8PerBlockIncoherent, 9.1e-3, "FlashAttention-3 FP8",
            () => Fp8(fp8 with { Granularity = QuantizationGranularity.PerBlock, IncoherentProcessing = true }));
        Add(Fp8PerBlockIncoherentScaledP, null, "— (FA3 code: Max_offset = 8)",
            () => Fp8(fp8 with { Granularity = QuantizationGranularity.PerBlock, IncoherentProcessing = true, ScaleProbabilities = true }));

        return new AccuracyStudyResult(options, rows, referenceSeconds, total.Elapsed.TotalSeconds);
    }

    private static void LowPrecision<T, TRound>(float[] q, float[] k, float[] v, nint[] shape, float[] output,
        SpanConverter<float, T> narrow, SpanConverter<T, float> widen)
        where T : unmanaged where TRound : struct, IProbabilityRounding
    {
        var qt = new T[q.Length];
        var kt = new T[k.Length];
        var vt = new T[v.Length];
        var ot = new T[output.Length];
        narrow(q, qt);
        narrow(k, kt);
        narrow(v, vt);
        Fp8AttentionEmulation.RunEngine<T, TRound>(qt, kt, vt, shape, shape, new TensorSpan<T>(ot, shape, default), default, null);
        widen(ot, output);
    }

    private delegate void SpanConverter<TFrom, TTo>(ReadOnlySpan<TFrom> source, Span<TTo> destination);

    /// <summary>The checks <see cref="Run"/> makes first (the CLI runs them before printing anything).</summary>
    /// <summary>Q, K and V of the options' (batch, seq, heads, dim) shape, drawn in that order from the outlier distribution.</summary>
    internal static (float[] Q, float[] K, float[] V) OutlierInputs(AccuracyStudyOptions options)
    {
        long count = (long)options.Batch * options.SeqLen * options.Heads * options.HeadDim;
        float[] q = new float[count], k = new float[count], v = new float[count];
        var random = new Random(options.Seed);
        FillOutlierDistribution(q, random, options.OutlierProbability, options.OutlierStdDev);
        FillOutlierDistribution(k, random, options.OutlierProbability, options.OutlierStdDev);
        FillOutlierDistribution(v, random, options.OutlierProbability, options.OutlierStdDev);
        return (q, k, v);
    }

    /// <summary>Float64 attention of the inputs, which every method's RMSE is measured against, and the seconds it took (logged).</summary>
    internal static (double[] Output, double Seconds) Reference(float[] q, float[] k, float[] v, nint[] shape, Action<string>? log)
    {
        var watch = Stopwatch.StartNew();
        double[] reference = ReferenceAttention.Forward(new ReadOnlyTensorSpan<float>(q, shape, default),
            new ReadOnlyTensorSpan<float>(k, shape, default), new ReadOnlyTensorSpan<float>(v, shape, default)).Output;
        double seconds = watch.Elapsed.TotalSeconds;
        log?.Invoke($"float64 reference: {seconds:F1} s");
        return (reference, seconds);
    }

    internal static void Check(AccuracyStudyOptions o)
    {
        static void Positive(int value, string name)
        {
            if (value < 1) throw new AttentionArgumentException("options", $"options.{name}: expected at least 1; got {value}");
        }
        Positive(o.Batch, nameof(o.Batch));
        Positive(o.Heads, nameof(o.Heads));
        Positive(o.SeqLen, nameof(o.SeqLen));
        Positive(o.BlockSize, nameof(o.BlockSize));
        if (!Hadamard.IsSupportedLength(o.HeadDim) || o.HeadDim > AttentionValidation.MaxHeadDim)
            throw new AttentionArgumentException("options", $"options.HeadDim: expected a power of two from 1 to {AttentionValidation.MaxHeadDim} (the Hadamard rotation needs a power of two); got {o.HeadDim}");
        if ((long)o.Batch * o.SeqLen * o.Heads * o.HeadDim > Array.MaxLength)
            throw new AttentionArgumentException("options", $"options: batch·seqlen·heads·head_dim = {(long)o.Batch * o.SeqLen * o.Heads * o.HeadDim} elements is more than one array holds");
    }

    /// <summary>Standard normal draws by Box–Muller, both values of each pair used.</summary>
    private struct NormalSource(Random random)
    {
        private double _spare;
        private bool _hasSpare;

        public double Next()
        {
            if (_hasSpare)
            {
                _hasSpare = false;
                return _spare;
            }
            double u1 = 1.0 - random.NextDouble(); // (0, 1]: the log is finite
            double u2 = random.NextDouble();
            double r = Math.Sqrt(-2.0 * Math.Log(u1));
            (double sin, double cos) = Math.SinCos(2.0 * Math.PI * u2);
            _spare = r * sin;
            _hasSpare = true;
            return r * cos;
        }
    }
}
