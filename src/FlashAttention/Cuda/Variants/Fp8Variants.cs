namespace FlashAttention.Cuda.Variants;

/// <summary>
/// Which FP8 forward variant runs for which head dim, and the quantiser's block sizes: the whole FP8 tile policy in one
/// table. At d64 and d128 the exponentials, not the tensor cores, bound the kernel: three consumers (192-row tiles, as
/// FlashAttention-3's FP8 d64) hide each one's softmax behind two siblings' GEMMs, at 128-key blocks (160 registers
/// hold no more), 2-15% over two consumers with 256-key blocks (bench/results/2026-12-06-h100, call 2).
/// </summary>
internal static class Fp8Variants
{
    public static readonly int[] HeadDims = [64, 128, 256];

    /// <summary>Tokens per Q descale block of the quantiser: one consumer warpgroup's rows.</summary>
    public const int QueryBlock = 64;

    public static Fp8Variant For(int headDim) => headDim switch
    {
        64 => new Fp8Variant(64, BlockN: 128, Stages: 2, QBuffers: 2, OutputStaging.OwnBuffer, PingPong: true, PolyExpEvery: 0, Consumers: 3),
        128 => new Fp8Variant(128, BlockN: 128, Stages: 3, QBuffers: 2, OutputStaging.OwnBuffer, PingPong: true, PolyExpEvery: 0, Consumers: 3),
        // Two Q buffers and two K/Vᵀ stages of 32 KB each leave room for half of O's 64 KB.
        256 => new Fp8Variant(256, BlockN: 128, Stages: 2, QBuffers: 2, OutputStaging.TwoPasses, PingPong: true, PolyExpEvery: 0, Consumers: 2),
        _ => throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"no FP8 kernel for head dim {headDim}; the GPU takes {string.Join(", ", HeadDims)}"),
    };

    /// <summary>
    /// Tokens per K/V descale block of the quantiser: a multiple of every variant's key block, so that each key block the
    /// kernel walks has one K and one V descale to fold into its softmax. One number for every head dim keeps the
    /// pre-quantised API's contract (<see cref="CudaAttention.Fp8KeyBlock"/>) apart from tile tuning.
    /// </summary>
    public const int KeyBlock = 128;

    /// <summary>
    /// The quantiser's launch at a head dim (see <see cref="QuantizerShape"/>). A CTA per job where the SM's 2-4 CTAs already
    /// overlap one another's loads (d64 87-88%, d128 89-90% of the copy against 63-65% and 75-76% resident); resident at
    /// d256, whose one 1024-thread CTA per SM otherwise waits on its own loads (77-79% against 75%; H100,
    /// bench/results/2026-12-06-h100 call 11).
    /// </summary>
    public static QuantizerShape Quantizer(int headDim) => new(headDim, KeyBlock, Resident: headDim >= 256);

    /// <summary>Tokens per CTA of the plain transpose of a caller's E4M3 V (which has no descales).</summary>
    public const int TransposeBlock = 64;
}

/// <summary>
/// The quantiser's launch shape (the C# twin of <c>fa::QuantizeConfig</c>, fp8/fp8_quantize.cu; KernelBuildTests checks the
/// size against it): a CTA of 32 elements a thread over one K/V descale block, 1024 threads per SM, two stages of every
/// thread's four 16-byte pieces (Resident) and the rotation's sign masks in dynamic shared memory. <paramref name="Resident"/>:
/// as many CTAs as fit at once, each walking every G-th job with the next one's copies in flight; else a CTA per job,
/// its pieces loaded straight into registers.
/// </summary>
internal sealed record QuantizerShape(int HeadDim, int KvBlock, bool Resident)
{
    public int Threads => KvBlock * HeadDim / 32;
    public int CtasPerSm => 32768 / (KvBlock * HeadDim);
    public int SharedMemoryBytes => (Resident ? 2 * Threads * 64 : 0) + 2 * HeadDim;
    /// <summary>The name of its config in the header, for the size check.</summary>
    public string ConfigExpression => $"fa::QuantizeConfig<{HeadDim}, {KvBlock}, {(Resident ? "true" : "false")}>";
    /// <summary>The NVRTC name expression of its kernel for an input type tag (fa::bf16_t, fa::half_t).</summary>
    public string NameExpression(string elementTag) => $"fa::fp8_quantize_qkv<{elementTag}, {HeadDim}, {KvBlock}, {(Resident ? "true" : "false")}>";
    /// <summary>CTAs of a launch over <paramref name="jobs"/> jobs on <paramref name="multiprocessors"/> SMs.</summary>
    public long Grid(long jobs, int multiprocessors) => Resident ? Math.Min(jobs, (long)multiprocessors * CtasPerSm) : jobs;
}
