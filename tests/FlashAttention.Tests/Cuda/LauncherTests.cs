using System.Runtime.CompilerServices;
using FlashAttention.Cuda;
using FlashAttention.Cuda.Launchers;

namespace FlashAttention.Tests.Cuda;

/// <summary>The pure parts of the GPU launchers: parameter-struct layouts, the tile table, the tuning overrides.</summary>
public class LauncherTests
{
    // The kernels read these structs at fixed offsets (flash_params.cuh states the sizes); a drifting field breaks them silently.
    [Fact]
    public void Kernel_parameter_structs_have_the_sizes_the_header_states()
    {
        Assert.Equal(104, Unsafe.SizeOf<FwdParams>());
        Assert.Equal(152, Unsafe.SizeOf<BwdParams>());
        Assert.Equal(192, Unsafe.SizeOf<BwdAuxParams>());
    }

    [Fact]
    public unsafe void Parameter_fields_sit_where_the_header_puts_them()
    {
        var f = new FwdParams();
        byte* fb = (byte*)&f;
        Assert.Equal(64, (int)((byte*)&f.Lse - fb));
        Assert.Equal(56, (int)((byte*)&f.ScoreScaleLog2 - fb));
        Assert.Equal(96, (int)((byte*)&f.TileCounter - fb));
        var b = new BwdParams();
        byte* bb = (byte*)&b;
        Assert.Equal(56, (int)((byte*)&b.LseLog2 - bb));
        Assert.Equal(144, (int)((byte*)&b.DvStrideH - bb));
        var a = new BwdAuxParams();
        byte* ab = (byte*)&a;
        Assert.Equal(152, (int)((byte*)&a.LseLog2 - ab));
        Assert.Equal(184, (int)((byte*)&a.NumMBlocks - ab));
    }

    [Fact]
    public void Tiles_of_unequal_length_are_scheduled_dynamically_unless_overridden()
    {
        Assert.True(FlashForwardLauncher.DynamicSchedule(longestFirst: true, null));
        Assert.False(FlashForwardLauncher.DynamicSchedule(longestFirst: false, ""));
        Assert.False(FlashForwardLauncher.DynamicSchedule(longestFirst: true, "static"));
        Assert.True(FlashForwardLauncher.DynamicSchedule(longestFirst: false, "dynamic"));
        var e = Assert.Throws<ArgumentException>(() => FlashForwardLauncher.DynamicSchedule(true, "greedy"));
        Assert.Contains(FlashForwardLauncher.ScheduleOverrideVariable, e.Message);
    }

    [Theory]
    [InlineData(64)]
    [InlineData(128)]
    [InlineData(256)]
    public void Every_forward_variant_fits_in_shared_memory(int headDim)
    {
        foreach (var ablation in KernelCatalog.Ablations.Append(ForwardAblation.None))
        foreach (int keys in new[] { 1, 1 << 20 })
        foreach (bool causal in new[] { false, true })
        {
            var c = TileTables.Forward(headDim, keys, ablation, causal);
            Assert.InRange(c.SharedMemoryBytes, 1, 232448);
            Assert.Equal(0, c.BlockN % 16);
            Assert.Equal(128 * (c.ConsumerWarpgroups + (c.WarpSpecialized ? 1 : 0)), c.Threads);
            // three consumers only at d64, with key blocks their 160 registers hold
            Assert.True(c.ConsumerWarpgroups == 2 || (headDim == 64 && c.BlockN <= 128));
        }
    }

    [Theory]
    [InlineData(64)]
    [InlineData(128)]
    [InlineData(256)]
    public void Every_backward_variant_fits_in_shared_memory(int headDim)
        => Assert.InRange(TileTables.Backward(headDim, null).SharedMemoryBytes, 1, 232448);

    [Fact]
    public void Name_expressions_spell_the_template_arguments_in_header_order()
    {
        var c = new ForwardKernelConfig(128, 176, 2, IntraWgOverlap: true, PingPong: false, OAliasQ: true, WarpSpecialized: true, QStages: 1);
        Assert.Equal("fa::flash_fwd_kernel<fa::FwdConfig<fa::bf16_t, 128, 176, 2, true, false, true, true, 1, false>>", c.NameExpression(DataType.BFloat16));
        Assert.Equal("fa::flash_bwd_kernel<fa::BwdConfig<fa::half_t, 64, 2, false, true, false, false, false>>", new BackwardKernelConfig(64, 2, Softcap: true).NameExpression(DataType.Float16));
        Assert.Equal("fa::flash_bwd_kernel<fa::BwdConfig<fa::bf16_t, 128, 2, true, false, true, true, false>>", TileTables.Backward(128, null).NameExpression(DataType.BFloat16));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.NameExpression(DataType.Float32));
    }

    [Fact]
    public void Persistent_backward_is_an_override_with_one_more_barrier()
    {
        var persistent = TileTables.Backward(128, "128:persist");
        Assert.True(persistent.Persistent);
        Assert.False(TileTables.Backward(128, null).Persistent);
        Assert.Equal(TileTables.Backward(128, null).SharedMemoryBytes + 8, persistent.SharedMemoryBytes);
        Assert.EndsWith(", false, 64, true>>", persistent.NameExpression(DataType.BFloat16));
        Assert.EndsWith(", 128, true>>", TileTables.Backward(64, "64:persist").NameExpression(DataType.BFloat16));
        Assert.Contains("persistent", persistent.ToString());
        Assert.True(persistent.ForSoftcap(true).Persistent);
        Assert.InRange(TileTables.Backward(64, "64:persist").SharedMemoryBytes, 1, 232448);
        // One CTA per SM, never more than key blocks; the default grid is a CTA per key block, key head and batch.
        Assert.Equal((132u, 1u, 1u), Grid(FlashBackwardLauncher.MainGrid(persistent, 4, 16, 32, 132)));
        Assert.Equal((6u, 1u, 1u), Grid(FlashBackwardLauncher.MainGrid(persistent, 3, 1, 2, 132)));
        Assert.Equal((4u, 16u, 32u), Grid(FlashBackwardLauncher.MainGrid(TileTables.Backward(128, null), 4, 16, 32, 132)));
        static (uint, uint, uint) Grid(Dim3 d) => (d.X, d.Y, d.Z);
    }

    [Fact]
    public void D256_split_of_s_and_dp_is_the_default_that_fits_and_softcap_drops()
    {
        var split = TileTables.Backward(256, null);
        Assert.True(split.SplitSdP);
        var unsplit = TileTables.Backward(256, "256:nosplitsdp");
        Assert.False(unsplit.SplitSdP);
        Assert.InRange(split.SharedMemoryBytes, unsplit.SharedMemoryBytes + 16384, 232448);
        Assert.False(split.ForSoftcap(true).SplitSdP);
        Assert.EndsWith("false, false, false, true>>", split.NameExpression(DataType.BFloat16));
        // "256:…" entries do not touch other head dims; asked for at d128 it is refused by name.
        Assert.False(TileTables.Backward(128, "256:splitsdp").SplitSdP);
        var e = Assert.Throws<ArgumentException>(() => TileTables.Backward(128, "128:splitsdp"));
        Assert.Contains("splitsdp", e.Message);
    }

    [Fact]
    public void Cross_tile_is_an_override_of_the_loop_without_overlap_with_two_q_buffers()
    {
        var xt = TileTables.Override(128, "128:n128,s2,q2,xt")!;
        Assert.Equal((true, false, false, 2), (xt.CrossTile, xt.IntraWgOverlap, xt.OAliasQ, xt.QStages));
        // Every template argument up to the flag is spelled (the consumer count before it).
        Assert.EndsWith(", 2, false, false, 1, 2, true>>", xt.NameExpression(DataType.BFloat16));
        Assert.EndsWith(" cross-tile", xt.ToString());
        Assert.Equal(TileTables.Override(128, "128:n128,s2,q2,noov")!.SharedMemoryBytes, xt.SharedMemoryBytes);
        // What the kernel's static_assert requires, refused by name before NVRTC sees it.
        foreach (string bad in new[] { "128:n128,s2,q1,xt", "128:n128,s2,q2,alias,xt", "128:n128,s2,q2,nopp,xt", "128:n160,s2,q2,xt", "64:n64,s4,q1,w3,xt", "128:n128,s2,q2,xt,ov", "128:n128,s2,q2,xt,chain", "256:n64,s2,q2,o2,xt" })
            Assert.Contains("xt", Assert.Throws<ArgumentException>(() => TileTables.Override(int.Parse(bad[..bad.IndexOf(':')]), bad)).Message);
        // Three consumers (d64's 192-row tiles) too, with key blocks up to 192.
        var three = TileTables.Override(64, "64:n128,s3,q2,qregs,noov,w3,xt")!;
        Assert.EndsWith(", 2, true, false, 1, 3, true>>", three.NameExpression(DataType.BFloat16));
        // Ablations that take ping-pong or the producer away, or force the overlap on, drop it.
        Assert.False(TileTables.WithAblation(xt, new ForwardAblation(NoPingPong: true)).CrossTile);
        Assert.False(TileTables.WithAblation(xt, new ForwardAblation(NoWarpSpecialization: true)).CrossTile);
        Assert.False(TileTables.WithAblation(xt, new ForwardAblation(IntraWarpgroupOverlap: true)).CrossTile);
        Assert.True(TileTables.WithAblation(xt, new ForwardAblation(IntraWarpgroupOverlap: false)).CrossTile);
        // The defaults' names are unchanged (their cached binaries stay valid).
        Assert.False(TileTables.Forward(128).CrossTile);
        Assert.EndsWith(", 2, false>>", TileTables.Forward(128).NameExpression(DataType.BFloat16));
    }

    [Fact]
    public void Chained_pv_and_s_is_an_override_of_the_loop_without_overlap()
    {
        var chain = TileTables.Override(128, "128:n128,s2,q2,chain")!;
        Assert.True(chain.ChainPvS);
        Assert.False(chain.IntraWgOverlap);
        Assert.EndsWith(", 2, false, true>>", chain.NameExpression(DataType.BFloat16));
        Assert.Contains("chained", chain.ToString());
        // Defaults keep their names (and cached binaries): the flag is spelled only when set.
        Assert.EndsWith(", 2, false>>", TileTables.Forward(128).NameExpression(DataType.BFloat16));
        Assert.Contains("chain", Assert.Throws<ArgumentException>(() => TileTables.Override(128, "128:chain,ov")).Message);
        // An ablation that forces the overlap on drops the chaining with it.
        var overlapped = TileTables.WithAblation(chain, new ForwardAblation(IntraWarpgroupOverlap: true));
        Assert.Equal((true, false), (overlapped.IntraWgOverlap, overlapped.ChainPvS));
        Assert.True(TileTables.WithAblation(chain, new ForwardAblation(NoPingPong: true)).ChainPvS);
    }

    [Fact]
    public void Forward_picks_long_sequence_variants_from_2k_keys_and_warmup_knows_both()
    {
        var d256Short = TileTables.Forward(256, TileTables.LongKeysFrom - 1);
        var d256Long = TileTables.Forward(256, TileTables.LongKeysFrom);
        Assert.Equal((false, true, 64), (d256Short.IntraWgOverlap, d256Short.ChainPvS, d256Short.BlockN));
        // short keys: O in a buffer of its own, staged in two passes; long keys: O in Q's buffer (no room for one)
        Assert.Equal((false, 2, true, 1), (d256Short.OAliasQ, d256Short.OPasses, d256Long.OAliasQ, d256Long.OPasses));
        Assert.Equal((false, true, 80), (d256Long.IntraWgOverlap, d256Long.ChainPvS, d256Long.BlockN));
        Assert.Equal(d256Short, TileTables.Forward(256));
        Assert.Equal([d256Short, d256Long], TileTables.ForwardVariants(256));
        // d64: three consumers (192-row tiles) but under a causal mask below 2k keys, where two are faster
        Assert.Equal((3, 3, 2, 3), (TileTables.Forward(64, 1024).ConsumerWarpgroups, TileTables.Forward(64, 4096).ConsumerWarpgroups,
            TileTables.Forward(64, 1024, keysCutFromRight: true).ConsumerWarpgroups, TileTables.Forward(64, 4096, keysCutFromRight: true).ConsumerWarpgroups));
        Assert.Equal(2, TileTables.ForwardVariants(64).Count());
        // d128 has one variant for every length
        Assert.Single(TileTables.ForwardVariants(128));
        var labels = KernelCatalog.All().Select(e => e.Label).ToList();
        Assert.Contains(labels, l => l.StartsWith("fwd bf16 d256 128x80") && l.Contains("chained"));
        Assert.Contains(labels, l => l.StartsWith("fwd bf16 d256 128x64") && l.Contains("O-in-2-passes"));
        Assert.Contains(labels, l => l.StartsWith("fwd fp16 d64 128x128"));
        Assert.Contains(labels, l => l.StartsWith("fwd fp16 d64 192x128"));
        // The overlap ablation on the long d256 variant drops the chaining.
        var overlapped = TileTables.Forward(256, 1 << 20, new ForwardAblation(IntraWarpgroupOverlap: true));
        Assert.Equal((true, false, 80), (overlapped.IntraWgOverlap, overlapped.ChainPvS, overlapped.BlockN));
    }

    [Fact]
    public void D64_backward_takes_128_queries_per_step_by_default_and_64_on_request()
    {
        var m128 = TileTables.Backward(64, null);
        Assert.Equal((128, true, false), (m128.BlockM, m128.DqBulk, m128.ExchangeDs));
        Assert.Equal(m128, TileTables.Backward(64, "64:m128"));
        var m64 = TileTables.Backward(64, "64:m64");
        Assert.Equal(64, m64.BlockM);
        // One dS buffer instead of two, and 32 KB dQ buffers: it still fits the 227 KB a block may have.
        Assert.InRange(m128.SharedMemoryBytes, m64.SharedMemoryBytes, 232448);
        Assert.Equal("fa::flash_bwd_kernel<fa::BwdConfig<fa::bf16_t, 64, 2, false, false, true, false, false, 128>>", m128.NameExpression(DataType.BFloat16));
        // 64 queries per step is spelled by omission (the names, and so the cached binaries, of d128/d256 are unchanged).
        Assert.EndsWith(", false>>", m64.NameExpression(DataType.BFloat16));
        Assert.EndsWith(", false>>", TileTables.Backward(128, null).NameExpression(DataType.BFloat16));
        // Softcap goes back to 64 queries per step; labels say which tile a variant has.
        Assert.Equal(64, m128.ForSoftcap(true).BlockM);
        Assert.StartsWith("d64 128x128 ", m128.ToString());
        Assert.StartsWith("d64 64x128 ", m128.ForSoftcap(true).ToString());
        Assert.Contains("m128", Assert.Throws<ArgumentException>(() => TileTables.Backward(128, "128:m128")).Message);
        Assert.Contains("m64", Assert.Throws<ArgumentException>(() => TileTables.Backward(64, "64:atomic")).Message);
        Assert.False(TileTables.Backward(64, "64:m64,atomic").DqBulk);
    }

    [Fact]
    public void Softcap_backward_variant_drops_the_dv_overlap_and_the_override_can_set_it()
    {
        var d128 = TileTables.Backward(128, null);
        Assert.True(d128.OverlapDv);
        Assert.Equal((true, false), (d128.ForSoftcap(true).Softcap, d128.ForSoftcap(true).OverlapDv));
        Assert.Equal(d128, d128.ForSoftcap(false));
        Assert.True(TileTables.Backward(64, "64:overlapdv").OverlapDv);
        Assert.False(TileTables.Backward(128, "128:nooverlapdv").OverlapDv);
    }

    [Fact]
    public void Ablations_change_one_idea_each()
    {
        var full = TileTables.Forward(128);
        Assert.True(full.WarpSpecialized && full.PingPong);
        // intra-warpgroup overlap: off in every default (it measured slower; d256 chains P·V with the next S instead)
        Assert.Equal((false, false, false), (TileTables.Forward(64).IntraWgOverlap, full.IntraWgOverlap, TileTables.Forward(256).IntraWgOverlap));
        Assert.Equal("with-intra-wg-overlap", new ForwardAblation(IntraWarpgroupOverlap: true).Name);
        Assert.False(TileTables.Forward(256, new ForwardAblation(IntraWarpgroupOverlap: false)).IntraWgOverlap);
        Assert.True(TileTables.Forward(128, new ForwardAblation(IntraWarpgroupOverlap: true)).IntraWgOverlap);
        // the catalogue's overlap ablation differs from d128's default kernel whichever way the default goes
        Assert.All(KernelCatalog.Ablations, a => Assert.NotEqual(TileTables.Forward(128), TileTables.Forward(128, a)));
        Assert.False(TileTables.Forward(128, new ForwardAblation(NoPingPong: true)).PingPong);
        var noWs = TileTables.Forward(128, new ForwardAblation(NoWarpSpecialization: true));
        Assert.False(noWs.WarpSpecialized);
        Assert.False(noWs.PingPong); // ping-pong needs a producer to keep both consumers fed
    }

    [Fact]
    public void Forward_override_parses_fields_and_rejects_unknown_ones()
    {
        var c = TileTables.Override(128, "64:n192;128:n176,s2,q1,alias,nopp,noov")!;
        Assert.Equal((176, 2, 1, true, false, false), (c.BlockN, c.Stages, c.QStages, c.OAliasQ, c.PingPong, c.IntraWgOverlap));
        // A variant that cannot fit the 227 KB of shared memory is refused here, not by the kernel compiler.
        Assert.Contains("shared memory", Assert.Throws<ArgumentException>(() => TileTables.Override(128, "128:n176,s3,q2")).Message);
        Assert.Null(TileTables.Override(256, "128:n176"));
        Assert.Throws<ArgumentException>(() => TileTables.Override(128, "128:bogus"));
        Assert.False(c.QInRegisters);
        Assert.True(TileTables.Override(64, "64:n192,s3,q2,qregs")!.QInRegisters);
        Assert.True(TileTables.Override(128, "128:ov")!.IntraWgOverlap);
        // O staged in two column passes through a buffer of its own (instead of Q's): half of O's bytes in shared memory.
        var twoPasses = TileTables.Override(256, "256:n64,s2,o2")!;
        Assert.Equal((2, false), (twoPasses.OPasses, twoPasses.OAliasQ));
        Assert.EndsWith(", 1, false, false, 2>>", twoPasses.NameExpression(DataType.BFloat16));
        Assert.Contains("O-in-2-passes", twoPasses.ToString());
        var aliased = TileTables.Override(256, "256:n64,s2,alias")!;
        Assert.Equal(aliased.SharedMemoryBytes + 2 * 64 * 128 * 2, twoPasses.SharedMemoryBytes);
        Assert.True(twoPasses.SharedMemoryBytes <= 232448, $"{twoPasses.SharedMemoryBytes} bytes");
        Assert.Contains("alias", Assert.Throws<ArgumentException>(() => TileTables.Override(256, "256:o2,alias")).Message);
        Assert.Contains("divide", Assert.Throws<ArgumentException>(() => TileTables.Override(64, "64:o2")).Message);
        // Three consumer warpgroups (d64, 192-row tiles): the name spells every argument before the count; 160
        // registers each hold no more than 128-key blocks, and the other head dims keep two.
        var three = TileTables.Override(64, "64:n128,s3,q2,qregs,noov,w3")!;
        Assert.Equal((3, 192, 512), (three.ConsumerWarpgroups, three.BlockM, three.Threads));
        Assert.EndsWith(", 2, true, false, 1, 3>>", three.NameExpression(DataType.BFloat16));
        Assert.StartsWith("d64 192x128 ", three.ToString());
        Assert.Equal(TileTables.Override(64, "64:n128,s3,q2,qregs,noov")!.SharedMemoryBytes + 3 * 64 * 128, three.SharedMemoryBytes);  // two Q buffers and O, 64 rows more each
        Assert.Contains("w3", Assert.Throws<ArgumentException>(() => TileTables.Override(128, "128:w3")).Message);  // 128-key blocks: 160
        Assert.Equal(192, TileTables.Override(128, "128:n96,s2,q1,noov,w3")!.BlockM);  // 64 + 48 + 24 = 136
        Assert.Contains("144", Assert.Throws<ArgumentException>(() => TileTables.Override(128, "128:n96,qregs,w3")).Message);
        Assert.Contains("w3", Assert.Throws<ArgumentException>(() => TileTables.Override(64, "64:n192,w3")).Message);
        Assert.Equal(128, TileTables.Forward(128).BlockM);
        // The defaults' names are unchanged by the new argument (their cached binaries stay valid).
        Assert.EndsWith(", 2, true>>", TileTables.Forward(64, 512, keysCutFromRight: true).NameExpression(DataType.BFloat16));
        // The measured defaults: Q in registers at d64 only (TileTables' comments hold the numbers).
        Assert.Equal((true, false, false), (TileTables.Forward(64).QInRegisters, TileTables.Forward(128).QInRegisters, TileTables.Forward(256).QInRegisters));
    }

    [Fact]
    public void Backward_override_parses_stages_and_dq_split_and_addition()
    {
        Assert.Equal(new BackwardKernelConfig(128, 3, ExchangeDs: false, OverlapDv: true), TileTables.Backward(128, "128:s3,split"));
        Assert.Equal(TileTables.Backward(64, null), TileTables.Backward(64, "128:s3"));
        Assert.Throws<ArgumentException>(() => TileTables.Backward(128, "128:fast"));
        Assert.False(TileTables.Backward(128, "128:atomic").DqBulk);
        Assert.True(TileTables.Backward(64, null).DqBulk);
        Assert.False(TileTables.Backward(256, null).DqBulk);
        // Bulk dQ needs one 64-column block per consumer: not with d128's split by keys, nor at d256.
        Assert.Throws<ArgumentException>(() => TileTables.Backward(128, "128:split,bulk"));
        Assert.Throws<ArgumentException>(() => TileTables.Backward(256, "256:bulk"));
    }
}

/// <summary>
/// What the GPU kernels need beyond the shared validation is checked before any device is touched, so these run on
/// any machine: fake device addresses, never dereferenced.
/// </summary>
public class GpuRequirementTests
{
    private static DeviceTensor T(DataType type, long address, params long[] shape) => DeviceTensor.Contiguous((nint)address, type, shape);

    private static AttentionArgumentException Forward(DataType type, int headDim, long qAddress = 0x10000, long[]? qStrides = null)
    {
        long[] shape = [1, 64, 2, headDim];
        var q = qStrides is null ? T(type, qAddress, shape) : new DeviceTensor((nint)qAddress, type, shape, qStrides);
        return Assert.Throws<AttentionArgumentException>(() => CudaAttention.Forward(q, T(type, 0x100000, shape), T(type, 0x200000, shape), T(type, 0x300000, shape)));
    }

    [Fact]
    public void Float32_is_refused_with_the_types_the_kernels_take()
    {
        var e = Forward(DataType.Float32, 128);
        Assert.Equal("query", e.ParamName);
        Assert.Contains("BFloat16 or Float16", e.Message);
    }

    [Fact]
    public void An_unsupported_head_dim_names_the_supported_ones() => Assert.Contains("64, 128, 256; got 96", Forward(DataType.BFloat16, 96).Message);

    [Fact]
    public void A_misaligned_address_is_refused() => Assert.Contains("16-byte aligned", Forward(DataType.BFloat16, 128, qAddress: 0x10008).Message);

    [Fact]
    public void Strides_that_are_not_multiples_of_8_are_refused()
        => Assert.Contains("multiples of 8 elements", Forward(DataType.BFloat16, 64, qStrides: [64 * 2 * 64 + 4, 2 * 64 + 4, 66, 1]).Message);

    [Fact]
    public void More_query_blocks_than_the_kernels_index_are_refused()
    {
        long[] shape = [65536, 4160, 512, 64];  // 65536 batches × 512 heads × 65 blocks of 64 rows > 2^31 − 1
        var bf = DataType.BFloat16;
        var e = Assert.Throws<AttentionArgumentException>(() => CudaAttention.Forward(T(bf, 1L << 16, shape), T(bf, 1L << 55, shape),
            T(bf, 2L << 55, shape), T(bf, 3L << 55, shape)));
        Assert.Equal("query", e.ParamName);
        Assert.Contains("the GPU kernels index at most 2147483647", e.Message);
    }

    private static AttentionProblem Problem(int batch, int seqLen, int headsQ, int headsK, int headDim)
    {
        var bf = DataType.BFloat16;
        long[] qShape = [batch, seqLen, headsQ, headDim], kShape = [batch, seqLen, headsK, headDim];
        return AttentionValidation.Forward(T(bf, 1L << 36, qShape).ToLayout("query"), T(bf, 2L << 36, kShape).ToLayout("key"),
            T(bf, 3L << 36, kShape).ToLayout("value"), T(bf, 4L << 36, qShape).ToLayout("output"), null, new AttentionOptions { Causal = true });
    }

    [Theory]
    [InlineData(8, 2048, 16, 16, 128, 32)]     // 1 MB of K/V per head: 32 heads share 32 MB
    [InlineData(4, 16384, 16, 16, 128, 4)]     // 8 MB per head
    [InlineData(4, 16384, 16, 4, 128, 16)]     // GQA: four query heads share one key head's 8 MB
    [InlineData(2, 1024, 4, 4, 64, 8)]         // fewer pairs than would fit: all of them
    [InlineData(4, 262144, 2, 2, 256, 1)]      // more than fits: one at a time
    [InlineData(1, 16384, 16, 16, 128, 4)]     // the dynamic schedule balances by itself: no floor for long tiles
    public void Heaviest_first_sections_hold_the_heads_whose_kv_fits_l2(int batch, int seqLen, int headsQ, int headsK, int headDim, int expected)
        => Assert.Equal(expected, FlashForwardLauncher.LongestFirstSectionHeads(Problem(batch, seqLen, headsQ, headsK, headDim), staticSmCount: null));

    [Theory]
    [InlineData(4, 16384, 16, 16, 128, 132, 5)]     // 128 query blocks: a round of 132 tiles over ≤ 32 lengths needs 5 heads
    [InlineData(2, 8192, 32, 32, 64, 132, 16)]      // d64 8k: the 16 L2-sized heads already span few lengths
    [InlineData(1, 8192, 8, 8, 256, 132, 8)]        // d256 8k: 9 needed for balance, 8 there are
    [InlineData(8, 2048, 16, 16, 128, 4, 32)]       // few SMs: the L2 size decides
    public void The_fixed_stride_schedule_widens_sections_so_a_round_spans_few_lengths(int batch, int seqLen, int headsQ, int headsK, int headDim, int sms, int expected)
        => Assert.Equal(expected, FlashForwardLauncher.LongestFirstSectionHeads(Problem(batch, seqLen, headsQ, headsK, headDim), sms));

    [Fact]
    public void More_batches_than_the_backward_grid_takes_are_refused()
    {
        long[] shape = [65536, 64, 1, 64], lse = [65536, 1, 64];
        var bf = DataType.BFloat16;
        var e = Assert.Throws<AttentionArgumentException>(() => CudaAttention.Backward(T(bf, 1L << 16, shape), T(bf, 1L << 40, shape),
            T(bf, 2L << 40, shape), T(bf, 3L << 40, shape), T(bf, 4L << 40, shape), T(DataType.Float32, 5L << 40, lse),
            T(bf, 6L << 40, shape), T(bf, 7L << 40, shape), T(bf, 8L << 40, shape)));
        Assert.Equal("query", e.ParamName);
        Assert.Contains("at most 65535 heads and 65535 batches; got 1 query heads, batch 65536", e.Message);
    }

    [Fact]
    public void The_backward_pass_names_its_own_head_dims()
    {
        long[] shape = [1, 64, 2, 96], lse = [1, 2, 64];
        var t = T(DataType.BFloat16, 0x10000, shape);
        var e = Assert.Throws<AttentionArgumentException>(() => CudaAttention.Backward(t, T(DataType.BFloat16, 0x100000, shape),
            T(DataType.BFloat16, 0x200000, shape), T(DataType.BFloat16, 0x300000, shape), T(DataType.BFloat16, 0x400000, shape),
            T(DataType.Float32, 0x500000, lse), T(DataType.BFloat16, 0x600000, shape), T(DataType.BFloat16, 0x700000, shape),
            T(DataType.BFloat16, 0x800000, shape)));
        Assert.Contains("backward kernels support head_dim 64, 128, 256; got 96", e.Message);
    }
}
