using System.Numerics.Tensors;
using FlashAttention.Cpu;

namespace FlashAttention.Numerics;

// Roundings of the unnormalised probability tile P = exp(S − running max) that the CPU engine applies after taking the
// row sum and before P·V (see IProbabilityRounding): what a GPU kernel does when it casts P to the type of V for the
// second GEMM. Values are in [0, 1].

/// <summary>P cast to FP8 E4M3, unscaled (P ≤ 1), as the FlashAttention-3 paper describes: values below 2^-10 flush to 0.</summary>
internal readonly struct E4M3ProbabilityRounding : IProbabilityRounding
{
    public static void Round(Span<float> probabilities) => Float8E4M3.Round(probabilities, probabilities);
}

/// <summary>
/// P multiplied by 2^8 before the cast to E4M3, as FlashAttention-3's code does (<c>Max_offset = 8</c> for FP8 in
/// <c>flash_fwd_kernel_sm90.h</c>), so P ∈ [0, 256] uses the normal range of E4M3. The kernel's row sum carries the same
/// 2^8 and cancels it; here the rounded value is multiplied back by 2^-8, which is exact, so the engine's sums are unchanged.
/// </summary>
internal readonly struct E4M3Offset8ProbabilityRounding : IProbabilityRounding
{
    public static void Round(Span<float> probabilities)
    {
        TensorPrimitives.Multiply(probabilities, 256f, probabilities);
        Float8E4M3.Round(probabilities, probabilities);
        TensorPrimitives.Multiply(probabilities, 1f / 256f, probabilities);
    }
}

/// <summary>P cast to IEEE binary16 (FlashAttention-2 in FP16).</summary>
internal readonly struct HalfProbabilityRounding : IProbabilityRounding
{
    public static void Round(Span<float> probabilities)
    {
        Span<Half> buffer = stackalloc Half[256];
        for (int start = 0; start < probabilities.Length; start += buffer.Length)
        {
            var chunk = probabilities.Slice(start, Math.Min(buffer.Length, probabilities.Length - start));
            var half = buffer[..chunk.Length];
            TensorPrimitives.ConvertToHalf(chunk, half);
            TensorPrimitives.ConvertToSingle(half, chunk);
        }
    }
}

/// <summary>P cast to bfloat16 (FlashAttention-2 in BF16).</summary>
internal readonly struct BFloat16ProbabilityRounding : IProbabilityRounding
{
    public static void Round(Span<float> probabilities) => BFloat16.Round(probabilities, probabilities);
}
