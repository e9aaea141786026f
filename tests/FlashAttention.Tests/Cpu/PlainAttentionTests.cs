using FlashAttention.Cpu;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Cpu;

/// <summary>The yardstick itself: float32 plain attention is close to float64, and rounding to T costs what it should.</summary>
public class PlainAttentionTests
{
    private static readonly AttentionCase Case = new("plain_b2_sq40_sk70_gqa2to1_d48_causal_softcap", 2, 40, 70, 4, 2, 48, new() { Causal = true, Softcap = 6 });

    [Fact]
    public void Float32_plain_is_close_to_float64()
    {
        var t = CaseTensors<float>.Create(Case, 11);
        var reference = CaseRunner.ReferenceForward(t);
        var plain = CaseRunner.PlainForward(t);
        Assert.InRange(TestTensors.MaxError(TestTensors.ToDoubles(plain.Output), reference.Output), 0, 2e-6);
        Assert.InRange(TestTensors.MaxError(TestTensors.ToDoubles(plain.LogSumExp), reference.LogSumExp), 0, 1e-5);
        var rg = CaseRunner.ReferenceBackward(t);
        var pg = CaseRunner.PlainBackward(t);
        foreach (var (p, r) in new[] { (pg.Query, rg.Query), (pg.Key, rg.Key), (pg.Value, rg.Value) })
            Assert.InRange(TestTensors.MaxError(TestTensors.ToDoubles(p), r), 0, 1e-5 * Math.Max(1, TestTensors.MaxAbs(r)));
    }

    [Fact]
    public void Low_precision_plain_errors_are_of_the_types_precision()
    {
        var half = CaseTensors<Half>.Create(Case, 11);
        var bf16 = CaseTensors<BFloat16>.Create(Case, 11);
        double eHalf = TestTensors.MaxError(TestTensors.ToDoubles(CaseRunner.PlainForward(half).Output), CaseRunner.ReferenceForward(half).Output);
        double eBf16 = TestTensors.MaxError(TestTensors.ToDoubles(CaseRunner.PlainForward(bf16).Output), CaseRunner.ReferenceForward(bf16).Output);
        // |O| ≤ 2: half's ulp there is 2⁻⁹, bfloat16's 2⁻⁶; the scores' rounding adds a few of those.
        Assert.InRange(eHalf, 1e-5, 2e-2);
        Assert.InRange(eBf16, 1e-3, 2e-1);
        Assert.True(eBf16 > eHalf);
    }

    [Fact]
    public void Rows_that_see_no_key_are_zero_with_minus_infinite_lse()
    {
        var c = new AttentionCase("plain_masked", 1, 6, 2, 1, 1, 4, new() { Causal = true });
        var t = CaseTensors<float>.Create(c, 2);
        var plain = CaseRunner.PlainForward(t);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(float.NegativeInfinity, plain.LogSumExp[i]);
            for (int x = 0; x < 4; x++) Assert.Equal(0f, plain.Output[i * 4 + x]);
        }
        Assert.True(float.IsFinite(plain.LogSumExp[4]));
    }
}
