using System.Text.RegularExpressions;
using FlashAttention.Cuda;
using FlashAttention.Cuda.Compiler;
using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;
using FlashAttention.Lab;
using FlashAttention.Lab.Tuning;

namespace FlashAttention.Tests.Cuda;

/// <summary>
/// The variant records against the kernel headers (field for field), the default tables, and the lab's seam into them
/// (tuning overrides, ablations, the installed policy). KernelBuildTests compiles every variant and checks the sizes.
/// </summary>
[Collection(PolicyScope.Collection)]
public partial class VariantTests
{
    [Theory]
    [InlineData("fwd/fwd_config.cuh", "FwdVariant", typeof(ForwardVariant))]
    [InlineData("bwd/bwd_config.cuh", "BwdVariant", typeof(BackwardVariant))]
    [InlineData("fp8/fp8_config.cuh", "Fp8Variant", typeof(Fp8Variant))]
    [InlineData("decode/decode_config.cuh", "DecodeVariant", typeof(DecodeVariant))]
    public void Records_and_name_expressions_have_the_kernel_structs_fields_in_order(string header, string cppStruct, Type record)
    {
        // The header's fields, in declaration order.
        string text = KernelSources.Load(header);
        var body = Regex.Match(text, $@"struct {cppStruct} \{{(?<body>[^}}]*)\}};").Groups["body"].Value;
        var cppFields = Regex.Matches(KernelSources.StripComments(body), @"\b(?:int|bool|\w+)\s+(?<name>\w+);").Select(m => m.Groups["name"].Value).ToList();
        Assert.True(cppFields.Count >= 5, $"{cppStruct}: parsed {cppFields.Count} fields from {header}");

        // The record's positional parameters, in order, as snake_case.
        var ctor = record.GetConstructors().OrderByDescending(c => c.GetParameters().Length).First();
        var recordFields = ctor.GetParameters().Select(p => SnakeCase(p.Name!)).ToList();
        Assert.Equal(cppFields, recordFields);

        // The designators the name expression writes, in order: every field, none left to a default.
        string expression = record == typeof(ForwardVariant) ? ForwardVariants.For(128, 4096, false).NameExpression(DataType.BFloat16)
            : record == typeof(BackwardVariant) ? BackwardVariants.For(128, false).NameExpression(DataType.BFloat16)
            : record == typeof(Fp8Variant) ? Fp8Variants.For(128).NameExpression(DataType.BFloat16)
            : DecodeVariants.For(128).NameExpression(DataType.BFloat16);
        var designators = Regex.Matches(expression, @"\.(?<name>\w+) =").Select(m => m.Groups["name"].Value).ToList();
        Assert.Equal(cppFields, designators);
    }

    // PingPong → ping_pong, OStaging → o_staging, QInRegisters → q_in_registers; SdP is one word in C++.
    private static string SnakeCase(string name) => WordBoundary().Replace(name.Replace("SdP", "Sdp"), "_").ToLowerInvariant();

    [GeneratedRegex("(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")]
    private static partial Regex WordBoundary();

    [Fact]
    public void Enum_names_are_the_kernels_enumerators_without_their_k()
    {
        string fwd = KernelSources.Load("fwd/fwd_config.cuh"), bwd = KernelSources.Load("bwd/bwd_config.cuh");
        foreach (var name in Enum.GetNames<ForwardLoop>()) Assert.Contains($"  k{name} = {(int)Enum.Parse<ForwardLoop>(name)},", fwd);
        foreach (var name in Enum.GetNames<OutputStaging>()) Assert.Contains($"  k{name} = {(int)Enum.Parse<OutputStaging>(name)},", fwd);
        foreach (var name in Enum.GetNames<DqSplit>()) Assert.Contains($"  k{name} = {(int)Enum.Parse<DqSplit>(name)},", bwd);
        foreach (var name in Enum.GetNames<DqAdd>()) Assert.Contains($"  k{name} = {(int)Enum.Parse<DqAdd>(name)},", bwd);
        string decode = KernelSources.Load("decode/decode_config.cuh");
        foreach (var name in Enum.GetNames<QSource>()) Assert.Contains($"  k{name} = {(int)Enum.Parse<QSource>(name)},", decode);
    }

    [Fact]
    public void Decode_table_fits_its_ctas_per_sm_and_keeps_q_in_registers_below_d256()
    {
        foreach (int d in DecodeVariants.HeadDims)
        {
            var v = DecodeVariants.For(d);
            Assert.Equal(d, v.HeadDim);
            Assert.Equal(d < 256, v.QSource == QSource.Registers);
            // 228 KB per SM with 1 KB reserved per CTA; 227 KB for a lone CTA.
            int limit = v.CtasPerSm == 1 ? 232448 : 233472 / v.CtasPerSm - 1024;
            Assert.InRange(v.SharedMemoryBytes, 1, limit);
            Assert.Equal(0, v.BlockN % 16);
            Assert.Equal([v], DecodeVariants.All(d));
        }
        Assert.Equal("d128 64x64 stages 3 Q-in-registers 2/SM", DecodeVariants.For(128).ToString());
        Assert.Contains("96", Assert.Throws<ArgumentOutOfRangeException>(() => DecodeVariants.For(96)).Message);
    }

    // (units = sequences × KV heads × m-blocks, key blocks per unit, CTA slots = SMs × CTAs per SM) → splits; 132 SMs, 2 CTAs each.
    [Theory]
    [InlineData(8, 64, 264, 14)]     // b1 4k keys, 8 KV heads, d128 (64-key blocks): the smallest count within 85% of 16's wave (four blocks each)
    [InlineData(8, 512, 264, 29)]    // b1 32k
    [InlineData(64, 128, 264, 4)]    // b8 8k: four splits fill 256 of 264 slots
    [InlineData(512, 512, 264, 1)]   // b64 32k: the units alone fill the GPU
    [InlineData(212, 512, 264, 1)]   // from 80% of the slots no split
    [InlineData(8, 7, 264, 1)]       // too few blocks to give two splits four blocks each
    [InlineData(8, 8, 264, 2)]
    [InlineData(1, 10000, 264, 109)] // the smallest within 85% of 128, the combine's limit
    [InlineData(0, 64, 264, 1)]
    public void Decode_splits_fill_the_gpu_with_whole_waves(long units, int keyBlocks, int slots, int expected)
    {
        int splits = DecodeVariants.Splits(units, keyBlocks, slots);
        Assert.Equal(expected, splits);
        Assert.InRange(splits, 1, Math.Min(DecodeVariants.MaxSplits, slots));
        if (splits > 1) Assert.True(keyBlocks / splits >= DecodeVariants.MinBlocksPerSplit, "each split keeps its minimum of blocks");
    }

    [Fact]
    public void The_forward_routes_few_query_rows_to_the_decode_kernel()
    {
        static AttentionProblem P(int sq, int d, bool varlen = false) => new()
        {
            Type = DataType.BFloat16, Batch = 1, SeqLenQ = sq, SeqLenK = 4096, HeadsQ = 32, HeadsK = 8, HeadDim = d, Scale = 0.1f,
            Softcap = 0, Causal = false, WindowLeft = -1, WindowRight = -1, Deterministic = false,
            CuSeqLensQ = varlen ? [0, sq] : null, CuSeqLensK = varlen ? [0, 4096] : null,
            Q = default, K = default, V = default, O = default, Lse = default,
        };
        Assert.True(DecodeVariants.TakesForward(P(1, 128)));
        Assert.True(DecodeVariants.TakesForward(P(DecodeVariants.ForwardRoutingMaxSeqLenQ, 64)));
        Assert.False(DecodeVariants.TakesForward(P(DecodeVariants.ForwardRoutingMaxSeqLenQ + 1, 128)));
        Assert.False(DecodeVariants.TakesForward(P(1, 96)));
        Assert.False(DecodeVariants.TakesForward(P(1, 128, varlen: true)));
    }

    [Fact]
    public void Forward_table_switches_variants_at_2k_keys_and_under_a_causal_mask()
    {
        var d256Short = ForwardVariants.For(256, ForwardVariants.LongKeysFrom - 1, false);
        var d256Long = ForwardVariants.For(256, ForwardVariants.LongKeysFrom, false);
        Assert.Equal((64, OutputStaging.TwoPasses, ForwardLoop.Chained), (d256Short.BlockN, d256Short.OStaging, d256Short.Loop));
        Assert.Equal((80, OutputStaging.QBuffer, ForwardLoop.Chained), (d256Long.BlockN, d256Long.OStaging, d256Long.Loop));
        Assert.Equal([d256Short, d256Long], ForwardVariants.All(256));
        // d64: three consumers (192-row tiles) except under a causal mask below 2k keys
        Assert.Equal((3, 3, 2, 3), (ForwardVariants.For(64, 1024, false).Consumers, ForwardVariants.For(64, 4096, false).Consumers,
            ForwardVariants.For(64, 1024, true).Consumers, ForwardVariants.For(64, 4096, true).Consumers));
        Assert.Equal(2, ForwardVariants.All(64).Count());
        Assert.Single(ForwardVariants.All(128));
        // Every default has ping-pong and a producer; Q in registers at d64 only; 192 query rows only with three consumers.
        var all = ForwardVariants.HeadDims.SelectMany(ForwardVariants.All).ToList();
        Assert.All(all, v => Assert.True(v.PingPong && v.WarpSpecialized && v.Loop != ForwardLoop.Overlapped, v.ToString()));
        Assert.All(all, v => Assert.Equal(v.HeadDim == 64, v.QInRegisters));
        Assert.All(all, v => Assert.Equal(64 * v.Consumers, v.BlockM));
        Assert.All(all, v => Assert.InRange(v.SharedMemoryBytes, 1, 232448));
        Assert.Contains("96", Assert.Throws<ArgumentOutOfRangeException>(() => ForwardVariants.For(96, 1, false)).Message);
    }

    [Fact]
    public void Backward_table_and_its_softcap_form()
    {
        var d64 = BackwardVariants.For(64, softcap: false);
        Assert.Equal((128, DqAdd.Bulk, DqSplit.ByKeys), (d64.BlockM, d64.DqAdd, d64.DqSplit));
        var d128 = BackwardVariants.For(128, softcap: false);
        Assert.Equal((DqSplit.ByColumns, true), (d128.DqSplit, d128.OverlapDv));
        Assert.True(BackwardVariants.For(256, softcap: false).SplitSdP);
        // Softcap: 64 queries per step, no dV overlap, no S/dP split.
        foreach (int d in BackwardVariants.HeadDims)
        {
            var s = BackwardVariants.For(d, softcap: true);
            Assert.Equal((true, false, false, 64), (s.Softcap, s.OverlapDv, s.SplitSdP, s.BlockM));
            Assert.InRange(s.SharedMemoryBytes, 1, 232448);
            Assert.InRange(BackwardVariants.For(d, softcap: false).SharedMemoryBytes, 1, 232448);
        }
        Assert.Equal("d64 128x128 stages 2 dQ-bulk", d64.ToString());
    }

    [Fact]
    public void Fp8_table_takes_key_blocks_that_fit_shared_memory_and_divide_the_descale_block()
    {
        foreach (int d in Fp8Variants.HeadDims)
        {
            var v = Fp8Variants.For(d);
            Assert.Equal(0, v.BlockN % 128);  // Vᵀ tiles are 128-key rows
            Assert.Equal(0, Fp8Variants.KeyBlock % v.BlockN);  // one K and one V descale per key block
            Assert.InRange(v.SharedMemoryBytes, 1, 232448);
            Assert.Contains($".head_dim = {d},", v.NameExpression(DataType.Float16));
        }
        Assert.Equal(64, Fp8Variants.QueryBlock);
        Assert.Equal(CudaAttention.Fp8KeyBlock, Fp8Variants.KeyBlock);
        Assert.Equal(0, Fp8Variants.KeyBlock % Fp8Variants.TransposeBlock);  // the transposer's 64-token CTAs tile a K/V block, as the quantiser's CTA holds whole 64-token Q blocks
        Assert.Throws<ArgumentException>(() => VariantOverrides.ParseFp8("128:n384"));
        var three = VariantOverrides.ParseFp8("64:w3,n128")[64];
        Assert.Equal((3, 192, 512, 128), (three.Consumers, three.BlockM, three.Threads, three.BlockN));
        Assert.Equal(CudaAttention.Fp8QueryBlock, Fp8Variants.QueryBlock);
        Assert.Throws<ArgumentOutOfRangeException>(() => Fp8Variants.For(96));
    }

    [Fact]
    public void The_quantiser_fills_1024_threads_per_SM_and_its_grid_follows_the_shape()
    {
        foreach (int d in Fp8Variants.HeadDims)
        {
            var q = Fp8Variants.Quantizer(d);
            Assert.Equal(1024, q.Threads * q.CtasPerSm);  // 64 registers a thread: the register file of one SM
            Assert.InRange(q.CtasPerSm * (q.SharedMemoryBytes + 1024), 1, 233472 - 40 * 1024);  // with the static Vᵀ tile
            Assert.Equal(Fp8Variants.KeyBlock, q.KvBlock);
        }
        var shape = Fp8Variants.Quantizer(128) with { Resident = true };
        Assert.Equal(132 * 2, shape.Grid(100_000, 132));
        Assert.Equal(50, shape.Grid(50, 132));
        Assert.Equal(100_000, (shape with { Resident = false }).Grid(100_000, 132));
        Assert.False(VariantOverrides.ParseQuantizer("64:jobs")[64].Resident);
        Assert.True(VariantOverrides.ParseQuantizer("64:jobs,resident")[64].Resident);
        Assert.Contains("'fast'", Assert.Throws<ArgumentException>(() => VariantOverrides.ParseQuantizer("64:fast")).Message);
    }

    [Fact]
    public void Forward_overrides_start_from_the_default_and_name_what_is_wrong()
    {
        var v = VariantOverrides.ParseForward("64:w2;128:n176,s2,q1,alias,nopp,ov")[128];
        Assert.Equal((176, 2, 1, OutputStaging.QBuffer, false, ForwardLoop.Overlapped), (v.BlockN, v.Stages, v.QBuffers, v.OStaging, v.PingPong, v.Loop));
        Assert.Equal(ForwardVariants.For(64, ForwardVariants.LongKeysFrom, false) with { Consumers = 2 }, VariantOverrides.ParseForward("64:w2")[64]);
        Assert.Contains("shared memory", Assert.Throws<ArgumentException>(() => VariantOverrides.ParseForward("128:n176,s3,q2")).Message);
        Assert.Contains("'bogus'", Assert.Throws<ArgumentException>(() => VariantOverrides.ParseForward("128:bogus")).Message);
        Assert.Contains(VariantOverrides.ForwardVariable, Assert.Throws<ArgumentException>(() => VariantOverrides.ParseForward("n128")).Message);
        Assert.Empty(VariantOverrides.ParseForward(null));
    }

    [Fact]
    public void Backward_overrides_edit_the_default_before_softcap_applies()
    {
        var policy = TuningPolicy.Parse(name => name == VariantOverrides.BackwardVariable ? "128:s3,keys,atomic;64:m64" : null);
        Assert.Equal(BackwardVariants.For(128, false) with { Stages = 3, DqSplit = DqSplit.ByKeys, DqAdd = DqAdd.Reduce }, policy.Backward(128, false));
        Assert.Equal(64, policy.Backward(64, false).BlockM);
        Assert.Equal((true, 3), (policy.Backward(128, true).Softcap, policy.Backward(128, true).Stages));
        Assert.Equal(BackwardVariants.For(256, false), policy.Backward(256, false));
        Assert.Contains("'fast'", Assert.Throws<ArgumentException>(() => VariantOverrides.ParseBackward("128:fast")).Message);
    }

    [Fact]
    public void Ablations_change_one_idea_each()
    {
        var full = ForwardVariants.For(128, 8192, false);
        Assert.Equal(ForwardLoop.Overlapped, new ForwardAblation(IntraWarpgroupOverlap: true).Apply(full).Loop);
        Assert.False(new ForwardAblation(NoPingPong: true).Apply(full).PingPong);
        var noWs = new ForwardAblation(NoWarpSpecialization: true).Apply(full);
        Assert.Equal((false, false), (noWs.WarpSpecialized, noWs.PingPong));  // ping-pong needs a producer to keep both consumers fed
        // The overlap switched off turns an overlapped loop sequential and leaves the chained one.
        var d256 = ForwardVariants.For(256, 8192, false);
        Assert.Equal(ForwardLoop.Chained, new ForwardAblation(IntraWarpgroupOverlap: false).Apply(d256).Loop);
        Assert.All(ForwardAblation.PaperTable, a => Assert.NotEqual(full, a.Apply(full)));
        Assert.Equal(full, ForwardAblation.None.Apply(full));
        Assert.Equal("with-intra-wg-overlap", ForwardAblation.PaperTable[0].Name);
    }

    [Fact]
    public void Schedule_and_section_overrides_are_checked_and_fall_back_to_the_masks_choice()
    {
        var none = TuningPolicy.Parse(_ => null);
        Assert.True(none.IsDefault);
        Assert.Equal((true, false), (none.DynamicSchedule(true), none.DynamicSchedule(false)));
        Assert.Equal(VariantPolicy.Default.L2SectionBytes, none.L2SectionBytes);
        var forced = TuningPolicy.Parse(n => n == TuningPolicy.ScheduleVariable ? "static" : n == TuningPolicy.SectionVariable ? "65536" : null);
        Assert.Equal((false, 65536L), (forced.DynamicSchedule(true), forced.L2SectionBytes));
        Assert.Contains(TuningPolicy.ScheduleVariable, Assert.Throws<ArgumentException>(() => TuningPolicy.Parse(n => n == TuningPolicy.ScheduleVariable ? "greedy" : null)).Message);
        Assert.Contains(TuningPolicy.SectionVariable, Assert.Throws<ArgumentException>(() => TuningPolicy.Parse(n => n == TuningPolicy.SectionVariable ? "-1" : null)).Message);
    }

    [Fact]
    public void An_installed_policy_is_what_the_catalogue_sees_until_its_scope_ends()
    {
        // The catalogue reads the same VariantPolicy.Current as the launchers: an override shows in the warm-up list.
        var policy = TuningPolicy.Parse(n => n == VariantOverrides.ForwardVariable ? "128:n64,s3" : null);
        string Label() => KernelCatalog.All().First(e => e.Label.StartsWith("fwd bf16 d128", StringComparison.Ordinal)).Label;
        Assert.StartsWith("fwd bf16 d128 128x128 stages 2", Label());
        using (VariantPolicy.Install(policy))
        {
            Assert.Same(policy, VariantPolicy.Current);
            Assert.StartsWith("fwd bf16 d128 128x64 stages 3", Label());
        }
        Assert.Same(VariantPolicy.Default, VariantPolicy.Current);
    }
}

/// <summary>
/// Tests that install the process-wide variant policy, or read the catalogue it shapes, run in this collection: one at
/// a time, so none sees another's policy.
/// </summary>
[CollectionDefinition(Collection)]
public sealed class PolicyScope
{
    public const string Collection = "process-wide variant policy";
}
