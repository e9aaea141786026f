using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

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

    /// <summary>Vectorised exact widening: destination[i] = (float)source[i].</summary>
    public static void ConvertToSingle(ReadOnlySpan<BFloat16> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ReadOnlySpan<ushort> bits = MemoryMarshal.Cast<BFloat16, ushort>(source);
        ref ushort src = ref MemoryMarshal.GetReference(bits);
        ref uint dst = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(destination));
        int n = source.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= n - 32; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.LoadUnsafe(ref src, (nuint)i));
                (lo << 16).StoreUnsafe(ref dst, (nuint)i);
                (hi << 16).StoreUnsafe(ref dst, (nuint)i + 16);
            }
        else if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 16; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref src, (nuint)i));
                (lo << 16).StoreUnsafe(ref dst, (nuint)i);
                (hi << 16).StoreUnsafe(ref dst, (nuint)i + 8);
            }
        for (; i < n; i++) Unsafe.Add(ref dst, i) = (uint)Unsafe.Add(ref src, i) << 16;
    }

    /// <summary>Vectorised narrowing, round to nearest even, exactly as <see cref="RoundToBits"/> element by element.</summary>
    public static void ConvertFromSingle(ReadOnlySpan<float> source, Span<BFloat16> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ref uint src = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(source));
        ref ushort dst = ref MemoryMarshal.GetReference(MemoryMarshal.Cast<BFloat16, ushort>(destination));
        int n = source.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= n - 32; i += 32)
                Vector512.Narrow(RoundHigh(Vector512.LoadUnsafe(ref src, (nuint)i)) >> 16, RoundHigh(Vector512.LoadUnsafe(ref src, (nuint)i + 16)) >> 16)
                    .StoreUnsafe(ref dst, (nuint)i);
        else if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 16; i += 16)
                Vector256.Narrow(RoundHigh(Vector256.LoadUnsafe(ref src, (nuint)i)) >> 16, RoundHigh(Vector256.LoadUnsafe(ref src, (nuint)i + 8)) >> 16)
                    .StoreUnsafe(ref dst, (nuint)i);
        for (; i < n; i++) Unsafe.Add(ref dst, i) = RoundToBits(BitConverter.UInt32BitsToSingle(Unsafe.Add(ref src, i)));
    }

    /// <summary>
    /// Rounds every value to the nearest bfloat16 and widens it back, in one vectorised pass (what a kernel's operand looks
    /// like after a cast to bfloat16). <paramref name="source"/> and <paramref name="destination"/> may be the same span.
    /// </summary>
    public static void Round(ReadOnlySpan<float> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ref uint src = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(source));
        ref uint dst = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(destination));
        int n = source.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= n - 16; i += 16)
                (RoundHigh(Vector512.LoadUnsafe(ref src, (nuint)i)) & Vector512.Create(0xFFFF_0000u)).StoreUnsafe(ref dst, (nuint)i);
        else if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8)
                (RoundHigh(Vector256.LoadUnsafe(ref src, (nuint)i)) & Vector256.Create(0xFFFF_0000u)).StoreUnsafe(ref dst, (nuint)i);
        for (; i < n; i++) Unsafe.Add(ref dst, i) = (uint)RoundToBits(BitConverter.UInt32BitsToSingle(Unsafe.Add(ref src, i))) << 16;
    }

    // float32 bits whose upper half is the rounded bfloat16 (low half garbage): RNE, NaN made quiet.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> RoundHigh(Vector512<uint> bits)
    {
        var rounded = bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One);
        var isNaN = Vector512.GreaterThan(bits & Vector512.Create(0x7FFF_FFFFu), Vector512.Create(0x7F80_0000u));
        return Vector512.ConditionalSelect(isNaN, bits | Vector512.Create(0x0040_0000u), rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> RoundHigh(Vector256<uint> bits)
    {
        var rounded = bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256<uint>.One);
        var isNaN = Vector256.GreaterThan(bits & Vector256.Create(0x7FFF_FFFFu), Vector256.Create(0x7F80_0000u));
        return Vector256.ConditionalSelect(isNaN, bits | Vector256.Create(0x0040_0000u), rounded);
    }

    private static void CheckLengths(int source, int destination)
    {
        if (destination < source)
            throw new ArgumentException($"destination: expected at least {source} elements (the length of source); got {destination}", "destination");
    }

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
