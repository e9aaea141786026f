using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FlashAttention.Numerics;

/// <summary>
/// The constants that tell one 8-bit float format from another. Implemented by empty structs so the JIT
/// specialises <see cref="Fp8Codec"/> per format and folds every constant.
/// </summary>
internal interface IFp8Format
{
    /// <summary>Explicit mantissa bits (3 for E4M3, 2 for E5M2).</summary>
    static abstract int MantissaBits { get; }
    /// <summary>Exponent bias (7 for E4M3, 15 for E5M2).</summary>
    static abstract int Bias { get; }
    /// <summary>float32 magnitude bits at and above which a value rounds past the largest finite code (round to nearest even).</summary>
    static abstract uint OverflowBits { get; }
    /// <summary>Code (sign bit clear) of the largest finite magnitude.</summary>
    static abstract uint MaxCode { get; }
    /// <summary>Code (sign bit clear) conversions produce for NaN.</summary>
    static abstract uint NaNCode { get; }
    /// <summary>Code (sign bit clear) a non-saturating conversion produces on overflow: NaN for E4M3, infinity for E5M2.</summary>
    static abstract uint OverflowCode { get; }
    /// <summary>Magnitude codes above this are NaN.</summary>
    static abstract uint LastNonNaNCode { get; }
    /// <summary>Code of infinity, or 0 when the format has none.</summary>
    static abstract uint InfinityCode { get; }
}

/// <summary>E4M3 "fn": 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; NaN = S.1111.111; max ±448.</summary>
internal readonly struct E4M3Format : IFp8Format
{
    public static int MantissaBits => 3;
    public static int Bias => 7;
    public static uint OverflowBits => 0x43E8_0001u; // just above 464 = (448 + 480) / 2, which ties to even (448)
    public static uint MaxCode => 0x7E;
    public static uint NaNCode => 0x7F;
    public static uint OverflowCode => 0x7F;
    public static uint LastNonNaNCode => 0x7E;
    public static uint InfinityCode => 0;
}

/// <summary>E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits; IEEE-like infinities and NaNs; max ±57344.</summary>
internal readonly struct E5M2Format : IFp8Format
{
    public static int MantissaBits => 2;
    public static int Bias => 15;
    public static uint OverflowBits => 0x4770_0000u; // 61440 = (57344 + 65536) / 2 ties to even, i.e. to 2^16 = infinity
    public static uint MaxCode => 0x7B;
    public static uint NaNCode => 0x7E;
    public static uint OverflowCode => 0x7C;
    public static uint LastNonNaNCode => 0x7C;
    public static uint InfinityCode => 0x7C;
}

/// <summary>
/// Bit-level conversions between float32 and the 8-bit float formats, scalar and vectorised (Vector512 / Vector256,
/// scalar tails). Narrowing rounds to nearest, ties to even; the vector paths do exactly what the scalar path does,
/// lane by lane, with integer operations (and one float add for the subnormal range, which relies on the IEEE
/// default rounding mode, round-to-nearest-even, that .NET always runs in).
/// </summary>
internal static class Fp8Codec
{
    /// <summary>float32 bits of the smallest normal magnitude of the format, 2^(1 − bias).</summary>
    private static uint MinNormalBits<F>() where F : struct, IFp8Format => (uint)(127 + 1 - F.Bias) << 23;

    /// <summary>
    /// The float whose ulp is the format's subnormal step 2^(1 − bias − mantissa bits): adding it to a magnitude
    /// below the smallest normal rounds that magnitude to the subnormal grid, and its low bits are then the code.
    /// </summary>
    private static uint DenormMagicBits<F>() where F : struct, IFp8Format => (uint)(127 - F.Bias + 23 - F.MantissaBits + 1) << 23;

    /// <summary>What the normal path adds to the float32 bits before shifting: re-bias and round to nearest (ties handled by the odd bit).</summary>
    private static uint NormalRoundBias<F>() where F : struct, IFp8Format
        => unchecked(((uint)(F.Bias - 127) << 23) + (1u << (22 - F.MantissaBits)) - 1u);

    private static int Shift<F>() where F : struct, IFp8Format => 23 - F.MantissaBits;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte Encode<F>(float value, bool saturate) where F : struct, IFp8Format
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        uint sign = (bits >> 24) & 0x80u;
        uint abs = bits & 0x7FFF_FFFFu;
        uint code;
        if (abs > 0x7F80_0000u) code = F.NaNCode;
        else if (abs >= F.OverflowBits) code = saturate ? F.MaxCode : F.OverflowCode;
        else if (abs < MinNormalBits<F>())
        {
            float rounded = BitConverter.UInt32BitsToSingle(abs) + BitConverter.UInt32BitsToSingle(DenormMagicBits<F>());
            code = BitConverter.SingleToUInt32Bits(rounded) - DenormMagicBits<F>();
        }
        else
        {
            uint odd = (abs >> Shift<F>()) & 1u;
            code = unchecked(abs + NormalRoundBias<F>() + odd) >> Shift<F>();
        }
        return (byte)(code | sign);
    }

    /// <summary>Exact widening, straight from the definition of the format (no tables); NaN codes give a quiet NaN with the code's sign.</summary>
    public static float DecodeExact<F>(byte code) where F : struct, IFp8Format
    {
        uint magnitude = code & 0x7Fu;
        float sign = (code & 0x80) != 0 ? -1f : 1f;
        if (magnitude > F.LastNonNaNCode) return BitConverter.UInt32BitsToSingle(0x7FC0_0000u | ((uint)(code & 0x80) << 24));
        if (F.InfinityCode != 0 && magnitude == F.InfinityCode) return sign * float.PositiveInfinity;
        int exponent = (int)(magnitude >> F.MantissaBits);
        int mantissa = (int)(magnitude & ((1u << F.MantissaBits) - 1));
        return exponent == 0
            ? sign * MathF.ScaleB(mantissa, 1 - F.Bias - F.MantissaBits)
            : sign * MathF.ScaleB((1 << F.MantissaBits) + mantissa, exponent - F.Bias - F.MantissaBits);
    }

    /// <summary>The 256 float values of a format's codes, for the scalar widening path.</summary>
    public static float[] BuildTable<F>() where F : struct, IFp8Format
    {
        var table = new float[256];
        for (int c = 0; c < 256; c++) table[c] = DecodeExact<F>((byte)c);
        return table;
    }

    // ---------------------------------------------------------------- vector narrowing

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> Encode<F>(Vector512<float> value, bool saturate) where F : struct, IFp8Format
    {
        var bits = value.AsUInt32();
        var sign = (bits >> 24) & Vector512.Create(0x80u);
        var abs = bits & Vector512.Create(0x7FFF_FFFFu);
        var odd = (abs >> Shift<F>()) & Vector512<uint>.One;
        var normal = (abs + Vector512.Create(NormalRoundBias<F>()) + odd) >> Shift<F>();
        var magic = Vector512.Create(DenormMagicBits<F>());
        var subnormal = (abs.AsSingle() + magic.AsSingle()).AsUInt32() - magic;
        var code = Vector512.ConditionalSelect(Vector512.LessThan(abs, Vector512.Create(MinNormalBits<F>())), subnormal, normal);
        code = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(abs, Vector512.Create(F.OverflowBits)),
            Vector512.Create(saturate ? F.MaxCode : F.OverflowCode), code);
        code = Vector512.ConditionalSelect(Vector512.GreaterThan(abs, Vector512.Create(0x7F80_0000u)), Vector512.Create(F.NaNCode), code);
        return code | sign;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Encode<F>(Vector256<float> value, bool saturate) where F : struct, IFp8Format
    {
        var bits = value.AsUInt32();
        var sign = (bits >> 24) & Vector256.Create(0x80u);
        var abs = bits & Vector256.Create(0x7FFF_FFFFu);
        var odd = (abs >> Shift<F>()) & Vector256<uint>.One;
        var normal = (abs + Vector256.Create(NormalRoundBias<F>()) + odd) >> Shift<F>();
        var magic = Vector256.Create(DenormMagicBits<F>());
        var subnormal = (abs.AsSingle() + magic.AsSingle()).AsUInt32() - magic;
        var code = Vector256.ConditionalSelect(Vector256.LessThan(abs, Vector256.Create(MinNormalBits<F>())), subnormal, normal);
        code = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(abs, Vector256.Create(F.OverflowBits)),
            Vector256.Create(saturate ? F.MaxCode : F.OverflowCode), code);
        code = Vector256.ConditionalSelect(Vector256.GreaterThan(abs, Vector256.Create(0x7F80_0000u)), Vector256.Create(F.NaNCode), code);
        return code | sign;
    }

    /// <summary>
    /// destination[i] = code of (source[i] · scale), rounded to nearest even; saturating or not.
    /// With <paramref name="scale"/> = 1 the multiplication is exact (NaN, ±0 and ±∞ pass unchanged).
    /// </summary>
    public static void Encode<F>(ReadOnlySpan<float> source, Span<byte> destination, bool saturate, float scale = 1f) where F : struct, IFp8Format
    {
        if (destination.Length < source.Length)
            throw new ArgumentException($"destination: expected at least {source.Length} elements (the length of source); got {destination.Length}", nameof(destination));
        int n = source.Length, i = 0;
        ref float src = ref MemoryMarshal.GetReference(source);
        ref byte dst = ref MemoryMarshal.GetReference(destination);
        if (Vector512.IsHardwareAccelerated)
        {
            var s = Vector512.Create(scale);
            for (; i <= n - 64; i += 64)
            {
                var c0 = Encode<F>(Vector512.LoadUnsafe(ref src, (nuint)i) * s, saturate);
                var c1 = Encode<F>(Vector512.LoadUnsafe(ref src, (nuint)i + 16) * s, saturate);
                var c2 = Encode<F>(Vector512.LoadUnsafe(ref src, (nuint)i + 32) * s, saturate);
                var c3 = Encode<F>(Vector512.LoadUnsafe(ref src, (nuint)i + 48) * s, saturate);
                Vector512.Narrow(Vector512.Narrow(c0, c1), Vector512.Narrow(c2, c3)).StoreUnsafe(ref dst, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var s = Vector256.Create(scale);
            for (; i <= n - 32; i += 32)
            {
                var c0 = Encode<F>(Vector256.LoadUnsafe(ref src, (nuint)i) * s, saturate);
                var c1 = Encode<F>(Vector256.LoadUnsafe(ref src, (nuint)i + 8) * s, saturate);
                var c2 = Encode<F>(Vector256.LoadUnsafe(ref src, (nuint)i + 16) * s, saturate);
                var c3 = Encode<F>(Vector256.LoadUnsafe(ref src, (nuint)i + 24) * s, saturate);
                Vector256.Narrow(Vector256.Narrow(c0, c1), Vector256.Narrow(c2, c3)).StoreUnsafe(ref dst, (nuint)i);
            }
        }
        for (; i < n; i++) Unsafe.Add(ref dst, i) = Encode<F>(Unsafe.Add(ref src, i) * scale, saturate);
    }

    // ---------------------------------------------------------------- vector widening

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Decode<F>(Vector512<uint> code) where F : struct, IFp8Format
    {
        var sign = (code & Vector512.Create(0x80u)) << 24;
        var magnitude = code & Vector512.Create(0x7Fu);
        var shifted = magnitude << Shift<F>();
        var normal = shifted + Vector512.Create((uint)(127 - F.Bias) << 23);
        // Exponent field 0: read the mantissa as if it had the smallest normal exponent, then take the implicit 1 away (exact).
        var subnormal = ((shifted + Vector512.Create((uint)(127 - F.Bias + 1) << 23)).AsSingle()
                         - Vector512.Create(BitConverter.UInt32BitsToSingle(MinNormalBits<F>()))).AsUInt32();
        var value = Vector512.ConditionalSelect(Vector512.LessThan(magnitude, Vector512.Create(1u << F.MantissaBits)), subnormal, normal);
        if (F.InfinityCode != 0)
            value = Vector512.ConditionalSelect(Vector512.Equals(magnitude, Vector512.Create(F.InfinityCode)), Vector512.Create(0x7F80_0000u), value);
        value = Vector512.ConditionalSelect(Vector512.GreaterThan(magnitude, Vector512.Create(F.LastNonNaNCode)), Vector512.Create(0x7FC0_0000u), value);
        return (value | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Decode<F>(Vector256<uint> code) where F : struct, IFp8Format
    {
        var sign = (code & Vector256.Create(0x80u)) << 24;
        var magnitude = code & Vector256.Create(0x7Fu);
        var shifted = magnitude << Shift<F>();
        var normal = shifted + Vector256.Create((uint)(127 - F.Bias) << 23);
        var subnormal = ((shifted + Vector256.Create((uint)(127 - F.Bias + 1) << 23)).AsSingle()
                         - Vector256.Create(BitConverter.UInt32BitsToSingle(MinNormalBits<F>()))).AsUInt32();
        var value = Vector256.ConditionalSelect(Vector256.LessThan(magnitude, Vector256.Create(1u << F.MantissaBits)), subnormal, normal);
        if (F.InfinityCode != 0)
            value = Vector256.ConditionalSelect(Vector256.Equals(magnitude, Vector256.Create(F.InfinityCode)), Vector256.Create(0x7F80_0000u), value);
        value = Vector256.ConditionalSelect(Vector256.GreaterThan(magnitude, Vector256.Create(F.LastNonNaNCode)), Vector256.Create(0x7FC0_0000u), value);
        return (value | sign).AsSingle();
    }

    /// <summary>destination[i] = exact float value of code source[i]; <paramref name="table"/> serves the scalar tail.</summary>
    public static void Decode<F>(ReadOnlySpan<byte> source, Span<float> destination, float[] table) where F : struct, IFp8Format
    {
        if (destination.Length < source.Length)
            throw new ArgumentException($"destination: expected at least {source.Length} elements (the length of source); got {destination.Length}", nameof(destination));
        int n = source.Length, i = 0;
        ref byte src = ref MemoryMarshal.GetReference(source);
        ref float dst = ref MemoryMarshal.GetReference(destination);
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - 64; i += 64)
            {
                var (lo, hi) = Vector512.Widen(Vector512.LoadUnsafe(ref src, (nuint)i));
                var (a, b) = Vector512.Widen(lo);
                var (c, d) = Vector512.Widen(hi);
                Decode<F>(a).StoreUnsafe(ref dst, (nuint)i);
                Decode<F>(b).StoreUnsafe(ref dst, (nuint)i + 16);
                Decode<F>(c).StoreUnsafe(ref dst, (nuint)i + 32);
                Decode<F>(d).StoreUnsafe(ref dst, (nuint)i + 48);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 32; i += 32)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref src, (nuint)i));
                var (a, b) = Vector256.Widen(lo);
                var (c, d) = Vector256.Widen(hi);
                Decode<F>(a).StoreUnsafe(ref dst, (nuint)i);
                Decode<F>(b).StoreUnsafe(ref dst, (nuint)i + 8);
                Decode<F>(c).StoreUnsafe(ref dst, (nuint)i + 16);
                Decode<F>(d).StoreUnsafe(ref dst, (nuint)i + 24);
            }
        }
        for (; i < n; i++) Unsafe.Add(ref dst, i) = table[Unsafe.Add(ref src, i)];
    }

    // ---------------------------------------------------------------- round trip (float → format → float) in one pass

    /// <summary>destination[i] = float value of the code of source[i] (what a kernel sees after a cast to the format). Spans may be the same.</summary>
    public static void Round<F>(ReadOnlySpan<float> source, Span<float> destination, bool saturate, float[] table) where F : struct, IFp8Format
    {
        if (destination.Length < source.Length)
            throw new ArgumentException($"destination: expected at least {source.Length} elements (the length of source); got {destination.Length}", nameof(destination));
        int n = source.Length, i = 0;
        ref float src = ref MemoryMarshal.GetReference(source);
        ref float dst = ref MemoryMarshal.GetReference(destination);
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - 16; i += 16)
                Decode<F>(Encode<F>(Vector512.LoadUnsafe(ref src, (nuint)i), saturate)).StoreUnsafe(ref dst, (nuint)i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 8; i += 8)
                Decode<F>(Encode<F>(Vector256.LoadUnsafe(ref src, (nuint)i), saturate)).StoreUnsafe(ref dst, (nuint)i);
        }
        for (; i < n; i++) Unsafe.Add(ref dst, i) = table[Encode<F>(Unsafe.Add(ref src, i), saturate)];
    }
}
