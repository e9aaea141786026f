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
        // Without a scale, small P flush to zero: E4M3's smallest subnormal is 2^-9 (bias 7, 3 mantissa bits:
        // 2^(1−7) · 2^-3), so anything below half of it rounds to 0. The inputs hold such values (exp(−12) ≈ 6e-6).
        float flush = MathF.ScaleB(1, -10);
        Assert.Contains(p, x => x > 0 && x < flush);
        for (int i = 0; i < p.Length; i++)
            if (p[i] < flush) Assert.True(r[i] == 0, $"P = {p[i]:E3} below 2^-10 rounded to {r[i]:E3}, not 0");
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
