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
            // Masks that cut keys from the right make later query blocks heavier: hand those out first.
            LongestFirst = p.WindowRight >= 0 ? 1 : 0,
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
}
