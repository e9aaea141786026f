using FlashAttention.Numerics;

namespace FlashAttention.Tests.Numerics;

public class ProbabilityRoundingTests
{
    private static float[] Probabilities()
    {
        var rng = new Random(8);
        // exp of scores below the running max: (0, 1], many tiny values that fall into E4M3's subnormals or to zero.
        return Enumerable.Range(0, 1000).Select(i => i % 50 == 0 ? 1f : (float)Math.Exp(-rng.NextDouble() * 12)).Append(0f).ToArray();
    }

    [Fact]
    public void E4M3_rounding_is_the_scalar_cast()
    {
        var p = Probabilities();
        var r = (float[])p.Clone();
        E4M3ProbabilityRounding.Round(r);
        for (int i = 0; i < p.Length; i++) Assert.Equal((float)Float8E4M3.FromSingle(p[i]), r[i]);
        Assert.Contains(r, v => v == 0 && v != 0.5f); // small P flush to zero without a scale
    }

    [Fact]
    public void Offset8_rounding_is_the_cast_of_256_P_scaled_back()
    {
        var p = Probabilities();
        var r = (float[])p.Clone();
        E4M3Offset8ProbabilityRounding.Round(r);
        for (int i = 0; i < p.Length; i++) Assert.Equal((float)Float8E4M3.FromSingle(p[i] * 256f) / 256f, r[i]);
    }

    [Fact]
    public void Half_and_bfloat16_roundings_are_the_scalar_casts()
    {
        var p = Probabilities();
        var h = (float[])p.Clone();
        var b = (float[])p.Clone();
        HalfProbabilityRounding.Round(h);
        BFloat16ProbabilityRounding.Round(b);
        for (int i = 0; i < p.Length; i++)
        {
            Assert.Equal((float)(Half)p[i], h[i]);
            Assert.Equal((float)(BFloat16)p[i], b[i]);
        }
    }
}
