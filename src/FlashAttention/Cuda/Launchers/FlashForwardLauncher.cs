using FlashAttention.Cuda.Variants;

namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// Launches the FlashAttention-3 forward kernel (fwd/flash_fwd.cu) for a validated problem: takes the variant from the
/// <see cref="VariantPolicy"/>, builds the TMA maps of Q, K, V and O, fills <see cref="FwdParams"/>, and launches a
/// persistent grid of at most one CTA per SM over the (query block, head, batch) tiles. Decode-shaped problems (a few
/// query rows) go to the decode kernel instead (<see cref="FlashDecodeLauncher"/>).
/// </summary>
internal static class FlashForwardLauncher
{
    public static void Launch(AttentionProblem p, in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        TensorLayout? lse, CudaStream? stream, CudaDevice device)
    {
        if (p.Batch == 0 || p.SeqLenQ == 0) return;
        var policy = VariantPolicy.Current;
        if (policy.ForwardTakesDecode(p))
        {
            // Few query rows: a 128-row tile would hold at most 16 live ones; the decode kernel packs a KV head's query
            // heads into one tile and splits the keys across the SMs.
            FlashDecodeLauncher.LaunchDense(p, q, k, v, o, lse, stream, device);
            return;
        }
        var config = policy.Forward(p.HeadDim, p.SeqLenK, keysCutFromRight: p.WindowRight >= 0);
        var entry = KernelCatalog.ForwardEntry(p.Type, config);
        var kernel = Compiler.KernelModuleCache.For(device).GetKernel(entry.Spec, entry.NameExpression);

        var (args, tiles) = TileParams(p, config.BlockM, config.WarpSpecialized, lse, policy, stream, device);
        var arguments = new KernelArguments()
            .Add(args)
            .Add(AttentionTensorMaps.Tokens(q, (uint)config.BlockM, device))
            .Add(AttentionTensorMaps.Tokens(k, (uint)config.BlockN, device))
            .Add(AttentionTensorMaps.Tokens(v, (uint)config.BlockN, device))
            .Add(AttentionTensorMaps.Tokens(o, 64, device));
        int grid = (int)Math.Min(tiles, device.MultiprocessorCount);
        kernel.Launch(new LaunchConfig(grid, config.Threads, config.SharedMemoryBytes, stream), arguments);
    }

    /// <summary>
    /// The forward's <see cref="FwdParams"/> and tile count for tiles of <paramref name="blockM"/> query rows: the mask,
    /// scale and softcap, the LSE's place, and the tile order and schedule (shared by the BF16 and FP8 kernels).
    /// </summary>
    internal static (FwdParams Args, long Tiles) TileParams(AttentionProblem p, int blockM, bool warpSpecialized, TensorLayout? lse,
        VariantPolicy policy, CudaStream? stream, CudaDevice device)
    {
        int mBlocks = (p.SeqLenQ + blockM - 1) / blockM;
        long tiles = (long)mBlocks * p.HeadsQ * p.Batch;
        bool softcap = p.Softcap > 0;
        bool longestFirst = p.WindowRight >= 0;
        // Tiles of different lengths are handed out as CTAs come free; equal ones by a fixed stride. Only a
        // producer warpgroup draws from the counter (the non-specialised ablation walks the fixed stride).
        bool dynamic = warpSpecialized && policy.DynamicSchedule(unequalTiles: longestFirst);
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
            LongestFirstHeads = !longestFirst ? 0
                : LongestFirstSectionHeads(p, dynamic ? null : device.MultiprocessorCount, policy.L2SectionBytes, blockM),
            HasSoftcap = softcap ? 1 : 0,
            SoftcapPremul = softcap ? p.Scale / p.Softcap : 0f,
            ScoreScale = softcap ? p.Softcap : p.Scale,
            ScoreScaleLog2 = (softcap ? p.Softcap : p.Scale) * 1.4426950408889634f,
            Lse = lse is { } l ? (nint)l.Address : 0,
            LseStrideB = p.Lse.Batch,
            LseStrideH = p.Lse.Head,
            LseStrideS = p.Lse.Query,
            TileCounter = dynamic ? TileCounters.For(device, stream) : 0,
        };
        return (args, tiles);
    }

    /// <summary>
    /// How many (batch, head) pairs a section of the heaviest-first tile order holds (tile_scheduler.cuh): as many as
    /// have their keys and values within <paramref name="sectionBytes"/> (query heads of one GQA group share theirs),
    /// at least one, at most all. Under the fixed-stride schedule (<paramref name="staticSmCount"/> given) also
    /// enough that a round of the grid (one tile per SM) spans at most a quarter of the query-block lengths: there
    /// each CTA takes one tile per round, and a round over few heads would hand out tiles of very different lengths.
    /// The dynamic schedule balances by itself; L2-sized sections suit it best (bench/results/2026-11-25-h100-6c83288).
    /// </summary>
    internal static int LongestFirstSectionHeads(AttentionProblem p, int? staticSmCount, long sectionBytes, int blockM = 128)
    {
        long kvBytesPerQueryHead = Math.Max(1L, 2L * p.SeqLenK * p.HeadDim * DataTypes.SizeOf(p.Type) / p.GroupSize);
        long heads = sectionBytes / kvBytesPerQueryHead;
        if (staticSmCount is int smCount)
        {
            long queryBlocks = (p.SeqLenQ + blockM - 1) / blockM;
            heads = Math.Max(heads, (4L * smCount + queryBlocks - 1) / queryBlocks);  // a round over ≤ queryBlocks/4 lengths
        }
        return (int)Math.Clamp(heads, 1L, (long)p.HeadsQ * p.Batch);
    }
}
