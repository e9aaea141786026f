using System.Runtime.InteropServices;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Numerics;

/// <summary>
/// The FP8 formats against an independent bit-level reference: <see cref="ReferenceEncode"/> rounds with an explicit
/// significand shift and guard/sticky comparison (the library uses a re-bias-and-carry trick and a float add for
/// subnormals), and <see cref="ReferenceDecode"/> evaluates the format's definition in float64.
/// </summary>
public class Float8Tests
{
    private sealed record Format(string Name, int ExponentBits, int MantissaBits, int Bias, bool Ieee, byte MaxCode, byte NaNCode, byte OverflowCode,
        Func<float, byte> Encode, Func<float, byte> EncodeSaturating, Func<byte, float> Decode)
    {
        public override string ToString() => Name;
    }

    private static readonly Format E4M3 = new("E4M3", 4, 3, 7, Ieee: false, 0x7E, 0x7F, 0x7F,
        Float8E4M3.RoundToBits, Float8E4M3.RoundToBitsSaturating, Float8E4M3.ToSingle);
    private static readonly Format E5M2 = new("E5M2", 5, 2, 15, Ieee: true, 0x7B, 0x7E, 0x7C,
        Float8E5M2.RoundToBits, Float8E5M2.RoundToBitsSaturating, Float8E5M2.ToSingle);

    public static TheoryData<string> Formats => new() { "E4M3", "E5M2" };
    private static Format Get(string name) => name == "E4M3" ? E4M3 : E5M2;

    // ------------------------------------------------------------------ independent reference

    private static bool IsNaNCode(Format f, byte code)
        => f.Ieee ? (code & 0x7F) > 0x7C : (code & 0x7F) == 0x7F;

    /// <summary>The value of a code straight from the definition, in float64.</summary>
    private static double ReferenceDecode(Format f, byte code)
    {
        double sign = (code & 0x80) != 0 ? -1 : 1;
        if (IsNaNCode(f, code)) return double.NaN;
        int e = (code & 0x7F) >> f.MantissaBits, m = code & ((1 << f.MantissaBits) - 1);
        if (f.Ieee && e == (1 << f.ExponentBits) - 1) return sign * double.PositiveInfinity;
        return e == 0
            ? sign * m * Math.Pow(2, 1 - f.Bias - f.MantissaBits)
            : sign * (1 + m / (double)(1 << f.MantissaBits)) * Math.Pow(2, e - f.Bias);
    }

    /// <summary>Round to nearest even by shifting the float's integer significand and looking at the bits shifted out.</summary>
    private static byte ReferenceEncode(Format f, float x, bool saturate)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        byte sign = (byte)((bits >> 31) << 7);
        int exponent = (int)((bits >> 23) & 0xFF);
        uint mantissa = bits & 0x7F_FFFF;
        byte Overflow() => (byte)(sign | (saturate ? f.MaxCode : f.OverflowCode));
        if (exponent == 255) return mantissa != 0 ? (byte)(sign | f.NaNCode) : Overflow();
        if (exponent == 0 && mantissa == 0) return sign;

        // value = significand · 2^(e − 23); a float32 subnormal has no implicit bit and e = −126.
        ulong significand = exponent == 0 ? mantissa : mantissa | 0x80_0000u;
        int e = exponent == 0 ? -126 : exponent - 127;
        int minNormalExponent = 1 - f.Bias;
        int field, shift;
        if (e >= minNormalExponent) { field = e + f.Bias; shift = 23 - f.MantissaBits; }
        else { field = 0; shift = 23 - f.MantissaBits + (minNormalExponent - e); }
        ulong q, rem, half;
        if (shift >= 63) { q = 0; rem = significand; half = ulong.MaxValue; }
        else
        {
            q = significand >> shift;
            rem = significand & ((1UL << shift) - 1);
            half = 1UL << (shift - 1);
        }
        if (rem > half || (rem == half && (q & 1) == 1)) q++;
        int code;
        if (field == 0) code = (int)q; // may carry into the smallest normal: code 1 << M, exactly its encoding
        else
        {
            if (q == 1UL << (f.MantissaBits + 1)) { q >>= 1; field++; }
            code = (field << f.MantissaBits) | (int)(q & ((1UL << f.MantissaBits) - 1));
        }
        if (code > f.MaxCode) return Overflow();
        return (byte)(sign | code);
    }

    [Fact]
    public void Reference_encoder_agrees_with_a_nearest_value_search()
    {
        // A second, even plainer reference for the reference: the nearest finite value by search, ties to the even code.
        foreach (var f in new[] { E4M3, E5M2 })
        {
            var codes = Enumerable.Range(0, 128).Select(c => (byte)c).Where(c => !IsNaNCode(f, c) && !double.IsInfinity(ReferenceDecode(f, c))).ToArray();
            var rng = new Random(7);
            for (int i = 0; i < 20000; i++)
            {
                float x = (float)(Math.Pow(2, rng.NextDouble() * 30 - (f.Ieee ? 20 : 12)) * (1 + rng.Next(4) / 16.0));
                if (i % 3 == 0) x = (float)ReferenceDecode(f, codes[rng.Next(codes.Length - 1)]) + (float)ReferenceDecode(f, 1) / 2; // ties
                double best = double.MaxValue;
                byte bestCode = 0;
                foreach (byte c in codes)
                {
                    double dist = Math.Abs(ReferenceDecode(f, c) - x);
                    if (dist < best || (dist == best && (c & 1) == 0)) { best = dist; bestCode = c; }
                }
                if (x > ReferenceDecode(f, f.MaxCode)) continue; // overflow rules are checked elsewhere
                Assert.True(bestCode == ReferenceEncode(f, x, saturate: true), $"{f} x={x:R}: search {bestCode:X2}, reference {ReferenceEncode(f, x, true):X2}");
            }
        }
    }

    // ------------------------------------------------------------------ codes

    [Theory, MemberData(nameof(Formats))]
    public void Every_code_decodes_to_its_definition_and_round_trips(string name)
    {
        var f = Get(name);
        for (int c = 0; c < 256; c++)
        {
            byte code = (byte)c;
            double expected = ReferenceDecode(f, code);
            float value = f.Decode(code);
            if (double.IsNaN(expected))
            {
                Assert.True(float.IsNaN(value), $"{f} code {c:X2} should decode to NaN");
                Assert.Equal((c & 0x80) != 0, float.IsNegative(value));
                Assert.True(IsNaNCode(f, f.Encode(value)), $"{f} NaN code {c:X2} should encode back to a NaN");
                Assert.True(IsNaNCode(f, f.EncodeSaturating(value)));
                continue;
            }
            Assert.Equal(expected, (double)value);
            Assert.Equal(code, f.Encode(value));
            if (!double.IsInfinity(expected)) Assert.Equal(code, f.EncodeSaturating(value));
        }
    }

    [Fact]
    public void Known_values()
    {
        Assert.Equal(448f, (float)Float8E4M3.MaxValue);
        Assert.Equal(-448f, (float)Float8E4M3.MinValue);
        Assert.Equal(MathF.ScaleB(1, -9), (float)Float8E4M3.Epsilon);
        Assert.Equal(1f, (float)Float8E4M3.One);
        Assert.Equal(MathF.ScaleB(1, -6), Float8E4M3.ToSingle(0x08));
        Assert.Equal(0x7F, Float8E4M3.NaN.Bits);
        Assert.Equal(57344f, (float)Float8E5M2.MaxValue);
        Assert.Equal(MathF.ScaleB(1, -16), (float)Float8E5M2.Epsilon);
        Assert.Equal(1f, (float)Float8E5M2.One);
        Assert.Equal(float.PositiveInfinity, (float)Float8E5M2.PositiveInfinity);
        Assert.Equal(float.NegativeInfinity, (float)Float8E5M2.NegativeInfinity);
        Assert.True(Float8E5M2.NaN.IsNaN && Float8E4M3.NaN.IsNaN);
        Assert.Equal(DataType.Float8E4M3, DataTypes.Of<Float8E4M3>());
        Assert.Equal(DataType.Float8E5M2, DataTypes.Of<Float8E5M2>());
        Assert.Equal(1, Marshal.SizeOf<Float8E4M3>());
        Assert.True(Float8E4M3.FromBits(0x00) == Float8E4M3.FromBits(0x80)); // +0 == −0
        Assert.False(Float8E4M3.NaN == Float8E4M3.NaN);
    }

    // ------------------------------------------------------------------ narrowing against the reference

    /// <summary>A dense sample of float32: every exponent with mantissas around every rounding position, a strided sweep of all bit patterns, and the special values.</summary>
    private static float[] DenseSample(Format f)
    {
        var values = new List<float>();
        uint[] tops = [0u, 1u << 22, 1u << 21, 0x60_0000, 0x7F_FFFF & ~0xFFFFu, 0x2A_0000, 0x55_0000];
        for (uint sign = 0; sign < 2; sign++)
            for (uint exponent = 0; exponent < 256; exponent++)
                foreach (uint top in tops)
                    for (int k = 0; k < 24; k++)
                        foreach (uint low in new[] { 1u << k, (1u << k) - 1, (1u << k) + 1, 1u << k | 1u << (k + 1) })
                        {
                            uint mantissa = (top | low) & 0x7F_FFFF;
                            values.Add(BitConverter.UInt32BitsToSingle(sign << 31 | exponent << 23 | mantissa));
                            values.Add(BitConverter.UInt32BitsToSingle(sign << 31 | exponent << 23 | (top & 0x7F_FFFF)));
                        }
        for (ulong b = 0; b < 1UL << 32; b += 4093) values.Add(BitConverter.UInt32BitsToSingle((uint)b)); // all exponents, NaN payloads too
        // Every FP8 value, the midpoints between neighbours (ties), and one float32 ulp either side of each.
        var finite = Enumerable.Range(0, 128).Select(c => ReferenceDecode(f, (byte)c)).Where(double.IsFinite).OrderBy(v => v).ToArray();
        double step = ReferenceDecode(f, 1);
        var points = finite.Concat(finite.Zip(finite.Skip(1), (a, b) => (a + b) / 2))
            .Append(finite[^1] + (finite[^1] - finite[^2]) / 2) // the overflow midpoint (464 / 61440)
            .Append(finite[^1] + (finite[^1] - finite[^2]))       // the would-be next value (480 / 65536)
            .Append(step / 2).Append(step / 4).Append(step * 1.5);
        foreach (double p in points)
        {
            float x = (float)p;
            foreach (float y in new[] { x, MathF.BitIncrement(x), MathF.BitDecrement(x) }) { values.Add(y); values.Add(-y); }
        }
        values.AddRange([0f, -0f, float.NaN, -float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.MinValue,
            float.Epsilon, -float.Epsilon, 1e6f, -1e6f, BitConverter.UInt32BitsToSingle(0x7F80_0001), BitConverter.UInt32BitsToSingle(0xFFC0_1234)]);
        return values.ToArray();
    }

    [Theory, MemberData(nameof(Formats))]
    public void Scalar_narrowing_matches_the_reference_on_a_dense_sample(string name)
    {
        var f = Get(name);
        int checkedCount = 0;
        foreach (float x in DenseSample(f))
        {
            byte expected = ReferenceEncode(f, x, saturate: false), expectedSat = ReferenceEncode(f, x, saturate: true);
            byte actual = f.Encode(x), actualSat = f.EncodeSaturating(x);
            if (expected != actual || expectedSat != actualSat)
                Assert.Fail($"{f} x = {x:R} (0x{BitConverter.SingleToUInt32Bits(x):X8}): reference {expected:X2}/{expectedSat:X2} (non-sat/sat), library {actual:X2}/{actualSat:X2}");
            checkedCount++;
        }
        Assert.True(checkedCount > 1_000_000, $"only {checkedCount} samples");
    }

    [Fact]
    public void Ties_go_to_even_and_overflow_follows_the_documented_rule()
    {
        // E4M3: between 1 (0x38) and 1.125 (0x39) the midpoint 1.0625 goes to even 0x38; between 1.125 and 1.25 to 0x3A.
        Assert.Equal(0x38, Float8E4M3.RoundToBits(1.0625f));
        Assert.Equal(0x3A, Float8E4M3.RoundToBits(1.1875f));
        // Subnormal ties: 2^-10 (half the smallest subnormal) goes to 0, 3·2^-10 to 2·2^-9.
        Assert.Equal(0x00, Float8E4M3.RoundToBits(MathF.ScaleB(1, -10)));
        Assert.Equal(0x01, Float8E4M3.RoundToBits(MathF.BitIncrement(MathF.ScaleB(1, -10))));
        Assert.Equal(0x02, Float8E4M3.RoundToBits(MathF.ScaleB(3, -10)));
        // E4M3 overflow: 464 ties to 448; anything above is NaN (non-saturating) or 448 (saturating); ±∞ likewise.
        Assert.Equal(0x7E, Float8E4M3.RoundToBits(464f));
        Assert.Equal(0x7F, Float8E4M3.RoundToBits(MathF.BitIncrement(464f)));
        Assert.Equal(0xFF, Float8E4M3.RoundToBits(-1e6f));
        Assert.Equal(0x7F, Float8E4M3.RoundToBits(float.PositiveInfinity));
        Assert.Equal(0x7E, Float8E4M3.RoundToBitsSaturating(1e6f));
        Assert.Equal(0xFE, Float8E4M3.RoundToBitsSaturating(float.NegativeInfinity));
        Assert.Equal(0x7E, Float8E4M3.RoundToBitsSaturating(MathF.BitIncrement(464f)));
        Assert.True(Float8E4M3.FromBits(Float8E4M3.RoundToBitsSaturating(float.NaN)).IsNaN);
        Assert.True(float.IsNaN((float)(Float8E4M3)500f));
        // E5M2: 61440 ties to even, which is 2^16 = ∞; just below stays 57344.
        Assert.Equal(0x7C, Float8E5M2.RoundToBits(61440f));
        Assert.Equal(0x7B, Float8E5M2.RoundToBits(MathF.BitDecrement(61440f)));
        Assert.Equal(0x7B, Float8E5M2.RoundToBitsSaturating(61440f));
        Assert.Equal(0xFB, Float8E5M2.RoundToBitsSaturating(float.NegativeInfinity));
        Assert.Equal(0xFC, Float8E5M2.RoundToBits(float.NegativeInfinity));
        Assert.True(Float8E5M2.FromBits(Float8E5M2.RoundToBitsSaturating(float.NaN)).IsNaN);
        // NaN keeps its sign (note that float.NaN itself is the negative quiet NaN 0xFFC00000).
        float positiveNaN = BitConverter.UInt32BitsToSingle(0x7FC0_0000);
        Assert.Equal(0x7E, Float8E5M2.RoundToBits(positiveNaN));
        Assert.Equal(0xFE, Float8E5M2.RoundToBits(-positiveNaN));
        Assert.Equal(0x7F, Float8E4M3.RoundToBits(positiveNaN));
        Assert.Equal(0xFF, Float8E4M3.RoundToBitsSaturating(-positiveNaN));
    }

    // ------------------------------------------------------------------ bulk == scalar

    [Theory, MemberData(nameof(Formats))]
    public void Bulk_conversions_equal_scalar_ones(string name)
    {
        var f = Get(name);
        var sample = DenseSample(f);
        foreach (int length in new[] { sample.Length, 1, 15, 17, 63, 65, 200 }) // tails of every vector width
        {
            var x = sample.AsSpan(0, length);
            var codes = new byte[length];
            var codesSat = new byte[length];
            var codesScaled = new byte[length];
            var widened = new float[length];
            var rounded = new float[length];
            if (f == E4M3)
            {
                Float8E4M3.ConvertFromSingle(x, MemoryMarshal.Cast<byte, Float8E4M3>(codes.AsSpan()));
                Float8E4M3.ConvertFromSingleSaturating(x, MemoryMarshal.Cast<byte, Float8E4M3>(codesSat.AsSpan()));
                Float8E4M3.ConvertFromSingleSaturating(x, MemoryMarshal.Cast<byte, Float8E4M3>(codesScaled.AsSpan()), 0.37f);
                Float8E4M3.ConvertToSingle(MemoryMarshal.Cast<byte, Float8E4M3>(codesSat.AsSpan()), widened);
                Float8E4M3.Round(x, rounded);
            }
            else
            {
                Float8E5M2.ConvertFromSingle(x, MemoryMarshal.Cast<byte, Float8E5M2>(codes.AsSpan()));
                Float8E5M2.ConvertFromSingleSaturating(x, MemoryMarshal.Cast<byte, Float8E5M2>(codesSat.AsSpan()));
                Float8E5M2.ConvertFromSingleSaturating(x, MemoryMarshal.Cast<byte, Float8E5M2>(codesScaled.AsSpan()), 0.37f);
                Float8E5M2.ConvertToSingle(MemoryMarshal.Cast<byte, Float8E5M2>(codesSat.AsSpan()), widened);
                Float8E5M2.Round(x, rounded);
            }
            for (int i = 0; i < length; i++)
            {
                if (codes[i] != f.Encode(x[i]) || codesSat[i] != f.EncodeSaturating(x[i]) || codesScaled[i] != f.EncodeSaturating(x[i] * 0.37f))
                    Assert.Fail($"{f} length {length} x[{i}] = {x[i]:R}: bulk {codes[i]:X2}/{codesSat[i]:X2}/{codesScaled[i]:X2}, scalar {f.Encode(x[i]):X2}/{f.EncodeSaturating(x[i]):X2}/{f.EncodeSaturating(x[i] * 0.37f):X2}");
                uint expected = BitConverter.SingleToUInt32Bits(f.Decode(codesSat[i]));
                if (expected != BitConverter.SingleToUInt32Bits(widened[i]) || expected != BitConverter.SingleToUInt32Bits(rounded[i]))
                    Assert.Fail($"{f} x[{i}] = {x[i]:R}: widened {widened[i]:R}, rounded {rounded[i]:R}, expected {f.Decode(codesSat[i]):R}");
            }
        }
    }

    [Theory, MemberData(nameof(Formats))]
    public void Bulk_widening_of_every_code_equals_the_definition(string name)
    {
        var f = Get(name);
        var codes = Enumerable.Range(0, 1000).Select(i => (byte)(i * 37 % 256)).ToArray();
        var widened = new float[codes.Length];
        if (f == E4M3) Float8E4M3.ConvertToSingle(MemoryMarshal.Cast<byte, Float8E4M3>(codes.AsSpan()), widened);
        else Float8E5M2.ConvertToSingle(MemoryMarshal.Cast<byte, Float8E5M2>(codes.AsSpan()), widened);
        for (int i = 0; i < codes.Length; i++)
        {
            double expected = ReferenceDecode(f, codes[i]);
            if (double.IsNaN(expected))
            {
                Assert.True(float.IsNaN(widened[i]));
                Assert.Equal((codes[i] & 0x80) != 0, float.IsNegative(widened[i]));
            }
            else
            {
                Assert.Equal(expected, (double)widened[i]);
                Assert.Equal((codes[i] & 0x80) != 0, float.IsNegative(widened[i])); // −0 stays −0
            }
        }
    }

    [Fact]
    public void Bulk_conversions_check_the_destination_length()
    {
        var ex = Assert.Throws<ArgumentException>(() => Float8E4M3.ConvertFromSingle(new float[10], new Float8E4M3[9]));
        Assert.Equal("destination", ex.ParamName);
        Assert.Throws<ArgumentException>(() => Float8E5M2.ConvertToSingle(new Float8E5M2[10], new float[9]));
    }
}
