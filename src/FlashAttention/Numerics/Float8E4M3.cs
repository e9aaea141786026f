using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FlashAttention.Numerics;

/// <summary>
/// FP8 E4M3, the OCP "e4m3fn" variant that Hopper's tensor cores use: 1 sign, 4 exponent (bias 7) and 3 mantissa bits;
/// subnormals (smallest 2^-9); largest finite ±448; no infinities; NaN is S.1111.111 (0x7F / 0xFF).
/// </summary>
/// <remarks>
/// <para>Narrowing rounds to nearest, ties to even, and handles subnormals exactly. Two flavours, as on the GPU:</para>
/// <list type="bullet">
/// <item><see cref="FromSingle"/> (and the explicit cast) is the non-saturating conversion of the OCP FP8 specification and of
///   <c>__nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E4M3)</c>: a value whose rounded magnitude would exceed 448 (that is
///   |x| &gt; 464, the midpoint to the next would-be value 480, which ties to even 448), and ±∞, become NaN. The format has no
///   infinity, and NaN is the only honest answer for a value it cannot hold; PyTorch's <c>float8_e4m3fn</c> cast does the same.</item>
/// <item><see cref="FromSingleSaturating"/> is <c>cvt.rn.satfinite.e4m3x2.f32</c>: out-of-range values and ±∞ clamp to ±448,
///   NaN stays NaN. This is what quantisation uses.</item>
/// </list>
/// <para>Conversions keep the sign of NaN (0x7F or 0xFF). Widening (<see cref="ToSingle(Float8E4M3)"/>) is exact; NaN widens to a
/// quiet float NaN of the same sign.</para>
/// </remarks>
[StructLayout(LayoutKind.Sequential, Size = 1)]
public readonly struct Float8E4M3 : IFloat8<Float8E4M3>, IEquatable<Float8E4M3>, IComparable<Float8E4M3>, IFormattable
{
    private static readonly float[] Table = Fp8Codec.BuildTable<E4M3Format>();
    private readonly byte _bits;

    private Float8E4M3(byte bits) => _bits = bits;

    /// <inheritdoc/>
    public byte Bits => _bits;

    /// <inheritdoc/>
    public static Float8E4M3 FromBits(byte bits) => new(bits);

    /// <summary>448, the largest finite value.</summary>
    public static float MaxFinite => 448f;

    /// <summary>+0.</summary>
    public static Float8E4M3 Zero => new(0x00);
    /// <summary>1.</summary>
    public static Float8E4M3 One => new(0x38);
    /// <summary>The NaN conversions produce (0x7F).</summary>
    public static Float8E4M3 NaN => new(0x7F);
    /// <summary>+448 (0x7E).</summary>
    public static Float8E4M3 MaxValue => new(0x7E);
    /// <summary>−448 (0xFE).</summary>
    public static Float8E4M3 MinValue => new(0xFE);
    /// <summary>The smallest positive value, the subnormal 2^-9 (0x01).</summary>
    public static Float8E4M3 Epsilon => new(0x01);

    /// <summary>True for the two NaN codes, 0x7F and 0xFF.</summary>
    public bool IsNaN => (_bits & 0x7F) == 0x7F;

    /// <summary>Non-saturating round-to-nearest-even code of <paramref name="value"/> (overflow and ±∞ give NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte RoundToBits(float value) => Fp8Codec.Encode<E4M3Format>(value, saturate: false);

    /// <summary>Saturating round-to-nearest-even code of <paramref name="value"/> (overflow and ±∞ give ±448, NaN gives NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte RoundToBitsSaturating(float value) => Fp8Codec.Encode<E4M3Format>(value, saturate: true);

    /// <summary>Exact value of a code.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(byte bits) => Table[bits];

    /// <inheritdoc/>
    public static float ToSingle(Float8E4M3 value) => Table[value._bits];

    /// <inheritdoc/>
    public static Float8E4M3 FromSingle(float value) => new(RoundToBits(value));

    /// <inheritdoc/>
    public static Float8E4M3 FromSingleSaturating(float value) => new(RoundToBitsSaturating(value));

    /// <summary>Non-saturating conversion (see the remarks on the type).</summary>
    public static explicit operator Float8E4M3(float value) => FromSingle(value);
    /// <summary>Exact widening.</summary>
    public static implicit operator float(Float8E4M3 value) => Table[value._bits];

    /// <inheritdoc/>
    public static void ConvertToSingle(ReadOnlySpan<Float8E4M3> source, Span<float> destination)
        => Fp8Codec.Decode<E4M3Format>(MemoryMarshal.AsBytes(source), destination, Table);

    /// <summary>Vectorised non-saturating narrowing (overflow and ±∞ give NaN).</summary>
    public static void ConvertFromSingle(ReadOnlySpan<float> source, Span<Float8E4M3> destination)
        => Fp8Codec.Encode<E4M3Format>(source, MemoryMarshal.AsBytes(destination), saturate: false);

    /// <inheritdoc/>
    public static void ConvertFromSingleSaturating(ReadOnlySpan<float> source, Span<Float8E4M3> destination, float scale = 1f)
        => Fp8Codec.Encode<E4M3Format>(source, MemoryMarshal.AsBytes(destination), saturate: true, scale);

    /// <summary>
    /// Rounds every value to the nearest E4M3 value and widens it back, in one vectorised pass: what a kernel's operand
    /// looks like after a cast to E4M3. <paramref name="source"/> and <paramref name="destination"/> may be the same span.
    /// </summary>
    public static void Round(ReadOnlySpan<float> source, Span<float> destination, bool saturate = true)
        => Fp8Codec.Round<E4M3Format>(source, destination, saturate, Table);

    /// <summary>Equal values (so +0 equals −0, and NaN equals nothing, itself included).</summary>
    public bool Equals(Float8E4M3 other) => !IsNaN && !other.IsNaN && (_bits == other._bits || ((_bits | other._bits) & 0x7F) == 0);
    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Float8E4M3 other && Equals(other);
    /// <inheritdoc/>
    public override int GetHashCode() => ((_bits & 0x7F) == 0 ? 0 : _bits).GetHashCode();
    /// <inheritdoc/>
    public int CompareTo(Float8E4M3 other) => ((float)this).CompareTo((float)other);
    /// <summary>Value equality, see <see cref="Equals(Float8E4M3)"/>.</summary>
    public static bool operator ==(Float8E4M3 a, Float8E4M3 b) => a.Equals(b);
    /// <summary>Value inequality, see <see cref="Equals(Float8E4M3)"/>.</summary>
    public static bool operator !=(Float8E4M3 a, Float8E4M3 b) => !a.Equals(b);

    /// <inheritdoc/>
    public override string ToString() => ((float)this).ToString(CultureInfo.InvariantCulture);
    /// <inheritdoc/>
    public string ToString(string? format, IFormatProvider? formatProvider) => ((float)this).ToString(format, formatProvider);
}
