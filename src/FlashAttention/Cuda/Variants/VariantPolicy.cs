namespace FlashAttention.Cuda.Variants;

/// <summary>
/// The one seam between the product and the lab: which kernel variant a launcher runs and how it schedules tiles. The
/// library runs the default tables (<see cref="ForwardVariants"/>, <see cref="BackwardVariants"/>, <see cref="DecodeVariants"/>); the lab (the CLI's
/// tuning overrides and ablations, tests, experiment scripts) installs a subclass for a scope. Launchers read
/// <see cref="Current"/> and nothing else: no environment variable reaches a launch.
/// </summary>
internal class VariantPolicy
{
    /// <summary>The library's own policy: the default tables.</summary>
    public static VariantPolicy Default { get; } = new();

    private static VariantPolicy s_current = Default;

    /// <summary>The policy launchers and the warm-up use now.</summary>
    public static VariantPolicy Current => Volatile.Read(ref s_current);

    /// <summary>Makes <paramref name="policy"/> current until the returned scope is disposed (process-wide; the lab's single-threaded tools use it).</summary>
    public static IDisposable Install(VariantPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var previous = Interlocked.Exchange(ref s_current, policy);
        return new Scope(previous);
    }

    /// <summary>The forward variant for a problem of this head dim and key length (<paramref name="keysCutFromRight"/>: causal or a right window bound).</summary>
    public virtual ForwardVariant Forward(int headDim, int seqLenK, bool keysCutFromRight) => ForwardVariants.For(headDim, seqLenK, keysCutFromRight);

    /// <summary>Every forward variant this policy may return at a head dim (what the warm-up compiles).</summary>
    public virtual IEnumerable<ForwardVariant> ForwardVariantsOf(int headDim) => ForwardVariants.All(headDim);

    public virtual BackwardVariant Backward(int headDim, bool softcap) => BackwardVariants.For(headDim, softcap);

    public virtual IEnumerable<BackwardVariant> BackwardVariantsOf(int headDim) => BackwardVariants.All(headDim);

    /// <summary>The FP8 forward variant for a head dim.</summary>
    public virtual Fp8Variant Fp8(int headDim) => Fp8Variants.For(headDim);
    /// <summary>The FP8 quantiser's launch for a head dim.</summary>
    public virtual QuantizerShape Quantizer(int headDim) => Fp8Variants.Quantizer(headDim);
    /// <summary>The decode variant for a head dim (KV-cache attention and the forward's decode-shaped calls).</summary>
    public virtual DecodeVariant Decode(int headDim) => DecodeVariants.For(headDim);

    public virtual IEnumerable<DecodeVariant> DecodeVariantsOf(int headDim) => DecodeVariants.All(headDim);

    /// <summary>Whether the plain forward runs this problem on the decode kernel (<see cref="DecodeVariants.TakesForward"/>).</summary>
    public virtual bool ForwardTakesDecode(AttentionProblem p) => DecodeVariants.TakesForward(p);

    /// <summary>
    /// Whether the decode family's kernels launch as programmatic dependents of the kernel before them (their launch and
    /// prologue under its tail; each waits for it before touching memory). Not yet measured on a GPU.
    /// </summary>
    public virtual bool DecodeProgrammaticLaunch => true;

    /// <summary>Splits of each key range for the decode kernel (<see cref="DecodeVariants.Splits"/>).</summary>
    public virtual int DecodeSplits(long units, int keyBlocks, int slots) => DecodeVariants.Splits(units, keyBlocks, slots);

    /// <summary>
    /// Whether the forward hands tiles out from a counter (as CTAs come free) rather than by a fixed stride: tiles of
    /// different lengths (<paramref name="unequalTiles"/>) need the counter, equal ones do not.
    /// </summary>
    public virtual bool DynamicSchedule(bool unequalTiles) => unequalTiles;

    /// <summary>The part of L2 the K/V of one section of a heaviest-first tile order may fill (tile_scheduler.cuh).</summary>
    public virtual long L2SectionBytes => 32L << 20;

    private sealed class Scope(VariantPolicy previous) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) Volatile.Write(ref s_current, previous);
        }
    }
}
