namespace FlashAttention.Cpu;

/// <summary>
/// How the CPU engine's forward rounds a tile of unnormalised probabilities <c>P = exp(S − running max)</c>
/// before the <c>P·V</c> product, so low-precision kernels (FP16/BF16 P, FP8 E4M3 P) can be emulated through the
/// same tiled online-softmax code. The row sums are always taken from the unrounded values, as on the GPU.
/// </summary>
internal interface IProbabilityRounding
{
    /// <summary>Rounds <paramref name="probabilities"/> in place (values in [0, 1]).</summary>
    static abstract void Round(Span<float> probabilities);
}

/// <summary>P stays float32: the engine's normal path.</summary>
internal readonly struct NoRounding : IProbabilityRounding
{
    public static void Round(Span<float> probabilities) { }
}
