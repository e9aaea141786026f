namespace FlashAttention.Cuda.Variants;

/// <summary>How a step's dQ = dS·K is split between the backward's two consumers (<c>fa::DqSplit</c>).</summary>
internal enum DqSplit
{
    /// <summary>Each consumer adds the partial sum over its own keys; no exchange.</summary>
    ByKeys = 1,
    /// <summary>Each consumer computes half of dQ's columns over all keys, exchanging dS through shared memory (d128).</summary>
    ByColumns = 2,
}

/// <summary>How a step's dQ block reaches the float32 accumulator (<c>fa::DqAdd</c>).</summary>
internal enum DqAdd
{
    /// <summary>Each consumer thread adds its values with vector reductions.</summary>
    Reduce = 1,
    /// <summary>The consumer stores the block to shared memory and a producer warp adds it with one bulk reduction.</summary>
    Bulk = 2,
}

/// <summary>
/// One backward kernel variant: the C# twin of <c>fa::BwdVariant</c> (Cuda/Kernels/bwd/bwd_config.cuh), field for field,
/// with the launch geometry and name expressions derived from it.
/// </summary>
internal sealed record BackwardVariant(int HeadDim, int Stages, DqSplit DqSplit, bool Softcap, DqAdd DqAdd, bool OverlapDv,
    bool SplitSdP, int BlockM, bool Varlen = false)
{
    public const int Threads = 384;

    /// <summary>Rows of the TMA boxes that bring Q and dO (a 128-query step loads two).</summary>
    public const int TmaRows = 64;

    /// <summary>Keys per CTA: 128 (64 per consumer); at d256 both consumers share 64 keys and split the columns.</summary>
    public int BlockN => HeadDim == 256 ? 64 : 128;

    /// <summary>Dynamic shared memory per CTA, as <c>BwdConfig::kSmemBytes</c> lays it out (checked against it by KernelBuildTests).</summary>
    public int SharedMemoryBytes
    {
        get
        {
            int slabs = HeadDim / 64;
            int kBytes = BlockN * 128 * slabs, qBytes = BlockM * 128 * slabs, dsBytes = BlockM * 128 * (BlockN / 64), rowBytes = BlockM * 4;
            int dsBuffers = BlockM == 128 ? 1 : 2;
            int dqBytes = DqAdd == DqAdd.Bulk ? 2 * BlockM * 64 * 4 : 0;
            int exchangeBytes = SplitSdP ? 2 * 128 * (BlockM / 4) * 4 : 0;
            int barriers = 1 + 2 * Stages + 4;
            return 1024 + 2 * kBytes + 2 * Stages * qBytes + dsBuffers * dsBytes + 2 * Stages * rowBytes + dqBytes + exchangeBytes + 8 * barriers;
        }
    }

    public string NameExpression(DataType type)
        => $"fa::flash_bwd_kernel<fa::BwdConfig<{KernelNames.ElementTag(type)}, fa::BwdVariant{{.head_dim = {HeadDim}, .stages = {Stages}, " +
           $".dq_split = fa::DqSplit::k{DqSplit}, .softcap = {KernelNames.Bool(Softcap)}, .dq_add = fa::DqAdd::k{DqAdd}, " +
           $".overlap_dv = {KernelNames.Bool(OverlapDv)}, .split_sdp = {KernelNames.Bool(SplitSdP)}, .block_m = {BlockM}, .varlen = {KernelNames.Bool(Varlen)}}}>>";

    public string PreprocessExpression(DataType type) => $"fa::flash_bwd_preprocess<{KernelNames.ElementTag(type)}, {HeadDim}>";
    public string PostprocessExpression(DataType type) => $"fa::flash_bwd_postprocess<{KernelNames.ElementTag(type)}, {HeadDim}>";

    /// <summary>What sets this variant apart, for warm-up labels and logs.</summary>
    public override string ToString()
        => $"d{HeadDim} {BlockM}x{BlockN} stages {Stages}{(DqSplit == DqSplit.ByColumns ? " dS-exchange" : "")}{(DqAdd == DqAdd.Bulk ? " dQ-bulk" : " dQ-red")}" +
           $"{(OverlapDv ? " dV-overlap" : "")}{(SplitSdP ? " split-SdP" : "")}{(Softcap ? " softcap" : "")}{(Varlen ? " varlen" : "")}";
}
