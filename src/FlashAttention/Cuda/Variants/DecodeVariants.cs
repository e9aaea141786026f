namespace FlashAttention.Cuda.Variants;

/// <summary>
/// Which decode variant runs for which head dim, how many splits a key range is cut into, and which plain forward calls
/// the decode kernel takes: the decode family's whole policy. Not yet measured on a GPU: every choice is a starting
/// point derived from the kernel's budget (bandwidth, shared memory, registers), to be measured.
/// </summary>
internal static class DecodeVariants
{
    public static readonly int[] HeadDims = [64, 128, 256];

    public static DecodeVariant For(int headDim) => headDim switch
    {
        // 32 KB of K and V per stage, three stages: two CTAs per SM keep six stages in flight (to be measured).
        64 => new DecodeVariant(64, BlockN: 128, Stages: 3, QSource.Registers, CtasPerSm: 2),
        // 64-key blocks keep S at 32 registers and a stage at 32 KB, so two CTAs with three stages each fit (to be measured).
        128 => new DecodeVariant(128, BlockN: 64, Stages: 3, QSource.Registers, CtasPerSm: 2),
        // O takes 128 registers: Q in shared memory, one CTA per SM with three 64 KB stages (to be measured).
        256 => new DecodeVariant(256, BlockN: 64, Stages: 3, QSource.SharedMemory, CtasPerSm: 1),
        _ => throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"no decode kernel for head dim {headDim}; the GPU takes {string.Join(", ", HeadDims)}"),
    };

    /// <summary>Every variant <see cref="For"/> may return at this head dim (for warm-up).</summary>
    public static IEnumerable<DecodeVariant> All(int headDim) => [For(headDim)];

    /// <summary>Query rows up to which the plain forward runs the decode kernel (the verify and bench decode range).</summary>
    public const int ForwardRoutingMaxSeqLenQ = 16;

    /// <summary>
    /// Whether <c>CudaAttention.Forward</c> hands this problem to the decode kernel: few query rows (a 128-row forward
    /// tile would hold at most 16 live ones, while the decode tile packs a KV head's query heads and splits the keys),
    /// a dense batch, a head dim the decode family has.
    /// </summary>
    public static bool TakesForward(AttentionProblem p)
        => !p.IsVarlen && p.SeqLenQ <= ForwardRoutingMaxSeqLenQ && Array.IndexOf(HeadDims, p.HeadDim) >= 0;

    // ---- the split of the key range -------------------------------------------------------------------------

    /// <summary>Work units from which one split already fills the GPU: 80% of the CTA slots (FlashAttention's rule).</summary>
    public const double FullFraction = 0.8;

    /// <summary>
    /// Key blocks each split gets at least: a split's fixed cost (its start, its part's write and merge) needs a few
    /// blocks to pay off (b1 4k d128 on an H100: 14 µs with 16 splits, 16 µs with 28; bench/results/2026-12-05-h100/call4-57500d7).
    /// </summary>
    public const int MinBlocksPerSplit = 4;

    /// <summary>Most splits of one key range (the combine kernel's limit).</summary>
    public const int MaxSplits = 128;

    /// <summary>Of the split counts, the smallest whose last wave fills at least this share of the best count's (FlashAttention's rule).</summary>
    public const double EfficiencyShare = 0.85;

    /// <summary>
    /// Splits of each key range for <paramref name="units"/> CTAs' worth of work (sequences × KV heads × m-blocks) of
    /// <paramref name="keyBlocks"/> key blocks each, on <paramref name="slots"/> CTA slots (SMs × CTAs per SM): none when
    /// the units fill the GPU; else, among the counts that leave every split <see cref="MinBlocksPerSplit"/> blocks, the
    /// smallest whose waves are nearly as full as the best's (a wave's efficiency: CTAs / (waves × slots)).
    /// </summary>
    public static int Splits(long units, int keyBlocks, int slots)
    {
        if (units <= 0 || slots <= 0 || units >= FullFraction * slots) return 1;
        int most = (int)Math.Min(Math.Min(MaxSplits, keyBlocks / MinBlocksPerSplit), slots);
        if (most <= 1) return 1;
        double Efficiency(int s)
        {
            double waves = (double)units * s / slots;
            return waves / Math.Ceiling(waves);
        }
        double best = 0;
        for (int s = 1; s <= most; s++) best = Math.Max(best, Efficiency(s));
        for (int s = 1; s <= most; s++)
            if (Efficiency(s) >= EfficiencyShare * best) return s;
        return 1;
    }
}
