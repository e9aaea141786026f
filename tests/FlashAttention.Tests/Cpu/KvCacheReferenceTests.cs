using FlashAttention.Lab.Cpu;

namespace FlashAttention.Tests.Cpu;

/// <summary>
/// The KV-cache oracle (append, gather through the page table, float64 attention) against a loop written apart from it:
/// keys read straight from the cache or the new tokens, the mask from its definition, softmax in float64.
/// </summary>
public class KvCacheReferenceTests
{
    public static TheoryData<string> Cases => new() { "paged-causal", "contiguous-window-softcap", "paged-mqa-window", "empty-sequences" };

    private sealed record Setup(KvCacheShape Shape, int[] Lens, AttentionOptions Options);

    private static Setup Make(string name) => name switch
    {
        // pages of 16, a permuted pool with spare pages; lengths 0, 1 and 37; two tokens appended; three queries
        "paged-causal" => new(new KvCacheShape(3, 3, 4, 2, 8, 2, PageSize: 16, NumPages: 14, MaxPages: 4), [0, 1, 37], new AttentionOptions { Causal = true }),
        "contiguous-window-softcap" => new(new KvCacheShape(2, 1, 2, 2, 16, 0, Capacity: 50), [5, 49], new AttentionOptions { WindowLeft = 4, WindowRight = 0, Softcap = 3f }),
        "paged-mqa-window" => new(new KvCacheShape(2, 4, 4, 1, 8, 1, PageSize: 32, NumPages: 5, MaxPages: 2), [20, 33], new AttentionOptions { WindowLeft = 7, WindowRight = 1 }),
        "empty-sequences" => new(new KvCacheShape(2, 2, 2, 2, 8, 0, Capacity: 8), [0, 0], new AttentionOptions { Causal = true }),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Oracle_matches_a_naive_loop_over_the_cache_and_the_new_tokens(string name)
    {
        var (s, lens, options) = Make(name);
        var rng = new Random(name.Length * 7919);
        float[] Random(long[] shape) => Enumerable.Range(0, (int)shape.Aggregate(1L, (a, b) => a * b)).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var q = Random(s.QueryShape);
        var kCache = Random(s.CacheShape);
        var vCache = Random(s.CacheShape);
        float[]? kNew = s.SeqLenNew > 0 ? Random(s.NewShape) : null, vNew = s.SeqLenNew > 0 ? Random(s.NewShape) : null;
        int[]? table = null;
        if (s.Paged)
        {
            var pages = Enumerable.Range(0, s.NumPages).OrderBy(_ => rng.Next()).ToArray();
            table = new int[s.Batch * s.MaxPages];
            for (int i = 0; i < table.Length; i++) table[i] = pages[i];
        }

        var (reference, plain, kAfter, vAfter) = KvCacheReference.Forward(s, q, kCache, vCache, lens, table, kNew, vNew, options);

        float scale = 1f / MathF.Sqrt(s.HeadDim);
        int group = s.HeadsQ / s.HeadsK;
        for (int b = 0; b < s.Batch; b++)
        {
            int n = lens[b] + s.SeqLenNew;
            for (int i = 0; i < s.SeqLenQ; i++)
                for (int h = 0; h < s.HeadsQ; h++)
                {
                    int hk = h / group, position = n - s.SeqLenQ + i;
                    int right = options.Causal ? 0 : options.WindowRight;
                    float[] Key(float[] cache, float[]? appended, int j) => j < lens[b]
                        ? cache.AsSpan((int)s.CacheOffset(table, b, j, hk), s.HeadDim).ToArray()
                        : appended!.AsSpan((((b * s.SeqLenNew) + j - lens[b]) * s.HeadsK + hk) * s.HeadDim, s.HeadDim).ToArray();
                    var visible = Enumerable.Range(0, n)
                        .Where(j => (options.WindowLeft < 0 || j >= position - options.WindowLeft) && (right < 0 || j <= position + right)).ToArray();
                    var scores = visible.Select(j =>
                    {
                        double dot = 0;
                        var key = Key(kCache, kNew, j);
                        for (int c = 0; c < s.HeadDim; c++) dot += (double)q[((b * s.SeqLenQ + i) * s.HeadsQ + h) * s.HeadDim + c] * key[c];
                        double score = scale * dot;
                        return options.Softcap > 0 ? options.Softcap * Math.Tanh(score / options.Softcap) : score;
                    }).ToArray();
                    double max = scores.Length > 0 ? scores.Max() : double.NegativeInfinity;
                    double sum = scores.Sum(x => Math.Exp(x - max));
                    double lse = scores.Length > 0 ? max + Math.Log(sum) : double.NegativeInfinity;
                    Assert.Equal(lse, reference.LogSumExp[(b * s.HeadsQ + h) * s.SeqLenQ + i], 10);
                    Assert.Equal((float)lse, plain.LogSumExp[(b * s.HeadsQ + h) * s.SeqLenQ + i], 4);
                    for (int c = 0; c < s.HeadDim; c++)
                    {
                        double o = 0;
                        for (int v = 0; v < visible.Length; v++) o += Math.Exp(scores[v] - lse) * Key(vCache, vNew, visible[v])[c];
                        long at = ((long)(b * s.SeqLenQ + i) * s.HeadsQ + h) * s.HeadDim + c;
                        Assert.Equal(o, reference.Output[at], 10);
                        Assert.Equal(o, plain.Output[at], 4);
                    }
                }
            // The append wrote the new tokens at positions lens[b] …, and nothing else changed.
            for (int t = 0; t < s.CacheCapacity; t++)
                for (int hk = 0; hk < s.HeadsK; hk++)
                {
                    if (s.Paged && t / s.PageSize >= s.MaxPages) continue;
                    long at = s.CacheOffset(table, b, t, hk);
                    bool appended = t >= lens[b] && t < lens[b] + s.SeqLenNew;
                    for (int c = 0; c < s.HeadDim; c++)
                    {
                        float expectedK = appended ? kNew![((b * s.SeqLenNew + t - lens[b]) * s.HeadsK + hk) * s.HeadDim + c] : kCache[at + c];
                        Assert.Equal(expectedK, kAfter[at + c]);
                        Assert.Equal(appended ? vNew![((b * s.SeqLenNew + t - lens[b]) * s.HeadsK + hk) * s.HeadDim + c] : vCache[at + c], vAfter[at + c]);
                    }
                }
        }
    }

    [Fact]
    public void Cache_offsets_follow_the_page_table()
    {
        var paged = new KvCacheShape(2, 1, 4, 2, 8, 0, PageSize: 16, NumPages: 10, MaxPages: 3);
        int[] table = [4, 0, 9, 7, 1, 2];
        // sequence 1, token 20: page-table entry 1 → pool page 1, row 4; KV head 1
        Assert.Equal(((1L * 16 + 4) * 2 + 1) * 8, paged.CacheOffset(table, 1, 20, 1));
        Assert.Equal(48, paged.CacheCapacity);
        var contiguous = new KvCacheShape(2, 1, 4, 2, 8, 0, Capacity: 30);
        Assert.Equal(((1L * 30 + 20) * 2 + 1) * 8, contiguous.CacheOffset(null, 1, 20, 1));
        Assert.Equal([2L, 30, 2, 8], contiguous.CacheShape);
        Assert.Equal([10L, 16, 2, 8], paged.CacheShape);
    }
}

/// <summary>
/// The GPU verifier's inputs (<see cref="GpuKvCacheVerifier.Prepare"/>): NaN wherever no sequence holds a token, so the
/// oracle, which reads only the tokens a sequence holds, must come out finite; the planted faults sit where they should.
/// </summary>
public class KvCacheVerifierInputTests
{
    [Fact]
    public void The_oracle_reads_no_poisoned_position_of_the_verify_cases()
    {
        foreach (var c in KvCacheGrids.Cases().Where(c => c.Capacity <= 512))
        {
            var s = c.Shape;
            var x = GpuKvCacheVerifier.Prepare<FlashAttention.Numerics.BFloat16>(c, seed: 5);
            var (reference, _, kAfter, _) = KvCacheReference.Forward(s, x.Query, x.KeyCache, x.ValueCache, x.Lens, x.PageTable, x.NewKeys, x.NewValues, c.Options);
            Assert.True(reference.Output.All(double.IsFinite), $"{c}: the oracle read a poisoned position");
            Assert.True(reference.LogSumExp.All(l => double.IsFinite(l) || double.IsNegativeInfinity(l)), c.ToString());
            // Every token a sequence holds after the append is finite; the page table names distinct pages.
            for (int b = 0; b < s.Batch; b++)
                for (int t = 0; t < x.Lens[b] + s.SeqLenNew; t++)
                    Assert.True(float.IsFinite((float)kAfter[s.CacheOffset(x.PageTable, b, t, 0)]), $"{c}: token {t} of sequence {b}");
            if (x.PageTable is { } table)
            {
                var used = table.Where(p => p >= 0).ToArray();
                Assert.Equal(used.Length, used.Distinct().Count());
                Assert.All(used, p => Assert.InRange(p, 0, s.NumPages - 1));
            }
            if (c.Fault == KvCacheFault.LengthOverMaximum) Assert.Equal(c.DeclaredMaximum + 1, x.GpuLens[^1]);
            if (c.Fault == KvCacheFault.PageOutsidePool)
            {
                Assert.True(x.GpuPageTable![x.Bad * s.MaxPages + x.BadIndex] >= s.NumPages);
                Assert.True(x.PageTable![x.Bad * s.MaxPages + x.BadIndex] >= 0, "the planted page is one the sequence uses");
            }
        }
    }
}
