namespace FlashAttention.Cuda.Variants;

/// <summary>
/// Which backward variant runs for which problem: the whole policy in one table, each choice measured against its
/// neighbours (bench/results; the folder beside each line holds the runs).
/// </summary>
internal static class BackwardVariants
{
    public static readonly int[] HeadDims = [64, 128, 256];

    public static BackwardVariant For(int headDim, bool softcap) => WithSoftcap(headDim switch
    {
        // 128 queries per step (FlashAttention-3's d64 tile), keys split, dQ by bulk reductions (2026-12-01-h200-921979c).
        64 => new BackwardVariant(64, Stages: 2, DqSplit.ByKeys, Softcap: false, DqAdd.Bulk, OverlapDv: false, SplitSdP: false, BlockM: 128),
        // dQ's columns split with a dS exchange, bulk dQ, dS formed while dV runs (2026-11-25-h100-b80f754).
        128 => new BackwardVariant(128, Stages: 2, DqSplit.ByColumns, Softcap: false, DqAdd.Bulk, OverlapDv: true, SplitSdP: false, BlockM: 64),
        // Both consumers on 64 keys, each with half the columns; Sᵀ and dPᵀ split between them (2026-11-25-h100-b80f754).
        256 => new BackwardVariant(256, Stages: 2, DqSplit.ByKeys, Softcap: false, DqAdd.Reduce, OverlapDv: false, SplitSdP: true, BlockM: 64),
        _ => throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"no backward kernel for head dim {headDim}; the GPU takes {string.Join(", ", HeadDims)}"),
    }, softcap);

    /// <summary>
    /// Softcap keeps P·(1 − tanh²) in the score registers until dS is formed, so it runs without the dV overlap and the
    /// split of Sᵀ and dPᵀ (both hand P over packed), 64 queries per step.
    /// </summary>
    public static BackwardVariant WithSoftcap(BackwardVariant v, bool softcap)
        => softcap ? v with { Softcap = true, OverlapDv = false, SplitSdP = false, BlockM = 64 } : v with { Softcap = false };

    /// <summary>Every variant <see cref="For"/> may return at this head dim (for warm-up).</summary>
    public static IEnumerable<BackwardVariant> All(int headDim) => [For(headDim, false), For(headDim, true)];
}
