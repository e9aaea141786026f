using FlashAttention.Tests.Cpu;

namespace FlashAttention.Tests.Oracle;

/// <summary>
/// The float64 reference, the engine and the plain implementation against <see cref="NaiveAttention"/> on random
/// inputs over the option space: causal (square, sq &lt; sk, sq &gt; sk), windows left only, right only and both, with
/// and without causal, bottom-right alignment with sq ≠ sk, softcap, explicit and default scales, GQA with several key
/// heads, MQA, varlen batches with empty sequences, rows that see no key. Lengths cross the engine's 128-row and 64-key
/// tiles, so its tile skipping is checked too. O and LSE both.
/// </summary>
public class OracleForwardTests
{
    internal static readonly Dictionary<string, AttentionCase> Cases = new AttentionCase[]
    {
        new("causal_square_gqa6to3_d16", 2, 150, 150, 6, 3, 16, new() { Causal = true }),
        new("causal_sq70_sk200_gqa4to2_d8", 1, 70, 200, 4, 2, 8, new() { Causal = true }),
        new("causal_sq200_sk70_rows_that_see_nothing_d8", 1, 200, 70, 2, 2, 8, new() { Causal = true }),
        new("window_left30_gqa4to2_d12", 1, 160, 160, 4, 2, 12, new() { WindowLeft = 30 }),
        new("window_right5_sq130_sk100_d7", 1, 130, 100, 2, 1, 7, new() { WindowRight = 5 }),
        new("window_20_7_sq100_sk190_gqa6to2_d8", 1, 100, 190, 6, 2, 8, new() { WindowLeft = 20, WindowRight = 7 }),
        new("window_9_3_sq190_sk100_d8", 1, 190, 100, 2, 2, 8, new() { WindowLeft = 9, WindowRight = 3 }),
        new("causal_left25_d16", 1, 140, 140, 2, 2, 16, new() { Causal = true, WindowLeft = 25 }),
        new("window_10_0_not_causal_d4", 2, 70, 90, 2, 1, 4, new() { WindowLeft = 10, WindowRight = 0 }),
        new("diagonal_only_sq80_sk40_d4", 1, 80, 40, 2, 2, 4, new() { WindowLeft = 0, WindowRight = 0 }),
        new("softcap2_full_default_scale_gqa4to2_d32", 1, 50, 90, 4, 2, 32, new() { Softcap = 2 }),
        new("softcap_window_causal_gqa6to3_d8", 1, 150, 170, 6, 3, 8, new() { Causal = true, WindowLeft = 40, Softcap = 1.5f }),
        new("scale0.3_mqa4to1_d40", 2, 66, 130, 4, 1, 40, new() { SoftmaxScale = 0.3f }),
        new("full_d1", 1, 20, 30, 3, 3, 1, new()),
        new("padded_layout_causal_gqa4to2_d8", 2, 90, 70, 4, 2, 8, new() { Causal = true }, Layout.Padded),
        AttentionCase.Varlen("varlen_empty_seqs_causal_gqa4to2_d8", [0, 30, 30, 160, 161, 200], [0, 45, 60, 60, 130, 240], 4, 2, 8,
            new() { Causal = true }),
        AttentionCase.Varlen("varlen_window_softcap_gqa6to3_d4", [0, 70, 71, 200], [0, 65, 200, 201], 6, 3, 4,
            new() { WindowLeft = 12, WindowRight = 3, Softcap = 3 }),
    }.ToDictionary(c => c.Name);

    public static TheoryData<string> AllCases() => [.. Cases.Keys];

    private static (CaseTensors<float> Tensors, double[] O, double[] Lse) Oracle(string name)
    {
        var c = Cases[name];
        var t = CaseTensors<float>.Create(c, CaseRunner.Seed(name));
        var (o, lse) = OracleBridge.Flatten(c, [.. OracleBridge.Sequences(t).Select(s => NaiveAttention.Forward(s, c.Options))]);
        return (t, o, lse);
    }

    // The reference works in float64 like the oracle: they differ by rounding only, ~1e-16 relative.
    private const double Float64Tolerance = 1e-12;

    // Float32 results: a few ulp per step (~1e-7), far below what a wrong mask, scale or head moves (≥ 1e-3 here).
    private const double Float32Tolerance = 1e-5;

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Reference_matches_the_oracle(string name)
    {
        var (t, o, lse) = Oracle(name);
        var reference = CaseRunner.ReferenceForward(t);
        OracleBridge.AssertClose($"{name} reference O", reference.Output, o, Float64Tolerance);
        OracleBridge.AssertClose($"{name} reference LSE", reference.LogSumExp, lse, Float64Tolerance);
    }

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Engine_matches_the_oracle(string name)
    {
        var (t, o, lse) = Oracle(name);
        CaseRunner.Forward(t);
        OracleBridge.AssertClose($"{name} engine O", t.O.ToDoubles(), o, Float32Tolerance);
        OracleBridge.AssertClose($"{name} engine LSE", t.Lse.ToDoubles(), lse, Float32Tolerance);
    }

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Plain_implementation_matches_the_oracle(string name)
    {
        var (t, o, lse) = Oracle(name);
        var plain = CaseRunner.PlainForward(t);
        OracleBridge.AssertClose($"{name} plain O", TestTensors.ToDoubles(plain.Output), o, Float32Tolerance);
        OracleBridge.AssertClose($"{name} plain LSE", TestTensors.ToDoubles(plain.LogSumExp), lse, Float32Tolerance);
    }

    [Fact]
    public void The_oracle_masks_as_documented()
    {
        // Hand-checked against the definition: query i of Sq = 3 with Sk = 5 stands at key position i + 2.
        var causal = new AttentionOptions { Causal = true };
        Assert.True(NaiveAttention.Sees(0, 2, 3, 5, causal));
        Assert.False(NaiveAttention.Sees(0, 3, 3, 5, causal));
        Assert.True(NaiveAttention.Sees(2, 4, 3, 5, causal));
        var window = new AttentionOptions { WindowLeft = 1, WindowRight = 1 };
        Assert.Equal([false, true, true, true, false], Enumerable.Range(0, 5).Select(j => NaiveAttention.Sees(0, j, 3, 5, window)));
        // Sq > Sk: the first Sq − Sk causal rows stand left of every key and see none.
        Assert.False(NaiveAttention.Sees(1, 0, 5, 3, causal));
        Assert.True(NaiveAttention.Sees(2, 0, 5, 3, causal));
    }
}
