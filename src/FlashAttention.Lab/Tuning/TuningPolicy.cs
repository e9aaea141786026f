using FlashAttention.Cuda.Variants;

namespace FlashAttention.Lab.Tuning;

/// <summary>
/// The lab's <see cref="VariantPolicy"/>: the default tables with tuning overrides, an ablation and schedule overrides
/// laid over them. The CLI installs one built from the environment at start-up (<see cref="FromEnvironment"/>);
/// <c>bench --ablation</c> installs one per ablation for the cases it times.
/// </summary>
internal sealed class TuningPolicy : VariantPolicy
{
    /// <summary><c>static|dynamic</c>: the forward's fixed-stride or counter schedule for every mask.</summary>
    public const string ScheduleVariable = "FLASHATTN_FWD_SCHEDULE";

    /// <summary>Bytes of K/V per section of the heaviest-first order (small values make `verify` cover many sections).</summary>
    public const string SectionVariable = "FLASHATTN_L2_SECTION_BYTES";

    /// <summary>A fixed split count for the decode kernel (verify's cases that split key ranges the heuristic would not).</summary>
    public const string DecodeSplitsVariable = "FLASHATTN_DECODE_SPLITS";

    /// <summary><c>off</c>: the plain forward keeps its own kernel for decode-shaped calls (to time the two side by side).</summary>
    public const string DecodeRoutingVariable = "FLASHATTN_FWD_DECODE";

    /// <summary><c>off</c>: the decode family's kernels launch after the kernel before them has completed (no programmatic dependent launch).</summary>
    public const string DecodePdlVariable = "FLASHATTN_DECODE_PDL";

    internal IReadOnlyDictionary<int, ForwardVariant> ForwardOverrides { get; init; } = new Dictionary<int, ForwardVariant>();
    internal IReadOnlyDictionary<int, Func<BackwardVariant, BackwardVariant>> BackwardOverrides { get; init; } = new Dictionary<int, Func<BackwardVariant, BackwardVariant>>();
    internal IReadOnlyDictionary<int, Fp8Variant> Fp8Overrides { get; init; } = new Dictionary<int, Fp8Variant>();
    internal IReadOnlyDictionary<int, QuantizerShape> QuantizerOverrides { get; init; } = new Dictionary<int, QuantizerShape>();
    public ForwardAblation Ablation { get; init; } = ForwardAblation.None;
    /// <summary>Null: the schedule the masks ask for; else always the counter (true) or the fixed stride (false).</summary>
    public bool? ForceDynamicSchedule { get; init; }
    public long? SectionBytes { get; init; }
    internal IReadOnlyDictionary<int, DecodeVariant> DecodeOverrides { get; init; } = new Dictionary<int, DecodeVariant>();
    /// <summary>Null: the heuristic's split count; else this many (at most the combine's limit).</summary>
    public int? DecodeSplitCount { get; init; }
    /// <summary>False: decode-shaped forward calls keep the forward kernel.</summary>
    public bool ForwardDecodeRouting { get; init; } = true;
    /// <summary>False: no programmatic dependent launch for the decode family.</summary>
    public bool DecodePdl { get; init; } = true;

    /// <summary>Whether anything differs from the library's own policy.</summary>
    public bool IsDefault => ForwardOverrides.Count == 0 && BackwardOverrides.Count == 0 && Fp8Overrides.Count == 0 && QuantizerOverrides.Count == 0 && Ablation == ForwardAblation.None
                             && ForceDynamicSchedule is null && SectionBytes is null && DecodeOverrides.Count == 0 && DecodeSplitCount is null
                             && ForwardDecodeRouting && DecodePdl;

    /// <summary>The policy the lab's environment variables describe (<see cref="VariantOverrides"/>, <see cref="ScheduleVariable"/>, <see cref="SectionVariable"/>).</summary>
    public static TuningPolicy FromEnvironment() => Parse(Environment.GetEnvironmentVariable);

    internal static TuningPolicy Parse(Func<string, string?> variable) => new()
    {
        ForwardOverrides = VariantOverrides.ParseForward(variable(VariantOverrides.ForwardVariable)),
        BackwardOverrides = VariantOverrides.ParseBackward(variable(VariantOverrides.BackwardVariable)),
        Fp8Overrides = VariantOverrides.ParseFp8(variable(VariantOverrides.Fp8Variable)),
        QuantizerOverrides = VariantOverrides.ParseQuantizer(variable(VariantOverrides.QuantizerVariable)),
        ForceDynamicSchedule = variable(ScheduleVariable) switch
        {
            null or "" => null,
            "static" => false,
            "dynamic" => true,
            var other => throw new ArgumentException($"{ScheduleVariable}: expected 'static' or 'dynamic', got '{other}'"),
        },
        SectionBytes = variable(SectionVariable) switch
        {
            null or "" => null,
            var text when long.TryParse(text, out long bytes) && bytes > 0 => bytes,
            var text => throw new ArgumentException($"{SectionVariable}: expected a positive number of bytes, got '{text}'"),
        },
        DecodeOverrides = VariantOverrides.ParseDecode(variable(VariantOverrides.DecodeVariable)),
        DecodeSplitCount = variable(DecodeSplitsVariable) switch
        {
            null or "" => null,
            var text when int.TryParse(text, out int n) && n >= 1 && n <= DecodeVariants.MaxSplits => n,
            var text => throw new ArgumentException($"{DecodeSplitsVariable}: expected a split count from 1 to {DecodeVariants.MaxSplits}, got '{text}'"),
        },
        ForwardDecodeRouting = OnOff(variable(DecodeRoutingVariable), DecodeRoutingVariable),
        DecodePdl = OnOff(variable(DecodePdlVariable), DecodePdlVariable),
    };

    private static bool OnOff(string? text, string name) => text switch
    {
        null or "" or "on" => true,
        "off" => false,
        var other => throw new ArgumentException($"{name}: expected 'on' or 'off', got '{other}'"),
    };

    /// <summary>This policy with an ablation laid over its forward variants.</summary>
    public TuningPolicy WithAblation(ForwardAblation ablation) => Copy(ablation, DecodeSplitCount);

    /// <summary>This policy with the decode kernel's key ranges cut into <paramref name="splits"/> (null: the heuristic's count).</summary>
    public TuningPolicy WithDecodeSplits(int? splits) => Copy(Ablation, splits);

    private TuningPolicy Copy(ForwardAblation ablation, int? splits) => new()
    {
        ForwardOverrides = ForwardOverrides, BackwardOverrides = BackwardOverrides, Fp8Overrides = Fp8Overrides, QuantizerOverrides = QuantizerOverrides, Ablation = ablation,
        ForceDynamicSchedule = ForceDynamicSchedule, SectionBytes = SectionBytes, DecodeOverrides = DecodeOverrides,
        DecodeSplitCount = splits, ForwardDecodeRouting = ForwardDecodeRouting, DecodePdl = DecodePdl,
    };

    public override ForwardVariant Forward(int headDim, int seqLenK, bool keysCutFromRight)
        => Ablation.Apply(ForwardOverrides.TryGetValue(headDim, out var v) ? v : base.Forward(headDim, seqLenK, keysCutFromRight));

    public override IEnumerable<ForwardVariant> ForwardVariantsOf(int headDim)
        => ForwardOverrides.TryGetValue(headDim, out var v) ? [Ablation.Apply(v)] : base.ForwardVariantsOf(headDim).Select(Ablation.Apply).Distinct();

    public override BackwardVariant Backward(int headDim, bool softcap)
        => BackwardVariants.WithSoftcap(Override(headDim, BackwardVariants.For(headDim, softcap: false)), softcap);

    public override IEnumerable<BackwardVariant> BackwardVariantsOf(int headDim) => [Backward(headDim, false), Backward(headDim, true)];

    public override Fp8Variant Fp8(int headDim) => Fp8Overrides.TryGetValue(headDim, out var v) ? v : base.Fp8(headDim);

    public override QuantizerShape Quantizer(int headDim) => QuantizerOverrides.TryGetValue(headDim, out var v) ? v : base.Quantizer(headDim);

    public override DecodeVariant Decode(int headDim) => DecodeOverrides.TryGetValue(headDim, out var v) ? v : base.Decode(headDim);

    public override IEnumerable<DecodeVariant> DecodeVariantsOf(int headDim) => [Decode(headDim)];

    public override int DecodeSplits(long units, int keyBlocks, int slots) => DecodeSplitCount ?? base.DecodeSplits(units, keyBlocks, slots);

    public override bool ForwardTakesDecode(AttentionProblem p) => ForwardDecodeRouting && base.ForwardTakesDecode(p);

    public override bool DecodeProgrammaticLaunch => DecodePdl && base.DecodeProgrammaticLaunch;

    public override bool DynamicSchedule(bool unequalTiles) => ForceDynamicSchedule ?? base.DynamicSchedule(unequalTiles);

    public override long L2SectionBytes => SectionBytes ?? base.L2SectionBytes;

    private BackwardVariant Override(int headDim, BackwardVariant v) => BackwardOverrides.TryGetValue(headDim, out var edit) ? edit(v) : v;
}
