using FlashAttention.Cuda;
using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;

namespace FlashAttention.Tests.Cuda;

/// <summary>
/// KV-cache attention's host-side checks (everything but the device-resident lengths and page entries), before any
/// device is touched: fake device addresses, never dereferenced. Each bad input names its argument; the pure parts of
/// the decode launcher (box rows, the grid, the messages of the checked mode) are here too.
/// </summary>
public class KvCacheValidationTests
{
    private const DataType Bf = DataType.BFloat16;
    private const int B = 3, Sq = 1, Hq = 8, Hk = 2, D = 128, Pages = 40, PageSize = 16, MaxPages = 9;

    private static DeviceTensor T(DataType type, long slot, params long[] shape) => DeviceTensor.Contiguous(Slot(slot), type, shape);

    // A fake device address per tensor, 4 GB apart: never dereferenced, never overlapping.
    private static nint Slot(long slot, long offset = 0) => (nint)((slot << 32) + offset);

    /// <summary>A valid paged call's tensors, each at its own fake address; tests replace one.</summary>
    private sealed record Call
    {
        public DeviceTensor Query { get; init; } = T(Bf, 1, B, Sq, Hq, D);
        public DeviceTensor KeyCache { get; init; } = T(Bf, 2, Pages, PageSize, Hk, D);
        public DeviceTensor ValueCache { get; init; } = T(Bf, 3, Pages, PageSize, Hk, D);
        public DeviceTensor SeqLens { get; init; } = T(DataType.Int32, 4, B);
        public DeviceTensor Output { get; init; } = T(Bf, 5, B, Sq, Hq, D);
        public DeviceTensor? Lse { get; init; } = T(DataType.Float32, 6, B, Hq, Sq);
        public DeviceTensor? NewKeys { get; init; } = T(Bf, 7, B, 1, Hk, D);
        public DeviceTensor? NewValues { get; init; } = T(Bf, 8, B, 1, Hk, D);
        public DeviceTensor? PageTable { get; init; } = T(DataType.Int32, 9, B, MaxPages);
        public int? MaxCacheSeqLen { get; init; }

        public void Run() => CudaAttention.ForwardWithKvCache(Query, KeyCache, ValueCache, SeqLens, Output, Lse, new AttentionOptions { Causal = true },
            NewKeys, NewValues, PageTable, MaxCacheSeqLen);

        public KvCacheProblem Validate() => AttentionValidation.ForwardWithKvCache(Query.ToLayout("query"), KeyCache.ToLayout("keyCache"),
            ValueCache.ToLayout("valueCache"), SeqLens.ToLayout("cacheSeqLens"), PageTable?.ToLayout("pageTable"), NewKeys?.ToLayout("newKeys"),
            NewValues?.ToLayout("newValues"), Output.ToLayout("output"), Lse?.ToLayout("logSumExp"), new AttentionOptions { Causal = true }, MaxCacheSeqLen);
    }

    private static AttentionArgumentException Rejected(string argument, Call call, params string[] phrases)
    {
        var e = Assert.Throws<AttentionArgumentException>(call.Run);
        Assert.Equal(argument, e.ParamName);
        Assert.StartsWith(argument, e.Message);
        foreach (string phrase in phrases) Assert.Contains(phrase, e.Message);
        return e;
    }

    [Fact]
    public void A_valid_paged_call_describes_its_cache()
    {
        var kv = new Call().Validate();
        Assert.Equal((MaxPages * PageSize, PageSize, Pages, MaxPages, 1), (kv.Capacity, kv.PageSize, kv.NumPages, kv.MaxPages, kv.SeqLenNew));
        Assert.Equal(MaxPages * PageSize - 1, kv.MaxCacheSeqLen);   // the most that leaves room for the append
        Assert.Equal(MaxPages * PageSize, kv.Attention.SeqLenK);    // the longest key range
        Assert.Equal(MaxPages, kv.PageTableStride);
        Assert.Equal((Hq, Hk, 0), (kv.Attention.HeadsQ, kv.Attention.HeadsK, kv.Attention.WindowRight));
        var contiguous = (new Call() with { KeyCache = T(Bf, 2, B, 500, Hk, D), ValueCache = T(Bf, 3, B, 500, Hk, D), PageTable = null, MaxCacheSeqLen = 300 }).Validate();
        Assert.Equal((500, 0, 300, 301, false), (contiguous.Capacity, contiguous.PageSize, contiguous.MaxCacheSeqLen, contiguous.Attention.SeqLenK, contiguous.Paged));
    }

    [Theory]
    [InlineData(8)]
    [InlineData(24)]
    [InlineData(0)]
    public void Pages_of_other_than_a_multiple_of_16_tokens_are_refused(int pageSize)
        => Rejected("keyCache", new Call { KeyCache = T(Bf, 2, Pages, pageSize, Hk, D), ValueCache = T(Bf, 3, Pages, pageSize, Hk, D) },
            $"pages of {pageSize} tokens", "multiple of 16");

    [Fact]
    public void Appends_past_the_capacity_are_refused()
    {
        Rejected("newKeys", new Call { NewKeys = T(Bf, 7, B, 200, Hk, D), NewValues = T(Bf, 8, B, 200, Hk, D) }, "appends 200 tokens", "holds 144");
        Rejected("maxCacheSeqLen", new Call { MaxCacheSeqLen = MaxPages * PageSize }, "expected 0 … 143", "1 are appended", "got 144");
        Rejected("maxCacheSeqLen", new Call { MaxCacheSeqLen = -1 }, "got -1");
    }

    [Fact]
    public void New_keys_and_values_come_together()
    {
        Rejected("newValues", new Call { NewValues = null }, "together with newKeys");
        Rejected("newKeys", new Call { NewKeys = null }, "together with newValues");
        Rejected("newKeys", new Call { NewKeys = T(Bf, 7, B, 1, Hk + 1, D) }, $"({B}, seqlen_new, {Hk}, {D})");
        Rejected("newValues", new Call { NewValues = T(Bf, 8, B, 2, Hk, D) }, "that of newKeys");
    }

    [Fact]
    public void Lengths_and_page_tables_must_be_int32_of_their_shape()
    {
        Rejected("cacheSeqLens", new Call { SeqLens = T(Bf, 4, B) }, "Int32");
        Rejected("cacheSeqLens", new Call { SeqLens = T(DataType.Int32, 4, B + 1) }, $"({B}) (batch)");
        Rejected("cacheSeqLens", new Call { SeqLens = new DeviceTensor(Slot(4), DataType.Int32, [B], [2]) }, "stride 1");
        Rejected("pageTable", new Call { PageTable = T(DataType.Int32, 9, B + 1, MaxPages) }, "(batch, max_pages)");
        Rejected("pageTable", new Call { PageTable = T(DataType.Int32, 9, B * MaxPages) }, "rank 2");
        Rejected("pageTable", new Call { PageTable = new DeviceTensor(Slot(9), DataType.Int32, [B, MaxPages], [2 * MaxPages, 2]) }, "last stride 1");
        Rejected("cacheSeqLens", new Call { SeqLens = new DeviceTensor(Slot(4, 2), DataType.Int32, [B], [1]) }, "4-byte aligned");
    }

    [Fact]
    public void A_contiguous_cache_holds_one_row_per_sequence()
    {
        Rejected("keyCache", new Call { KeyCache = T(Bf, 2, B + 1, 64, Hk, D), ValueCache = T(Bf, 3, B + 1, 64, Hk, D), PageTable = null },
            $"expected batch {B}", "pageTable");
        Rejected("valueCache", new Call { ValueCache = T(Bf, 3, Pages, PageSize * 2, Hk, D) }, "that of keyCache");
        Rejected("keyCache", new Call { KeyCache = T(Bf, 2, Pages, PageSize, 3, D), ValueCache = T(Bf, 3, Pages, PageSize, 3, D) }, "divide heads_q");
    }

    [Fact]
    public void Written_tensors_may_not_share_memory_with_what_is_read()
    {
        // Appending writes the caches: the output may not overlap them.
        Rejected("keyCache", new Call { Output = new DeviceTensor(Slot(2), Bf, [B, Sq, Hq, D], DeviceTensor.ContiguousStrides([B, Sq, Hq, D])) },
            "must not share memory with output");
        Rejected("output", new Call { Output = T(Bf, 1, B, Sq, Hq, D) }, "must not share memory with query");
    }

    [Fact]
    public void The_gpu_takes_its_element_types_and_head_dims()
    {
        Rejected("query", new Call { Query = T(DataType.Float32, 1, B, Sq, Hq, D), KeyCache = T(DataType.Float32, 2, Pages, PageSize, Hk, D),
            ValueCache = T(DataType.Float32, 3, Pages, PageSize, Hk, D), Output = T(DataType.Float32, 5, B, Sq, Hq, D),
            NewKeys = T(DataType.Float32, 7, B, 1, Hk, D), NewValues = T(DataType.Float32, 8, B, 1, Hk, D) }, "BFloat16 or Float16", "Attention.Forward");
        Rejected("query", new Call { Query = T(Bf, 1, B, Sq, Hq, 96), KeyCache = T(Bf, 2, Pages, PageSize, Hk, 96), ValueCache = T(Bf, 3, Pages, PageSize, Hk, 96),
            Output = T(Bf, 5, B, Sq, Hq, 96), NewKeys = T(Bf, 7, B, 1, Hk, 96), NewValues = T(Bf, 8, B, 1, Hk, 96) }, "KV-cache kernels support head_dim 64, 128, 256");
    }

    [Fact]
    public void Every_verify_case_is_a_call_the_host_accepts()
    {
        foreach (var c in KvCacheGrids.Cases())
        {
            var s = c.Shape;
            var call = new Call
            {
                Query = T(c.Type, 1, s.QueryShape), KeyCache = T(c.Type, 2, s.CacheShape), ValueCache = T(c.Type, 3, s.CacheShape),
                SeqLens = T(DataType.Int32, 4, s.Batch), Output = T(c.Type, 5, s.QueryShape), Lse = T(DataType.Float32, 6, s.LseShape),
                NewKeys = s.SeqLenNew > 0 ? T(c.Type, 7, s.NewShape) : null, NewValues = s.SeqLenNew > 0 ? T(c.Type, 8, s.NewShape) : null,
                PageTable = s.Paged ? T(DataType.Int32, 9, s.PageTableShape) : null, MaxCacheSeqLen = c.MaxCacheSeqLen,
            };
            var kv = call.Validate();
            Assert.Equal(c.DeclaredMaximum, kv.MaxCacheSeqLen);
            // The lengths keep the contract (the faults break it on the device only), and leave a key for the page fault to sit on.
            Assert.All(c.CacheLens, len => Assert.InRange(len, 0, c.DeclaredMaximum));
            if (c.Fault == KvCacheFault.PageOutsidePool) Assert.True(c.CacheLens[^1] + c.SeqLenNew > 0, c.ToString());
            Assert.InRange(c.Splits ?? 1, 1, DecodeVariants.MaxSplits);
        }
    }

    [Theory]
    [InlineData(16, 64, 16)]
    [InlineData(48, 64, 16)]
    [InlineData(96, 64, 32)]
    [InlineData(256, 64, 64)]
    [InlineData(128, 128, 128)]
    [InlineData(0, 64, 64)]
    public void Tma_boxes_hold_whole_pages_that_divide_the_key_block(int pageSize, int blockN, int expected)
        => Assert.Equal(expected, FlashDecodeLauncher.BoxRows(pageSize, blockN));

    [Fact]
    public void The_decode_grid_packs_query_heads_and_splits_short_batches()
    {
        var v = DecodeVariants.For(128);
        AttentionProblem P(int batch, int sq, int keys) => (new Call
        {
            Query = T(Bf, 1, batch, sq, Hq, D), Output = T(Bf, 5, batch, sq, Hq, D), Lse = T(DataType.Float32, 6, batch, Hq, sq),
            KeyCache = T(Bf, 2, batch, keys, Hk, D), ValueCache = T(Bf, 3, batch, keys, Hk, D), SeqLens = T(DataType.Int32, 4, batch),
            NewKeys = null, NewValues = null, PageTable = null,
        }).Validate().Attention;
        // 64 sequences × 2 KV heads = 128 units: half of 2 × 132 slots, so two splits
        Assert.Equal((1, 2), FlashDecodeLauncher.Geometry(P(64, 1, 4096), v, 132, VariantPolicy.Default));
        // 40 queries × 4 query heads per KV head = 160 packed rows: three m-blocks; 768 units fill the GPU unsplit
        Assert.Equal((3, 1), FlashDecodeLauncher.Geometry(P(128, 40, 4096), v, 132, VariantPolicy.Default));
        var (mBlocks, splits) = FlashDecodeLauncher.Geometry(P(1, 1, 4096), v, 132, VariantPolicy.Default);
        Assert.Equal(1, mBlocks);   // 4 query heads per KV head, one row each: one 64-row tile
        Assert.Equal(DecodeVariants.Splits(Hk, 4096 / v.BlockN, 264), splits);
        Assert.True(splits > 1);
    }

    [Fact]
    public void A_recorded_violation_names_the_entry_and_what_was_expected()
    {
        var kv = new Call().Validate();
        var length = FlashDecodeLauncher.DescribeViolation(kv, 1, 2, 0, 9000);
        Assert.Equal("cacheSeqLens", length.ParamName);
        Assert.Equal("cacheSeqLens[2] = 9000: expected 0 … 143 (maxCacheSeqLen; the cache holds 144 tokens per sequence and 1 are appended); nothing was written", length.Message);
        var page = FlashDecodeLauncher.DescribeViolation(kv, 2, 1, 7, 40);
        Assert.Equal("pageTable", page.ParamName);
        Assert.Equal("pageTable[1, 7] = 40: expected a page of keyCache, 0 … 39; nothing was written", page.Message);
    }
}
