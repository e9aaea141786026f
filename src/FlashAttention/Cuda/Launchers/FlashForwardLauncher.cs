namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// Launches the FlashAttention-3 forward kernel (flash_fwd.cu) for a validated problem: picks the variant for the
/// head dim, builds the TMA maps of Q, K, V and O, fills <see cref="FwdParams"/>, and launches a persistent grid of
/// at most one CTA per SM over the (query block, head, batch) tiles.
/// </summary>
internal static class FlashForwardLauncher
{
    public static void Launch(AttentionProblem p, in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        TensorLayout? lse, CudaStream? stream, CudaDevice device, ForwardAblation? ablation = null)
    {
        if (p.Batch == 0 || p.SeqLenQ == 0) return;
        var config = TileTables.Forward(p.HeadDim, ablation);
        var entry = KernelCatalog.Forward(p.Type, config, config.ToString());
        var kernel = Compiler.KernelModuleCache.For(device).GetKernel(entry.Spec, entry.NameExpression);

        int mBlocks = (p.SeqLenQ + ForwardKernelConfig.BlockM - 1) / ForwardKernelConfig.BlockM;
        long tiles = (long)mBlocks * p.HeadsQ * p.Batch;
        bool softcap = p.Softcap > 0;
        var args = new FwdParams
        {
            Batch = p.Batch,
            SeqLenQ = p.SeqLenQ,
            SeqLenK = p.SeqLenK,
            HeadsQ = p.HeadsQ,
            HeadsK = p.HeadsK,
            Group = p.GroupSize,
            WindowLeft = p.WindowLeft,
            WindowRight = p.WindowRight,
            NumMBlocks = mBlocks,
            NumTiles = (int)tiles,
            // Masks that cut keys from the right make later query blocks heavier: hand those out first, within
            // sections of heads whose K/V fit L2.
            LongestFirstHeads = p.WindowRight < 0 ? 0
                : long.TryParse(Environment.GetEnvironmentVariable(SectionOverrideVariable), out long bytes) && bytes > 0
                    ? LongestFirstSectionHeads(p, smCount: 1, bytes)  // the test override sizes sections alone
                    : LongestFirstSectionHeads(p, device.MultiprocessorCount),
            HasSoftcap = softcap ? 1 : 0,
            SoftcapPremul = softcap ? p.Scale / p.Softcap : 0f,
            ScoreScale = softcap ? p.Softcap : p.Scale,
            ScoreScaleLog2 = (softcap ? p.Softcap : p.Scale) * 1.4426950408889634f,
            Lse = lse is { } l ? (nint)l.Address : 0,
            LseStrideB = p.Lse.Batch,
            LseStrideH = p.Lse.Head,
            LseStrideS = p.Lse.Query,
        };
        var arguments = new KernelArguments()
            .Add(args)
            .Add(AttentionTensorMaps.Tokens(q, ForwardKernelConfig.BlockM, device))
            .Add(AttentionTensorMaps.Tokens(k, (uint)config.BlockN, device))
            .Add(AttentionTensorMaps.Tokens(v, (uint)config.BlockN, device))
            .Add(AttentionTensorMaps.Tokens(o, 64, device));
        int grid = (int)Math.Min(tiles, device.MultiprocessorCount);
        kernel.Launch(new LaunchConfig(grid, config.Threads, config.SharedMemoryBytes, stream), arguments);
    }

    /// <summary>The part of L2 (50 MB on the H100) the K/V of one section of a heaviest-first schedule may fill.</summary>
    internal const long SectionL2Bytes = 32L << 20;

    /// <summary>
    /// Test override (not a user option): <c>FLASHATTN_L2_SECTION_BYTES=262144</c> makes sections small, so that
    /// `verify` covers schedules of many sections (and an uneven last one) on its small problems.
    /// </summary>
    public const string SectionOverrideVariable = "FLASHATTN_L2_SECTION_BYTES";

    /// <summary>
    /// How many (batch, head) pairs a section of the heaviest-first tile order holds (tile_scheduler.cuh): as many as
    /// have their keys and values within <see cref="SectionL2Bytes"/> (query heads of one GQA group share theirs),
    /// but enough that a round of the grid (one tile per SM) spans at most a quarter of the query-block lengths, and
    /// at most all. The floor keeps the load balanced: with sections of 2 heads at d256 causal 16k a round spanned
    /// half of the lengths and ran at 482 against 576 TFLOP/s without sections; a floor of a quarter of the SM count
    /// whatever the length cost d64 ~10% (its L2-sized sections already spanned few lengths). (Taking rounds in
    /// alternating CTA order was measured too: 5–12% slower.)
    /// </summary>
    internal static int LongestFirstSectionHeads(AttentionProblem p, int smCount, long sectionBytes = SectionL2Bytes)
    {
        long kvBytesPerQueryHead = Math.Max(1L, 2L * p.SeqLenK * p.HeadDim * DataTypes.SizeOf(p.Type) / p.GroupSize);
        long queryBlocks = (p.SeqLenQ + ForwardKernelConfig.BlockM - 1) / ForwardKernelConfig.BlockM;
        long balanced = (4L * smCount + queryBlocks - 1) / queryBlocks;  // a round of smCount tiles over ≤ queryBlocks/4 lengths
        long heads = Math.Max(sectionBytes / kvBytesPerQueryHead, balanced);
        return (int)Math.Clamp(heads, 1L, (long)p.HeadsQ * p.Batch);
    }
}
