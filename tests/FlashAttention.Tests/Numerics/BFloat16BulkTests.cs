using FlashAttention.Numerics;

namespace FlashAttention.Tests.Numerics;

public class BFloat16BulkTests
{
    private static float[] Sample()
    {
        var rng = new Random(3);
        var values = new List<float>();
        for (int i = 0; i < 100_000; i++) values.Add(BitConverter.UInt32BitsToSingle((uint)rng.NextInt64(0, 1L << 32)));
        for (uint e = 0; e < 256; e++)
            foreach (uint low in new uint[] { 0, 0x7FFF, 0x8000, 0x8001, 0x18000, 0x17FFF, 0x7F_FFFF })
                values.Add(BitConverter.UInt32BitsToSingle(e << 23 | low));
        values.AddRange([0f, -0f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.Epsilon, BitConverter.UInt32BitsToSingle(0x7F80_0001)]);
        return values.ToArray();
    }

    [Fact]
    public void Bulk_conversions_equal_scalar_ones()
    {
        var sample = Sample();
        foreach (int length in new[] { sample.Length, 1, 15, 17, 31, 33 })
        {
            var x = sample.AsSpan(0, length);
            var narrowed = new BFloat16[length];
            var widened = new float[length];
            var rounded = new float[length];
            BFloat16.ConvertFromSingle(x, narrowed);
            BFloat16.ConvertToSingle(narrowed, widened);
            BFloat16.Round(x, rounded);
            for (int i = 0; i < length; i++)
            {
                ushort expected = BFloat16.RoundToBits(x[i]);
                if (expected != narrowed[i].Bits || (uint)expected << 16 != BitConverter.SingleToUInt32Bits(widened[i])
                    || (uint)expected << 16 != BitConverter.SingleToUInt32Bits(rounded[i]))
                    Assert.Fail($"x[{i}] = 0x{BitConverter.SingleToUInt32Bits(x[i]):X8}: scalar {expected:X4}, bulk {narrowed[i].Bits:X4} / {BitConverter.SingleToUInt32Bits(widened[i]):X8} / {BitConverter.SingleToUInt32Bits(rounded[i]):X8}");
            }
        }
    }
}
