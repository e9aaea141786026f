using FlashAttention.Numerics;

namespace FlashAttention.Tests.Cpu;

/// <summary>
/// CpuFlashAttention's backward against the float64 reference's analytic gradients, under the same rule as the
/// forward (the reference's gradients are themselves checked against finite differences in
/// <see cref="ReferenceGradientTests"/>). Both dQ schemes are run on every machine: one chunk per (batch, key head)
/// owning its dQ, and several chunks with dQ partials reduced in order.
/// </summary>
public class CpuBackwardTests
{
    private static readonly AttentionOptions Full = new();
    private static readonly AttentionOptions Causal = new() { Causal = true };

    internal static readonly Dictionary<string, AttentionCase> Cases = new AttentionCase[]
    {
        new("b2_s17_gqa2to1_d32_full", 2, 17, 17, 4, 2, 32, Full),
        new("b1_s128_gqa8to1_d64_causal", 1, 128, 128, 8, 1, 64, Causal),
        new("b1_sq129_sk200_gqa4to1_d80_window_softcap", 1, 129, 200, 4, 1, 80, new() { WindowLeft = 40, WindowRight = 10, Softcap = 4 }),
        new("b2_sq300_sk129_h2_d96_causal_masked_rows", 2, 300, 129, 2, 2, 96, Causal),
        new("b1_sq1_sk1000_h2_d256_full", 1, 1, 1000, 2, 2, 256, Full),
        new("b1_sq17_sk1000_h1_d128_causal", 1, 17, 1000, 1, 1, 128, Causal),
        new("b1_s129_h2_d7_softcap", 1, 129, 129, 2, 1, 7, new() { Softcap = 3 }),
        new("b2_s129_packed_qkv_gqa4to1_d64_causal", 2, 129, 129, 4, 1, 64, Causal, Layout.PackedQkv),
        new("b1_sq150_sk129_padded_h2_d128_full", 1, 150, 129, 2, 2, 128, Full, Layout.Padded),
        AttentionCase.Varlen("varlen_empty_seqs_gqa2to1_d64_causal", [0, 17, 17, 145, 274, 275], [0, 17, 40, 168, 168, 300], 4, 2, 64, Causal),
        AttentionCase.Varlen("varlen_padded_h2_d32_window", [0, 129, 129, 130], [0, 1, 130, 257], 2, 2, 32, new() { WindowLeft = 8, WindowRight = 30 }, Layout.Padded),
    }.ToDictionary(c => c.Name);

    public static TheoryData<string> AllCases() => [.. Cases.Keys];

    public static TheoryData<string> LowPrecisionCases() =>
    [
        "b2_s17_gqa2to1_d32_full", "b1_s128_gqa8to1_d64_causal", "b1_sq129_sk200_gqa4to1_d80_window_softcap",
        "b2_s129_packed_qkv_gqa4to1_d64_causal", "varlen_empty_seqs_gqa2to1_d64_causal",
    ];

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Float32_matches_reference(string name) => CaseRunner.CheckBackward<float>(Cases[name]);

    [Theory]
    [MemberData(nameof(LowPrecisionCases))]
    public void Float16_matches_reference(string name) => CaseRunner.CheckBackward<Half>(Cases[name]);

    [Theory]
    [MemberData(nameof(LowPrecisionCases))]
    public void BFloat16_matches_reference(string name) => CaseRunner.CheckBackward<BFloat16>(Cases[name]);

    public static TheoryData<string, Engine, int> SchemeCases() => new()
    {
        // One chunk per (batch, key head): each task owns its float32 dQ.
        { "b1_s128_gqa8to1_d64_causal", Engine.Public, 1 },
        { "varlen_empty_seqs_gqa2to1_d64_causal", Engine.Public, 1 },
        // Several chunks: dQ partials summed in chunk order; more chunks than some sequences have key tiles.
        { "b1_sq129_sk200_gqa4to1_d80_window_softcap", Engine.Public, 3 },
        { "varlen_empty_seqs_gqa2to1_d64_causal", Engine.Public, 4 },
        { "b2_sq300_sk129_h2_d96_causal_masked_rows", Engine.Width256, 2 },
        { "b1_sq129_sk200_gqa4to1_d80_window_softcap", Engine.Width128, 1 },
        { "b1_s129_h2_d7_softcap", Engine.Width256, 1 },
    };

    [Theory]
    [MemberData(nameof(SchemeCases))]
    public void Both_dQ_schemes_and_every_width_match_reference(string name, Engine engine, int chunks)
        => CaseRunner.CheckBackward<float>(Cases[name], engine, chunks);

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Backward_is_deterministic(int chunks)
    {
        var c = Cases["b1_sq129_sk200_gqa4to1_d80_window_softcap"];
        byte[]? first = null;
        for (int run = 0; run < 3; run++)
        {
            var t = CaseTensors<float>.Create(c, 9);
            CaseRunner.Forward(t);
            CaseRunner.Backward(t, Engine.Public, chunks);
            byte[] bits = [.. t.DQ.Data.Concat(t.DK.Data).Concat(t.DV.Data).SelectMany(BitConverter.GetBytes)];
            if (first is null) first = bits;
            else Assert.Equal(first, bits);
        }
    }
}
