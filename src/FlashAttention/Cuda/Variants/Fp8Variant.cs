namespace FlashAttention.Cuda.Variants;

/// <summary>
/// One FP8 forward kernel variant: the C# twin of <c>fa::Fp8Variant</c> (Cuda/Kernels/fp8/fp8_config.cuh), field for field.
/// 64 query rows per consumer warpgroup, E4M3 operands, bf16 or fp16 output (the kernel's first template argument).
/// </summary>
internal sealed record Fp8Variant(int HeadDim, int BlockN, int Stages, int QBuffers, OutputStaging OStaging, bool PingPong, int PolyExpEvery,
    int Consumers)
{
    /// <summary>Query rows per tile: 64 per consumer warpgroup.</summary>
    public int BlockM => 64 * Consumers;

    /// <summary>Threads per CTA: the consumers and the producer warpgroup.</summary>
    public int Threads => 128 * (Consumers + 1);

    /// <summary>Dynamic shared memory per CTA, as <c>Fp8Config::kSmemBytes</c> lays it out (checked against it by KernelBuildTests).</summary>
    public int SharedMemoryBytes
    {
        get
        {
            int qBytes = BlockM * HeadDim, kvBytes = BlockN * HeadDim, oBytes = BlockM * HeadDim * 2 / (OStaging == OutputStaging.TwoPasses ? 2 : 1);
            int barriers = 8 * (2 * QBuffers + 4 * Stages), tileSlots = 8 * QBuffers;
            return 1024 + QBuffers * qBytes + 2 * Stages * kvBytes + oBytes + barriers + tileSlots;
        }
    }

    public string NameExpression(DataType output)
        => $"fa::fp8_fwd_kernel<fa::Fp8Config<{KernelNames.ElementTag(output)}, fa::Fp8Variant{{.head_dim = {HeadDim}, .block_n = {BlockN}, .stages = {Stages}, " +
           $".q_buffers = {QBuffers}, .o_staging = fa::OStaging::k{OStaging}, .ping_pong = {KernelNames.Bool(PingPong)}, .poly_exp_every = {PolyExpEvery}, .consumers = {Consumers}}}>>";

    public override string ToString()
        => $"d{HeadDim} {BlockM}x{BlockN} stages {Stages}{(QBuffers > 1 ? $" q{QBuffers}" : "")}{(PingPong ? " ping-pong" : "")}" +
           $"{(PolyExpEvery > 0 ? $" poly-exp 1/{PolyExpEvery}" : "")}" +
           $"{(OStaging == OutputStaging.TwoPasses ? " O-in-2-passes" : "")}";
}
