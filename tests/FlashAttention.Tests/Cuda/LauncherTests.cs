using System.Runtime.CompilerServices;
using FlashAttention.Cuda;
using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;

namespace FlashAttention.Tests.Cuda;

/// <summary>The pure parts of the GPU launchers: parameter-struct layouts (the variant tables are VariantTests' concern).</summary>
public class LauncherTests
{
    // The kernels read these structs at fixed offsets (fwd_params.cuh and bwd_params.cuh state the sizes); a drifting field breaks them silently.
    [Fact]
    public void Kernel_parameter_structs_have_the_sizes_the_header_states()
    {
        Assert.Equal(176, Unsafe.SizeOf<FwdParams>());
        Assert.Equal(184, Unsafe.SizeOf<BwdParams>());
        Assert.Equal(200, Unsafe.SizeOf<BwdAuxParams>());
        Assert.Equal(80, Unsafe.SizeOf<VarlenPrepareParams>());
        Assert.Equal(240, Unsafe.SizeOf<DecodeParams>());
        Assert.Equal(192, Unsafe.SizeOf<KvCacheParams>());
    }

    [Fact]
    public unsafe void Parameter_fields_sit_where_the_header_puts_them()
    {
        var f = new FwdParams();
        byte* fb = (byte*)&f;
        Assert.Equal(64, (int)((byte*)&f.Lse - fb));
        Assert.Equal(56, (int)((byte*)&f.ScoreScaleLog2 - fb));
        Assert.Equal(96, (int)((byte*)&f.TileCounter - fb));
        Assert.Equal(104, (int)((byte*)&f.CuSeqLensQ - fb));
        Assert.Equal(168, (int)((byte*)&f.TotalQ - fb));
        var b = new BwdParams();
        byte* bb = (byte*)&b;
        Assert.Equal(56, (int)((byte*)&b.LseLog2 - bb));
        Assert.Equal(144, (int)((byte*)&b.DvStrideH - bb));
        Assert.Equal(152, (int)((byte*)&b.CuSeqLensQ - bb));
        var a = new BwdAuxParams();
        byte* ab = (byte*)&a;
        Assert.Equal(152, (int)((byte*)&a.LseLog2 - ab));
        Assert.Equal(184, (int)((byte*)&a.NumMBlocks - ab));
        Assert.Equal(192, (int)((byte*)&a.CuSeqLensQ - ab));
        var d = new DecodeParams();
        byte* db = (byte*)&d;
        Assert.Equal(88, (int)((byte*)&d.SeqLens - db));
        Assert.Equal(176, (int)((byte*)&d.Lse - db));
        Assert.Equal(224, (int)((byte*)&d.Error - db));
        Assert.Equal(232, (int)((byte*)&d.SplitCounters - db));
        var kv = new KvCacheParams();
        byte* kb = (byte*)&kv;
        Assert.Equal(120, (int)((byte*)&kv.KCache - kb));
        Assert.Equal(184, (int)((byte*)&kv.Error - kb));
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
        => Assert.Equal(expected, FlashForwardLauncher.LongestFirstSectionHeads(Problem(batch, seqLen, headsQ, headsK, headDim), staticSmCount: null, VariantPolicy.Default.L2SectionBytes));

    [Theory]
    [InlineData(4, 16384, 16, 16, 128, 132, 5)]     // 128 query blocks: a round of 132 tiles over ≤ 32 lengths needs 5 heads
    [InlineData(2, 8192, 32, 32, 64, 132, 16)]      // d64 8k: the 16 L2-sized heads already span few lengths
    [InlineData(1, 8192, 8, 8, 256, 132, 8)]        // d256 8k: 9 needed for balance, 8 there are
    [InlineData(8, 2048, 16, 16, 128, 4, 32)]       // few SMs: the L2 size decides
    public void The_fixed_stride_schedule_widens_sections_so_a_round_spans_few_lengths(int batch, int seqLen, int headsQ, int headsK, int headDim, int sms, int expected)
        => Assert.Equal(expected, FlashForwardLauncher.LongestFirstSectionHeads(Problem(batch, seqLen, headsQ, headsK, headDim), sms, VariantPolicy.Default.L2SectionBytes));

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
