using FlashAttention.Cpu;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Cpu;

/// <summary>
/// The yardstick itself: the plain implementation's error against float64 stays within
/// <see cref="PlainAttention.ErrorBound(DataType, long, double)"/> in every type, and in Half and BFloat16 it is at
/// least the distance from the exact result to the type's nearest value (its results are values of the type).
/// </summary>
public class PlainAttentionTests
{
    private static readonly AttentionCase Case = new("plain_b2_sq40_sk70_gqa2to1_d48_causal_softcap", 2, 40, 70, 4, 2, 48, new() { Causal = true, Softcap = 6 });

    private static void AssertWithinBound<T>(string what, float[] plain, double[] reference) where T : unmanaged
    {
        double err = TestTensors.MaxError(TestTensors.ToDoubles(plain), reference);
        double bound = Case.PlainBound<T>(plain);
        Assert.True(err <= bound, $"{typeof(T).Name} {what}: plain error {err:E3} exceeds its bound {bound:E3}");
    }

    [Fact]
    public void Float32_plain_is_within_its_bound()
    {
        var t = CaseTensors<float>.Create(Case, 11);
        var reference = CaseRunner.ReferenceForward(t);
        var plain = CaseRunner.PlainForward(t);
        AssertWithinBound<float>("O", plain.Output, reference.Output);
        AssertWithinBound<float>("LSE", plain.LogSumExp, reference.LogSumExp);
        var rg = CaseRunner.ReferenceBackward(t);
        var pg = CaseRunner.PlainBackward(t);
        AssertWithinBound<float>("dQ", pg.Query, rg.Query);
        AssertWithinBound<float>("dK", pg.Key, rg.Key);
        AssertWithinBound<float>("dV", pg.Value, rg.Value);
    }

    /// <summary>Largest distance from an exact value to the nearest T (less 2^-23 relative: float32 sits between).</summary>
    private static double GridDistance<T>(double[] exact) where T : unmanaged
    {
        double d = 0;
        foreach (double x in exact)
            if (double.IsFinite(x))
                d = Math.Max(d, Math.Abs(ElementConvert.RoundTo<T>((float)x) - x) - Math.ScaleB(Math.Abs(x), -23));
        return d;
    }

    private static void AssertOfTheTypesPrecision<T>() where T : unmanaged
    {
        var t = CaseTensors<T>.Create(Case, 11);
        var reference = CaseRunner.ReferenceForward(t);
        var plain = CaseRunner.PlainForward(t);
        AssertWithinBound<T>("O", plain.Output, reference.Output);
        double err = TestTensors.MaxError(TestTensors.ToDoubles(plain.Output), reference.Output);
        double floor = GridDistance<T>(reference.Output);
        Assert.True(floor > 0 && err >= floor, $"{typeof(T).Name} O: plain error {err:E3} below the distance {floor:E3} to the type's values");
        var rg = CaseRunner.ReferenceBackward(t);
        var pg = CaseRunner.PlainBackward(t);
        AssertWithinBound<T>("dQ", pg.Query, rg.Query);
        AssertWithinBound<T>("dK", pg.Key, rg.Key);
        AssertWithinBound<T>("dV", pg.Value, rg.Value);
    }

    [Fact]
    public void Half_plain_errors_are_of_the_types_precision() => AssertOfTheTypesPrecision<Half>();

    [Fact]
    public void BFloat16_plain_errors_are_of_the_types_precision() => AssertOfTheTypesPrecision<BFloat16>();

    [Fact]
    public void The_bound_is_the_types_rounding_plus_float32_sums()
    {
        // (8·u + 4·√n·2^-24) · max(1, m), u = 2^-24 / 2^-11 / 2^-8.
        Assert.Equal((8 + 4 * 10) * Math.ScaleB(1, -24) * 3, PlainAttention.ErrorBound(DataType.Float32, 100, 3));
        Assert.Equal(8 * Math.ScaleB(1, -11) + 4 * 2 * Math.ScaleB(1, -24), PlainAttention.ErrorBound(DataType.Float16, 4, 0.5));
        Assert.Equal(8 * Math.ScaleB(1, -8) + 4 * 3 * Math.ScaleB(1, -24), PlainAttention.ErrorBound(DataType.BFloat16, 9, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => PlainAttention.ErrorBound(DataType.Float8E4M3, 1, 1));
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
