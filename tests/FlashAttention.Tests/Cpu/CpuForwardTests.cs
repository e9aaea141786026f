using FlashAttention.Cpu;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Cpu;

/// <summary>
/// CpuFlashAttention's forward against the float64 reference, under the tolerance rule (error ≤ 2 × the plain
/// same-precision implementation's error + ε; ε in <see cref="TestTensors.Epsilon{T}"/>). The grid is chosen, not
/// cartesian: every seqlen of 1, 17, 128, 129, 1000 (ragged against the 64-row tiles on purpose), every head dim of
/// 32, 64, 80, 96, 128, 256 (plus 1 and 7, not whole vectors), causal / full / window / softcap, GQA 8:1 and 4:1,
/// seqlen_q ≠ seqlen_k both ways (with sq &gt; sk, causal rows that see no key), varlen batches with empty sequences,
/// strided inputs (fused QKV slices, heads-major padded layouts) — each point small enough for the float64 reference.
/// </summary>
public class CpuForwardTests
{
    private static readonly AttentionOptions Full = new();
    private static readonly AttentionOptions Causal = new() { Causal = true };

    internal static readonly Dictionary<string, AttentionCase> Cases = new AttentionCase[]
    {
        new("b2_s17_h4_d32_full", 2, 17, 17, 4, 4, 32, Full),
        new("b1_s128_gqa8to1_d64_causal", 1, 128, 128, 8, 1, 64, Causal),
        new("b1_s129_gqa4to1_d80_window32-8", 1, 129, 129, 4, 1, 80, new() { WindowLeft = 32, WindowRight = 8 }),
        new("b1_s1000_h2_d128_causal", 1, 1000, 1000, 2, 2, 128, Causal),
        new("b1_sq1_sk1000_gqa2to1_d256_full", 1, 1, 1000, 4, 2, 256, Full),
        new("b2_sq300_sk129_h3_d96_causal_masked_rows", 2, 300, 129, 3, 3, 96, Causal),
        new("b1_sq17_sk1000_h2_d64_causal_softcap", 1, 17, 1000, 2, 2, 64, new() { Causal = true, Softcap = 5 }),
        new("b1_sq129_sk300_h2_d96_window100-0_softcap", 1, 129, 300, 2, 1, 96, new() { WindowLeft = 100, WindowRight = 0, Softcap = 2.5f }),
        new("b1_s128_h2_d256_window_left_only", 1, 128, 128, 2, 2, 256, new() { WindowLeft = 20 }),
        new("b1_s200_h2_d64_window_right_only", 1, 200, 200, 2, 2, 64, new() { WindowRight = 3, WindowLeft = -1 }),
        new("b3_s1_h2_d32_full", 3, 1, 1, 2, 2, 32, Full),
        new("b1_s129_h2_d1_causal", 1, 129, 129, 2, 2, 1, Causal),
        new("b2_sq17_sk128_h2_d7_full_scale", 2, 17, 128, 2, 1, 7, new() { SoftmaxScale = 0.9f }),
        new("b2_s129_packed_qkv_gqa4to1_d64_causal", 2, 129, 129, 8, 2, 64, Causal, Layout.PackedQkv),
        new("b2_s128_packed_qkv_h3_d80_full", 2, 128, 128, 3, 3, 80, Full, Layout.PackedQkv),
        new("b2_sq129_sk200_padded_gqa4to1_d128_full", 2, 129, 200, 4, 1, 128, Full, Layout.Padded),
        new("b1_sq200_sk129_padded_h2_d32_causal", 1, 200, 129, 2, 2, 32, Causal, Layout.Padded),
        AttentionCase.Varlen("varlen_empty_seqs_gqa2to1_d64_causal", [0, 17, 17, 145, 274, 275], [0, 17, 40, 168, 168, 300], 4, 2, 64, Causal),
        AttentionCase.Varlen("varlen_padded_h2_d96_full", [0, 129, 129, 130], [0, 1, 130, 257], 2, 2, 96, Full, Layout.Padded),
        AttentionCase.Varlen("varlen_window_softcap_d32", [0, 100, 228], [0, 60, 300], 2, 1, 32, new() { WindowLeft = 16, WindowRight = 16, Softcap = 10 }),
    }.ToDictionary(c => c.Name);

    public static TheoryData<string> AllCases() => [.. Cases.Keys];

    public static TheoryData<string> LowPrecisionCases() =>
    [
        "b2_s17_h4_d32_full", "b1_s128_gqa8to1_d64_causal", "b2_sq300_sk129_h3_d96_causal_masked_rows",
        "b1_sq129_sk300_h2_d96_window100-0_softcap", "b2_s129_packed_qkv_gqa4to1_d64_causal", "b1_sq200_sk129_padded_h2_d32_causal",
        "varlen_empty_seqs_gqa2to1_d64_causal", "b2_sq17_sk128_h2_d7_full_scale",
    ];

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Float32_matches_reference(string name) => CaseRunner.CheckForward<float>(Cases[name]);

    [Theory]
    [MemberData(nameof(LowPrecisionCases))]
    public void Float16_matches_reference(string name) => CaseRunner.CheckForward<Half>(Cases[name]);

    [Theory]
    [MemberData(nameof(LowPrecisionCases))]
    public void BFloat16_matches_reference(string name) => CaseRunner.CheckForward<BFloat16>(Cases[name]);

    public static TheoryData<string, Engine> WidthCases() => new()
    {
        { "b1_s129_gqa4to1_d80_window32-8", Engine.Width256 },
        { "b1_s129_gqa4to1_d80_window32-8", Engine.Width128 },
        { "b1_sq129_sk300_h2_d96_window100-0_softcap", Engine.Width256 },
        { "b2_sq17_sk128_h2_d7_full_scale", Engine.Width128 },
        { "varlen_empty_seqs_gqa2to1_d64_causal", Engine.Width256 },
        { "b2_sq300_sk129_h3_d96_causal_masked_rows", Engine.Width128 },
        { "b2_sq300_sk129_h3_d96_causal_masked_rows", Engine.Width512 },
    };

    /// <summary>The narrower vector widths are the fallback on machines without AVX-512; they must be as right.</summary>
    [Theory]
    [MemberData(nameof(WidthCases))]
    public void Every_vector_width_matches_reference(string name, Engine engine) => CaseRunner.CheckForward<float>(Cases[name], engine);

    [Fact]
    public void Bfloat16_at_width_256_matches_reference() => CaseRunner.CheckForward<BFloat16>(Cases["b1_s128_gqa8to1_d64_causal"], Engine.Width256);

    [Fact]
    public void Forward_is_deterministic()
    {
        var c = Cases["b2_sq129_sk200_padded_gqa4to1_d128_full"];
        var a = CaseTensors<float>.Create(c, 1);
        var b = CaseTensors<float>.Create(c, 1);
        CaseRunner.Forward(a);
        CaseRunner.Forward(b);
        Assert.Equal(a.O.Data, b.O.Data);
        Assert.Equal(a.Lse.Data, b.Lse.Data);
    }

    /// <summary>Zeroes P: the hook must act after the row sums (LSE unchanged) and before P·V (O becomes 0).</summary>
    private readonly struct ZeroProbabilities : IProbabilityRounding
    {
        public static void Round(Span<float> probabilities) => probabilities.Clear();
    }

    /// <summary>Rounds P to bfloat16, the way a BF16 P·V kernel would.</summary>
    private readonly struct BFloat16Probabilities : IProbabilityRounding
    {
        public static void Round(Span<float> probabilities)
        {
            foreach (ref float x in probabilities) x = (float)(BFloat16)x;
        }
    }

    [Fact]
    public void Rounding_hook_runs_after_the_row_sum_and_before_PV()
    {
        var c = Cases["b1_s129_gqa4to1_d80_window32-8"];
        var plain = CaseTensors<float>.Create(c, 3);
        var zeroed = CaseTensors<float>.Create(c, 3);
        CaseRunner.Forward(plain);
        CaseRunner.ForwardInternal<float, ZeroProbabilities>(zeroed, Engine.Public);
        Assert.Equal(plain.Lse.Data, zeroed.Lse.Data);
        Assert.All(zeroed.O.ToDoubles(), x => Assert.Equal(0.0, x));
    }

    [Fact]
    public void Rounding_hook_emulates_low_precision_P()
    {
        var c = Cases["b1_s128_gqa8to1_d64_causal"];
        var exact = CaseTensors<float>.Create(c, 4);
        var rounded = CaseTensors<float>.Create(c, 4);
        CaseRunner.Forward(exact);
        CaseRunner.ForwardInternal<float, BFloat16Probabilities>(rounded, Engine.Public);
        var reference = CaseRunner.ReferenceForward(exact);
        double errExact = TestTensors.MaxError(exact.O.ToDoubles(), reference.Output);
        double errRounded = TestTensors.MaxError(rounded.O.ToDoubles(), reference.Output);
        // Each P rounded to bfloat16 moves by at most 2^-8 of itself while the row sum l stays exact, so O moves by at
        // most 2^-8 · Σ_j P_j |v_j| ≤ 2^-8 · max |V|, on top of the float32 error both runs share.
        double bound = Math.ScaleB(1, -8) * TestTensors.MaxAbs(exact.V.ToDoubles()) + 2 * errExact;
        Assert.True(errRounded <= bound, $"P in bfloat16: error {errRounded:E3} exceeds 2^-8 · max|V| + 2 × float32's {errExact:E3} = {bound:E3}");
        // bfloat16's rounding step is 2^16 times float32's: the rounding must show far above float32's error.
        Assert.True(errRounded > 16 * errExact, $"P in bfloat16: error {errRounded:E3} is not clearly above float32's {errExact:E3}; the hook did not round");
    }
}
