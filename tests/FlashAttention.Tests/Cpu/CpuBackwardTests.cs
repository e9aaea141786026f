using FlashAttention.Cpu;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Cpu;

/// <summary>
/// CpuFlashAttention's backward against the float64 reference's analytic gradients, under the same rule as the
/// forward (the reference's gradients are themselves checked against finite differences in
/// GradientCheckTests). Both dQ schemes run on every machine: one item per
/// (batch, key head) walking its slabs, and the slabs as separate items with partials reduced in slab order.
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

    public static TheoryData<string, Engine, int, bool> SchemeCases() => new()
    {
        // One slab: each whole (batch, key head) item owns its float32 dQ.
        { "b1_s128_gqa8to1_d64_causal", Engine.Public, 1, false },
        { "varlen_empty_seqs_gqa2to1_d64_causal", Engine.Public, 1, false },
        // Several slabs, as separate items with partials or walked by one item per pair; more slabs than some
        // sequences have key tiles.
        { "b1_sq129_sk200_gqa4to1_d80_window_softcap", Engine.Public, 3, true },
        { "b1_sq129_sk200_gqa4to1_d80_window_softcap", Engine.Public, 3, false },
        { "varlen_empty_seqs_gqa2to1_d64_causal", Engine.Public, 4, true },
        { "varlen_empty_seqs_gqa2to1_d64_causal", Engine.Public, 4, false },
        { "b2_sq300_sk129_h2_d96_causal_masked_rows", Engine.Width256, 2, true },
        { "b1_sq129_sk200_gqa4to1_d80_window_softcap", Engine.Width128, 1, false },
        { "b1_s129_h2_d7_softcap", Engine.Width256, 2, false },
    };

    [Theory]
    [MemberData(nameof(SchemeCases))]
    public void Every_dQ_scheme_and_every_width_match_reference(string name, Engine engine, int slabs, bool slabsAsItems)
        => CaseRunner.CheckBackward<float>(Cases[name], engine, new BackwardScheme(slabs, slabsAsItems));

    private static byte[] GradientBits(AttentionCase c, BackwardScheme? scheme)
    {
        var t = CaseTensors<float>.Create(c, 9);
        CaseRunner.Forward(t);
        CaseRunner.Backward(t, Engine.Public, scheme);
        return [.. t.DQ.Data.Concat(t.DK.Data).Concat(t.DV.Data).SelectMany(BitConverter.GetBytes)];
    }

    [Theory]
    [InlineData("b1_sq129_sk200_gqa4to1_d80_window_softcap", 3)]
    [InlineData("varlen_empty_seqs_gqa2to1_d64_causal", 4)]
    [InlineData("b2_sq300_sk129_h2_d96_causal_masked_rows", 2)]
    public void Both_dQ_schemes_give_the_same_bits(string name, int slabs)
    {
        var c = Cases[name];
        byte[] walked = GradientBits(c, new BackwardScheme(slabs, SlabsAsItems: false));
        Assert.Equal(walked, GradientBits(c, new BackwardScheme(slabs, SlabsAsItems: true)));
        Assert.Equal(walked, GradientBits(c, new BackwardScheme(slabs, SlabsAsItems: false))); // and again: no state carried over
    }

    [Fact]
    public void The_slab_count_depends_on_the_problem_and_the_scheme_on_the_cores()
    {
        // Batch 2 × 2 key heads = 4 pairs: 1 core walks each pair's slabs in one item, 8 cores run the slabs as items;
        // the public call takes whichever this machine's core count picks, and all three agree bit for bit.
        var c = Cases["b2_sq300_sk129_h2_d96_causal_masked_rows"];
        var t = CaseTensors<float>.Create(c, 9);
        var p = CaseRunner.Problem(t);
        int slabs = CpuFlashAttention.QueryGradientSlabs(p);
        Assert.Equal(3, slabs); // one per key tile (⌈129 / 64⌉ = 3): fewer than the 32 / 4 pairs the target asks for
        Assert.False(CpuFlashAttention.SlabsAsItems(p, slabs, cores: 1));
        Assert.True(CpuFlashAttention.SlabsAsItems(p, slabs, cores: 8));
        byte[] publicCall = GradientBits(c, null);
        Assert.Equal(publicCall, GradientBits(c, new BackwardScheme(slabs, CpuFlashAttention.SlabsAsItems(p, slabs, cores: 1))));
        Assert.Equal(publicCall, GradientBits(c, new BackwardScheme(slabs, CpuFlashAttention.SlabsAsItems(p, slabs, cores: 8))));
    }
}
