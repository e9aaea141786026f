namespace FlashAttention.Cuda.Variants;

/// <summary>How a consumer warpgroup orders a key block's two GEMMs and its softmax (<c>fa::FwdLoop</c>).</summary>
internal enum ForwardLoop
{
    /// <summary>S, softmax, P·V in turn; ping-pong overlaps one consumer's softmax with the other's GEMMs.</summary>
    Sequential = 1,
    /// <summary>Intra-warpgroup overlap: block j's softmax runs while P·V of block j+1 and S of block j−1 compute.</summary>
    Overlapped = 2,
    /// <summary>One turn issues block j's P·V and block j−1's S back to back, waited for together.</summary>
    Chained = 3,
}

/// <summary>Where the forward's epilogue stages O before its TMA store (<c>fa::OStaging</c>).</summary>
internal enum OutputStaging
{
    /// <summary>A buffer of its own: Q's buffer is free once the tile's last S is done.</summary>
    OwnBuffer = 1,
    /// <summary>Q's buffer, when shared memory is short: the next tile's Q waits for the store.</summary>
    QBuffer = 2,
    /// <summary>Half of O at a time, through a buffer half O's size.</summary>
    TwoPasses = 3,
}

/// <summary>
/// One forward kernel variant: the C# twin of <c>fa::FwdVariant</c> (Cuda/Kernels/fwd/fwd_config.cuh), field for field.
/// The name expression, the label and the shared-memory size all derive from it here; a test compares the fields
/// with the header's and another compiles every catalogue variant.
/// </summary>
internal sealed record ForwardVariant(int HeadDim, int BlockN, int Stages, ForwardLoop Loop, bool PingPong,
    OutputStaging OStaging, bool WarpSpecialized, int QBuffers, bool QInRegisters, int Consumers, bool Varlen = false)
{
    /// <summary>Query rows per tile: 64 per consumer warpgroup.</summary>
    public int BlockM => 64 * Consumers;

    /// <summary>Threads per CTA: the consumers and, when warp-specialised, the producer warpgroup.</summary>
    public int Threads => 128 * (Consumers + (WarpSpecialized ? 1 : 0));

    /// <summary>Dynamic shared memory per CTA, as <c>FwdConfig::kSmemBytes</c> lays it out (checked against it by KernelBuildTests).</summary>
    public int SharedMemoryBytes
    {
        get
        {
            int slabs = HeadDim / 64, qBytes = BlockM * 128 * slabs, kBytes = BlockN * 128 * slabs;
            int oBytes = OStaging switch { OutputStaging.QBuffer => 0, OutputStaging.TwoPasses => qBytes / 2, _ => qBytes };
            int barriers = 8 * (2 * QBuffers + 4 * Stages), tileSlots = 8 * QBuffers;
            return 1024 + QBuffers * qBytes + 2 * Stages * kBytes + oBytes + barriers + tileSlots;
        }
    }

    /// <summary>The NVRTC name expression of the kernel: every field named, so the compiler checks them against the header's.</summary>
    public string NameExpression(DataType type)
        => $"fa::flash_fwd_kernel<fa::FwdConfig<{KernelNames.ElementTag(type)}, fa::FwdVariant{{.head_dim = {HeadDim}, .block_n = {BlockN}, " +
           $".stages = {Stages}, .loop = fa::FwdLoop::k{Loop}, .ping_pong = {KernelNames.Bool(PingPong)}, .o_staging = fa::OStaging::k{OStaging}, " +
           $".warp_specialized = {KernelNames.Bool(WarpSpecialized)}, .q_buffers = {QBuffers}, .q_in_registers = {KernelNames.Bool(QInRegisters)}, " +
           $".consumers = {Consumers}, .varlen = {KernelNames.Bool(Varlen)}}}>>";

    /// <summary>What sets the variant apart, for warm-up labels and logs.</summary>
    public override string ToString()
        => $"d{HeadDim} {BlockM}x{BlockN} stages {Stages}{(QBuffers > 1 ? $" q{QBuffers}" : "")}{(WarpSpecialized ? "" : " no-ws")}" +
           $" {Loop switch { ForwardLoop.Overlapped => "overlap", ForwardLoop.Chained => "chained", _ => "sequential" }}" +
           $"{(PingPong ? " ping-pong" : "")}{OStaging switch { OutputStaging.QBuffer => " O-in-Q", OutputStaging.TwoPasses => " O-in-2-passes", _ => "" }}" +
           $"{(QInRegisters ? " Q-in-registers" : "")}{(Varlen ? " varlen" : "")}";
}

/// <summary>Element tags and literals of the kernels' C++ name expressions.</summary>
internal static class KernelNames
{
    public static string ElementTag(DataType type) => type switch
    {
        DataType.BFloat16 => "fa::bf16_t",
        DataType.Float16 => "fa::half_t",
        DataType.Float8E4M3 => "fa::e4m3_t",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "no kernel element type"),
    };

    public static string Bool(bool value) => value ? "true" : "false";
}
