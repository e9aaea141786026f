namespace FlashAttention.Cuda.Variants;

/// <summary>Where the decode kernel's consumer warpgroup keeps Q (<c>fa::QSource</c>).</summary>
internal enum QSource
{
    /// <summary>The wgmma A fragment, loaded straight from global memory: no shared memory for Q.</summary>
    Registers = 1,
    /// <summary>A 128-byte-swizzled tile in shared memory: the registers go to O (d256).</summary>
    SharedMemory = 2,
}

/// <summary>
/// One decode kernel variant: the C# twin of <c>fa::DecodeVariant</c> (Cuda/Kernels/decode/decode_config.cuh), field for
/// field. The name expression, the label and the shared-memory size derive from it here; tests compare its fields with the
/// header's and KernelBuildTests compiles every catalogue variant and checks the size.
/// </summary>
internal sealed record DecodeVariant(int HeadDim, int BlockN, int Stages, QSource QSource, int CtasPerSm)
{
    /// <summary>Packed query rows (seqlen_q × the query heads of one KV head) per CTA: one consumer warpgroup.</summary>
    public const int BlockM = 64;

    /// <summary>Threads per CTA: the consumer warpgroup and the producer warp.</summary>
    public const int Threads = 160;

    /// <summary>Dynamic shared memory per CTA, as <c>DecodeConfig::kSmemBytes</c> lays it out (checked against it by KernelBuildTests).</summary>
    public int SharedMemoryBytes
    {
        get
        {
            int slabs = HeadDim / 64, kBytes = BlockN * 128 * slabs;
            int qBytes = QSource == QSource.SharedMemory ? BlockM * 128 * slabs : 0;
            return 1024 + 2 * Stages * kBytes + qBytes + 8 * 4 * Stages;
        }
    }

    /// <summary>The NVRTC name expression of the kernel: every field named, so the compiler checks them against the header's.</summary>
    public string NameExpression(DataType type)
        => $"fa::flash_decode_kernel<fa::DecodeConfig<{KernelNames.ElementTag(type)}, fa::DecodeVariant{{.head_dim = {HeadDim}, " +
           $".block_n = {BlockN}, .stages = {Stages}, .q_source = fa::QSource::k{QSource}, .ctas_per_sm = {CtasPerSm}}}>>";

    /// <summary>The append of new keys and values into the cache for this head dim, for calls with no queries (decode/kv_cache.cu).</summary>
    public string AppendExpression(DataType type) => $"fa::kv_append_kernel<{KernelNames.ElementTag(type)}, {HeadDim}>";

    /// <summary>What sets the variant apart, for warm-up labels and logs.</summary>
    public override string ToString()
        => $"d{HeadDim} {BlockM}x{BlockN} stages {Stages}{(QSource == QSource.SharedMemory ? " Q-in-smem" : " Q-in-registers")} {CtasPerSm}/SM";
}
