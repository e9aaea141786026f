using FlashAttention.Lab.Cpu;

namespace FlashAttention.Lab.Verification;

/// <summary>A break of the KV cache's device-resident contract that a case plants in its last sequence.</summary>
public enum KvCacheFault
{
    None,
    /// <summary>Its length one past the declared maximum.</summary>
    LengthOverMaximum,
    /// <summary>A page-table entry its keys use, past the pool.</summary>
    PageOutsidePool,
}

/// <summary>
/// One KV-cache attention problem that <c>flashattn verify --device cuda</c> runs on the GPU and on the CPU oracle.
/// Sequence b holds <c>CacheLens[b]</c> tokens before <see cref="SeqLenNew"/> are appended; the cache is contiguous
/// (<see cref="PageSize"/> 0) or paged, <see cref="Capacity"/> tokens per sequence either way (rounded up to whole pages),
/// and a paged pool has <see cref="SparePages"/> pages no sequence uses.
/// </summary>
/// <param name="Splits">Null: the heuristic's split of the key range; else this many splits.</param>
/// <param name="Checked">The call's checkDeviceInputs.</param>
public sealed record KvCacheCase(DataType Type, int[] CacheLens, int SeqLenQ, int SeqLenNew, int HeadsQ, int HeadsK, int HeadDim,
    int PageSize, int Capacity, bool Causal, int WindowLeft = -1, int WindowRight = -1, float Softcap = 0, int? Splits = null,
    int? MaxCacheSeqLen = null, KvCacheFault Fault = KvCacheFault.None, bool Checked = false, int SparePages = 3)
{
    public int Batch => CacheLens.Length;
    public int MaxPages => PageSize > 0 ? (Capacity + PageSize - 1) / PageSize : 0;

    public KvCacheShape Shape => PageSize > 0
        ? new KvCacheShape(Batch, SeqLenQ, HeadsQ, HeadsK, HeadDim, SeqLenNew, PageSize, Batch * MaxPages + SparePages, MaxPages)
        : new KvCacheShape(Batch, SeqLenQ, HeadsQ, HeadsK, HeadDim, SeqLenNew, Capacity: Capacity);

    /// <summary>The maximum the call declares (what the guards hold the lengths to).</summary>
    public int DeclaredMaximum => MaxCacheSeqLen ?? Shape.CacheCapacity - SeqLenNew;

    public AttentionOptions Options => new()
    {
        Causal = Causal,
        WindowLeft = WindowLeft,
        WindowRight = Causal ? -1 : WindowRight,
        Softcap = Softcap,
    };

    public string Mask => Causal ? (WindowLeft >= 0 ? $"causal+left{WindowLeft}" : "causal")
        : WindowLeft >= 0 || WindowRight >= 0 ? $"window({WindowLeft},{WindowRight})" : "full";

    public override string ToString()
        => $"kv {DataTypes.ShortName(Type)} lens[{string.Join(",", CacheLens)}] sq{SeqLenQ}{(SeqLenNew > 0 ? $"+{SeqLenNew}" : "")} h{HeadsQ}" +
           (HeadsK != HeadsQ ? $"/{HeadsK}" : "") + $" d{HeadDim} {(PageSize > 0 ? $"page{PageSize}" : $"contiguous{Capacity}")} {Mask}" +
           (Softcap > 0 ? $" softcap{Softcap}" : "") + (Splits is int s ? $" splits{s}" : "") + (MaxCacheSeqLen is int m ? $" max{m}" : "") +
           (Fault != KvCacheFault.None ? $" {(Checked ? "checked" : "unchecked")}-{Fault}" : "");
}

/// <summary>The KV-cache cases of <c>flashattn verify --device cuda</c>.</summary>
public static class KvCacheGrids
{
    /// <summary>
    /// Contiguous and paged caches (pages of 16, 32, 48, 64 and 256 tokens; odd page counts; pools longer than any row
    /// uses), sequences of length 0 and 1, appends of 1 to 16 tokens, seqlen_q 1 … 16, GQA, MQA and MHA, every head dim,
    /// causal, windows, softcap, forced splits that do not divide the keys, a tighter declared maximum, and each break of
    /// the device-resident contract with and without the checked mode. <paramref name="quick"/> keeps a few (for
    /// compute-sanitizer runs).
    /// </summary>
    public static IEnumerable<KvCacheCase> Cases(bool quick = false)
    {
        var bf = DataType.BFloat16;
        var fp = DataType.Float16;
        yield return new(bf, [0, 1, 300], 1, 1, 8, 2, 128, PageSize: 16, Capacity: 512, Causal: true);
        yield return new(bf, [650, 3], 4, 4, 4, 1, 64, PageSize: 0, Capacity: 700, Causal: true);
        yield return new(fp, [1000], 1, 0, 4, 4, 256, PageSize: 256, Capacity: 1024, Causal: false, Splits: 3);
        yield return new(bf, [40, 9], 1, 1, 8, 2, 128, PageSize: 16, Capacity: 64, Causal: true, Fault: KvCacheFault.LengthOverMaximum, Checked: true);
        if (quick) yield break;

        foreach (int d in new[] { 64, 128, 256 })
        {
            yield return new(bf, [0, 1, 17, 300, 1000], 1, 1, 32, 8, d, PageSize: 16, Capacity: 1024, Causal: true);
            yield return new(bf, [777, 1, 0], 1, 1, 8, 8, d, PageSize: 0, Capacity: 1024, Causal: false);
            yield return new(fp, [2500, 130], 3, 3, 16, 2, d, PageSize: 64, Capacity: 4096, Causal: true);
        }
        // odd page counts; a page-table row far longer than any sequence uses
        yield return new(bf, [5, 0, 1, 300], 1, 1, 32, 8, 128, PageSize: 16, Capacity: 2048, Causal: true, SparePages: 40);
        // pages the key block does not divide (48: boxes of 16 tokens); seqlen_q 16 with as many appended
        yield return new(bf, [100, 250], 16, 16, 16, 4, 128, PageSize: 48, Capacity: 480, Causal: true);
        // group 16: 5 queries make 80 packed rows, two m-blocks
        yield return new(bf, [333, 64], 5, 5, 32, 2, 128, PageSize: 32, Capacity: 512, Causal: true);
        // MQA, 16 queries: 256 packed rows
        yield return new(bf, [900], 16, 16, 16, 1, 128, PageSize: 64, Capacity: 1024, Causal: true);
        // seqlen_q 1 … 16 against a contiguous cache, each appending its queries
        foreach (int sq in new[] { 1, 2, 3, 8, 16 })
            yield return new(bf, [500, 77], sq, sq, 8, 2, 128, PageSize: 0, Capacity: 600, Causal: true);
        // splits that do not divide the keys, and the unsplit path on a long sequence
        yield return new(bf, [1000, 4000], 1, 1, 8, 2, 128, PageSize: 256, Capacity: 4352, Causal: true, Splits: 7);
        yield return new(bf, [999, 1000], 2, 2, 8, 2, 128, PageSize: 16, Capacity: 1024, Causal: true, Splits: 5);
        yield return new(bf, [8000], 1, 1, 32, 8, 128, PageSize: 16, Capacity: 8192, Causal: true, Splits: 1);
        yield return new(bf, [30, 3], 1, 1, 8, 2, 128, PageSize: 16, Capacity: 64, Causal: true, Splits: 9);  // more splits than blocks
        // two row blocks, each split three ways, appending: the CTAs of a KV head share the appends and merge per row block
        yield return new(bf, [700, 1200], 4, 4, 64, 2, 128, PageSize: 0, Capacity: 1300, Causal: true, Splits: 3);
        // windows and softcap
        yield return new(bf, [900, 30], 4, 4, 16, 4, 128, PageSize: 16, Capacity: 1024, Causal: true, WindowLeft: 100);
        yield return new(bf, [600, 40], 4, 2, 8, 2, 128, PageSize: 32, Capacity: 1024, Causal: false, WindowLeft: 50, WindowRight: 1);
        yield return new(fp, [700, 1], 2, 1, 8, 4, 128, PageSize: 16, Capacity: 1024, Causal: true, Softcap: 30f);
        // a window so narrow that no query sees most of the appended tokens: they are written all the same
        yield return new(bf, [300, 50], 2, 8, 8, 2, 128, PageSize: 16, Capacity: 512, Causal: true, WindowLeft: 0, Splits: 2);
        // no append, and a declared maximum tighter than the cache
        yield return new(bf, [4000, 2], 1, 0, 32, 8, 128, PageSize: 16, Capacity: 8192, Causal: false, MaxCacheSeqLen: 4096);
        // the contract broken: refused before anything is written (checked), or the sequence skipped and the access kept
        // inside the tensors (unchecked)
        yield return new(bf, [40, 9, 100], 1, 1, 8, 2, 128, PageSize: 16, Capacity: 256, Causal: true, Fault: KvCacheFault.PageOutsidePool, Checked: true);
        yield return new(bf, [40, 9, 100], 1, 1, 8, 2, 128, PageSize: 16, Capacity: 256, Causal: true, Fault: KvCacheFault.LengthOverMaximum);
        yield return new(bf, [40, 9, 100], 1, 1, 8, 2, 128, PageSize: 16, Capacity: 256, Causal: true, Fault: KvCacheFault.PageOutsidePool);
        yield return new(bf, [40, 9, 100], 2, 1, 8, 2, 128, PageSize: 0, Capacity: 256, Causal: true, Fault: KvCacheFault.LengthOverMaximum, Splits: 3);
    }
}
