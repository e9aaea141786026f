namespace FlashAttention.Numerics;

/// <summary>
/// What <see cref="Float8E4M3"/> and <see cref="Float8E5M2"/> share, so code such as <see cref="BlockQuantizer"/> can be
/// written once for both formats (the JIT specialises it per format).
/// </summary>
/// <typeparam name="TSelf">The implementing 8-bit float type.</typeparam>
public interface IFloat8<TSelf> where TSelf : unmanaged, IFloat8<TSelf>
{
    /// <summary>The raw code: 1 sign bit, then exponent and mantissa bits.</summary>
    byte Bits { get; }

    /// <summary>Reinterprets a code.</summary>
    static abstract TSelf FromBits(byte bits);

    /// <summary>The largest finite value (448 for E4M3, 57344 for E5M2).</summary>
    static abstract float MaxFinite { get; }

    /// <summary>Exact widening to float32.</summary>
    static abstract float ToSingle(TSelf value);

    /// <summary>Round-to-nearest-even narrowing; out-of-range values become the format's overflow value (see the type's remarks).</summary>
    static abstract TSelf FromSingle(float value);

    /// <summary>Round-to-nearest-even narrowing that clamps out-of-range values (±∞ included) to ±<see cref="MaxFinite"/>; NaN stays NaN.</summary>
    static abstract TSelf FromSingleSaturating(float value);

    /// <summary>Vectorised exact widening of every element.</summary>
    static abstract void ConvertToSingle(ReadOnlySpan<TSelf> source, Span<float> destination);

    /// <summary>Vectorised saturating narrowing of <c>source[i] · scale</c> (the multiply in float32, then one rounding to the format).</summary>
    static abstract void ConvertFromSingleSaturating(ReadOnlySpan<float> source, Span<TSelf> destination, float scale = 1f);
}
