using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FlashAttention.Numerics;

/// <summary>
/// FP8 E5M2: 1 sign, 5 exponent (bias 15) and 2 mantissa bits, IEEE-754-like: subnormals (smallest 2^-16), largest finite
/// ±57344, infinities S.11111.00 (0x7C / 0xFC) and NaNs S.11111.{01,10,11}. It is binary16 with the low 8 bits cut off.
/// </summary>
/// <remarks>
/// <para>Narrowing rounds to nearest, ties to even, and handles subnormals exactly. Two flavours, as on the GPU:</para>
/// <list type="bullet">
/// <item><see cref="FromSingle"/> (and the explicit cast) is the IEEE-style non-saturating conversion (OCP FP8 specification,
///   <c>__nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E5M2)</c>): |x| ≥ 61440, the midpoint between 57344 and 2^16 (which ties to
///   even, i.e. up), becomes ±∞, as <see cref="Half"/> does on its own overflow; ±∞ stays ±∞.</item>
/// <item><see cref="FromSingleSaturating"/> is <c>cvt.rn.satfinite.e5m2x2.f32</c>: out-of-range values and ±∞ clamp to ±57344,
///   NaN stays NaN.</item>
/// </list>
/// <para>NaN converts to the quiet NaN 0x7E (0xFE when negative), the top byte of binary16's canonical NaN. Widening
/// (<see cref="ToSingle(Float8E5M2)"/>) is exact; every NaN code widens to a quiet float NaN of the same sign.</para>
/// </remarks>
[StructLayout(LayoutKind.Sequential, Size = 1)]
public readonly struct Float8E5M2 : IFloat8<Float8E5M2>, IEquatable<Float8E5M2>, IComparable<Float8E5M2>, IFormattable
{
    private static readonly float[] Table = Fp8Codec.BuildTable<E5M2Format>();
    private readonly byte _bits;

    private Float8E5M2(byte bits) => _bits = bits;

    /// <inheritdoc/>
    public byte Bits => _bits;

    /// <inheritdoc/>
    public static Float8E5M2 FromBits(byte bits) => new(bits);

    /// <summary>57344, the largest finite value.</summary>
    public static float MaxFinite => 57344f;

    /// <summary>+0.</summary>
    public static Float8E5M2 Zero => new(0x00);
    /// <summary>1.</summary>
    public static Float8E5M2 One => new(0x3C);
    /// <summary>The NaN conversions produce (0x7E).</summary>
    public static Float8E5M2 NaN => new(0x7E);
    /// <summary>+∞ (0x7C).</summary>
    public static Float8E5M2 PositiveInfinity => new(0x7C);
    /// <summary>−∞ (0xFC).</summary>
    public static Float8E5M2 NegativeInfinity => new(0xFC);
    /// <summary>+57344 (0x7B).</summary>
    public static Float8E5M2 MaxValue => new(0x7B);
    /// <summary>−57344 (0xFB).</summary>
    public static Float8E5M2 MinValue => new(0xFB);
    /// <summary>The smallest positive value, the subnormal 2^-16 (0x01).</summary>
    public static Float8E5M2 Epsilon => new(0x01);

    /// <summary>True for the six NaN codes, S.11111.{01,10,11}.</summary>
    public bool IsNaN => (_bits & 0x7F) > 0x7C;

    /// <summary>True for ±∞.</summary>
    public bool IsInfinity => (_bits & 0x7F) == 0x7C;

    /// <summary>Non-saturating round-to-nearest-even code of <paramref name="value"/> (overflow gives ±∞).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte RoundToBits(float value) => Fp8Codec.Encode<E5M2Format>(value, saturate: false);

    /// <summary>Saturating round-to-nearest-even code of <paramref name="value"/> (overflow and ±∞ give ±57344, NaN gives NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte RoundToBitsSaturating(float value) => Fp8Codec.Encode<E5M2Format>(value, saturate: true);

    /// <summary>Exact value of a code.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(byte bits) => Table[bits];

    /// <inheritdoc/>
    public static float ToSingle(Float8E5M2 value) => Table[value._bits];

    /// <inheritdoc/>
    public static Float8E5M2 FromSingle(float value) => new(RoundToBits(value));

    /// <inheritdoc/>
    public static Float8E5M2 FromSingleSaturating(float value) => new(RoundToBitsSaturating(value));

    /// <summary>Non-saturating conversion (see the remarks on the type).</summary>
    public static explicit operator Float8E5M2(float value) => FromSingle(value);
    /// <summary>Exact widening.</summary>
    public static implicit operator float(Float8E5M2 value) => Table[value._bits];

    /// <inheritdoc/>
    public static void ConvertToSingle(ReadOnlySpan<Float8E5M2> source, Span<float> destination)
        => Fp8Codec.Decode<E5M2Format>(MemoryMarshal.AsBytes(source), destination, Table);

    /// <summary>Vectorised non-saturating narrowing (overflow gives ±∞).</summary>
    public static void ConvertFromSingle(ReadOnlySpan<float> source, Span<Float8E5M2> destination)
        => Fp8Codec.Encode<E5M2Format>(source, MemoryMarshal.AsBytes(destination), saturate: false);

    /// <inheritdoc/>
    public static void ConvertFromSingleSaturating(ReadOnlySpan<float> source, Span<Float8E5M2> destination, float scale = 1f)
        => Fp8Codec.Encode<E5M2Format>(source, MemoryMarshal.AsBytes(destination), saturate: true, scale);

    /// <summary>
    /// Rounds every value to the nearest E5M2 value and widens it back, in one vectorised pass: what a kernel's operand
    /// looks like after a cast to E5M2. <paramref name="source"/> and <paramref name="destination"/> may be the same span.
    /// </summary>
    public static void Round(ReadOnlySpan<float> source, Span<float> destination, bool saturate = true)
        => Fp8Codec.Round<E5M2Format>(source, destination, saturate, Table);

    /// <summary>Equal values (so +0 equals −0, and NaN equals nothing, itself included).</summary>
    public bool Equals(Float8E5M2 other) => !IsNaN && !other.IsNaN && (_bits == other._bits || ((_bits | other._bits) & 0x7F) == 0);
    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Float8E5M2 other && Equals(other);
    /// <inheritdoc/>
    public override int GetHashCode() => ((_bits & 0x7F) == 0 ? 0 : _bits).GetHashCode();
    /// <inheritdoc/>
    public int CompareTo(Float8E5M2 other) => ((float)this).CompareTo((float)other);
    /// <summary>Value equality, see <see cref="Equals(Float8E5M2)"/>.</summary>
    public static bool operator ==(Float8E5M2 a, Float8E5M2 b) => a.Equals(b);
    /// <summary>Value inequality, see <see cref="Equals(Float8E5M2)"/>.</summary>
    public static bool operator !=(Float8E5M2 a, Float8E5M2 b) => !a.Equals(b);

    /// <inheritdoc/>
    public override string ToString() => ((float)this).ToString(CultureInfo.InvariantCulture);
    /// <inheritdoc/>
    public string ToString(string? format, IFormatProvider? formatProvider) => ((float)this).ToString(format, formatProvider);
}
