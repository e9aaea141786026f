using System.Globalization;
using System.Runtime.CompilerServices;

namespace FlashAttention.Numerics;

/// <summary>
/// bfloat16: the upper 16 bits of an IEEE binary32 (1 sign, 8 exponent, 7 mantissa bits).
/// .NET 10 has no BCL type for it. Conversion from <see cref="float"/> rounds to nearest, ties to even,
/// as <c>cvt.rn.bf16.f32</c> does on the GPU; NaN stays NaN (quiet), infinities and signed zeros are kept.
/// </summary>
public readonly struct BFloat16 : IEquatable<BFloat16>, IComparable<BFloat16>, IFormattable
{
    /// <summary>The raw bits.</summary>
    public readonly ushort Bits;

    private BFloat16(ushort bits) => Bits = bits;

    /// <summary>Reinterprets 16 bits as a bfloat16.</summary>
    public static BFloat16 FromBits(ushort bits) => new(bits);

    public static BFloat16 Zero => new(0);
    public static BFloat16 One => new(0x3F80);
    public static BFloat16 NaN => new(0x7FC0);
    public static BFloat16 PositiveInfinity => new(0x7F80);
    public static BFloat16 NegativeInfinity => new(0xFF80);
    /// <summary>Largest finite value, 3.3895314e38.</summary>
    public static BFloat16 MaxValue => new(0x7F7F);

    /// <summary>Round-to-nearest-even conversion of the bits of a float to bfloat16 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort RoundToBits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u)
            return (ushort)((bits >> 16) | 0x0040); // NaN: keep sign and payload top bits, force quiet
        uint lsb = (bits >> 16) & 1u;
        bits += 0x7FFFu + lsb;
        return (ushort)(bits >> 16);
    }

    /// <summary>Widening conversion: exact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    public static explicit operator BFloat16(float value) => new(RoundToBits(value));
    public static explicit operator BFloat16(double value) => new(RoundToBits((float)value));
    public static implicit operator float(BFloat16 value) => ToSingle(value.Bits);
    public static implicit operator double(BFloat16 value) => ToSingle(value.Bits);

    public bool IsNaN => (Bits & 0x7FFF) > 0x7F80;

    public bool Equals(BFloat16 other) => !IsNaN && !other.IsNaN && (Bits == other.Bits || ((Bits | other.Bits) & 0x7FFF) == 0);
    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);
    public override int GetHashCode() => ((Bits & 0x7FFF) == 0 ? 0 : Bits).GetHashCode();
    public int CompareTo(BFloat16 other) => ((float)this).CompareTo((float)other);
    public static bool operator ==(BFloat16 a, BFloat16 b) => a.Equals(b);
    public static bool operator !=(BFloat16 a, BFloat16 b) => !a.Equals(b);

    public override string ToString() => ((float)this).ToString(CultureInfo.InvariantCulture);
    public string ToString(string? format, IFormatProvider? formatProvider) => ((float)this).ToString(format, formatProvider);
}
