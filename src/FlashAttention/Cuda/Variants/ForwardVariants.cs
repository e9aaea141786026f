namespace FlashAttention.Cuda.Variants;

/// <summary>
/// Which forward variant runs for which problem: the whole tile policy in one table. Every choice was measured against
/// its neighbours on the paper grid (bench/results; the folder beside each line holds the runs).
/// </summary>
internal static class ForwardVariants
{
    public static readonly int[] HeadDims = [64, 128, 256];

    /// <summary>Key length from which the long-sequence variants run (d64 three consumers under a causal mask, d256 80-key blocks).</summary>
    public const int LongKeysFrom = 2048;

    /// <summary>
    /// The variant for <paramref name="seqLenK"/> keys; <paramref name="keysCutFromRight"/>: a causal mask or a window with
    /// a right bound (later query rows see more keys).
    /// </summary>
    public static ForwardVariant For(int headDim, int seqLenK, bool keysCutFromRight) => headDim switch
    {
        // 192-row tiles: each consumer's softmax hides behind two siblings' GEMMs (2026-12-01-h200-40cfd1e);
        // under a causal mask below 2k keys 128-row tiles waste less on the diagonal.
        64 when keysCutFromRight && seqLenK < LongKeysFrom => Tile(64, blockN: 128, stages: 3, qBuffers: 2, qInRegisters: true),
        64 => Tile(64, blockN: 128, stages: 3, qBuffers: 2, qInRegisters: true, consumers: 3),
        // 128x128 with two Q buffers; 176-key blocks lost causal, other shapes tied (2026-12-01-h200-40cfd1e, 2026-12-04-h200-removed-variants).
        128 => Tile(128, blockN: 128, stages: 2, qBuffers: 2),
        // Q (64 KB) and two K/V stages fill shared memory: O staged in Q's buffer, P·V chained with the next S
        // (2026-12-01-h200-921979c); below 2k keys 64-key blocks with O in two passes release Q earlier (2026-12-01-h200-8835d51).
        256 when seqLenK >= LongKeysFrom => Tile(256, blockN: 80, stages: 2, loop: ForwardLoop.Chained, oStaging: OutputStaging.QBuffer),
        256 => Tile(256, blockN: 64, stages: 2, loop: ForwardLoop.Chained, oStaging: OutputStaging.TwoPasses),
        _ => throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"no forward kernel for head dim {headDim}; the GPU takes {string.Join(", ", HeadDims)}"),
    };

    /// <summary>Every variant <see cref="For"/> may return at this head dim (for warm-up).</summary>
    public static IEnumerable<ForwardVariant> All(int headDim)
        => new[] { 0, int.MaxValue }.SelectMany(keys => new[] { false, true }.Select(right => For(headDim, keys, right))).Distinct();

    // Ping-pong and warp specialisation are on in every default (the ablation switches them off); the intra-warpgroup
    // overlap measured slower than the sequential loop at d64 and d128 (2026-11-25-h100-b80f754).
    private static ForwardVariant Tile(int headDim, int blockN, int stages, int qBuffers = 1, bool qInRegisters = false,
        int consumers = 2, ForwardLoop loop = ForwardLoop.Sequential, OutputStaging oStaging = OutputStaging.OwnBuffer)
        => new(headDim, blockN, stages, loop, PingPong: true, oStaging, WarpSpecialized: true, qBuffers, qInRegisters, consumers);
}
