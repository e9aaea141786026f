namespace FlashAttention.Cli.Bench;

/// <summary>Named grids of cases.</summary>
public static class BenchGrid
{
    /// <summary>Sequence lengths of the FlashAttention-3 paper's benchmark figures.</summary>
    public static readonly int[] PaperSeqLens = [512, 1024, 2048, 4096, 8192, 16384];

    /// <summary>Head dims of the paper's figures.</summary>
    public static readonly int[] PaperHeadDims = [64, 128, 256];

    /// <summary>Tokens per batch (batch × seqlen) in the paper's figures.</summary>
    public const int PaperTokens = 16384;

    /// <summary>Hidden size (heads × head dim) in the paper's figures.</summary>
    public const int PaperHidden = 2048;

    /// <summary>(batch, cached tokens) of the decode grid: the three and cuDNN's published paged-decode anchors.</summary>
    public static readonly (int Batch, int CacheLength)[] DecodeShapes = [(1, 4096), (8, 8192), (64, 32768), (1, 8192), (1, 32768), (8, 32768)];

    /// <summary>Page sizes of the decode grid: contiguous, and the smallest and a large page.</summary>
    public static readonly int[] DecodePageSizes = [0, 16, 256];

    /// <summary>
    /// The decode grid: one query per sequence, 32 query heads over 8 KV heads (GQA 4), head dim 128, each of
    /// <see cref="DecodeShapes"/> contiguous and paged (<see cref="DecodePageSizes"/>), and with pages of 16 tokens appending
    /// one token per call. Filters narrow it (null = all).
    /// </summary>
    public static IReadOnlyList<BenchCase> Decode(DataType type, IReadOnlyCollection<int>? cacheLengths = null, IReadOnlyCollection<int>? pageSizes = null)
    {
        var cases = new List<BenchCase>();
        foreach (var (batch, length) in DecodeShapes)
        {
            if (cacheLengths is not null && !cacheLengths.Contains(length)) continue;
            foreach (int page in DecodePageSizes)
                if (pageSizes is null || pageSizes.Contains(page))
                    cases.Add(DecodeCase(type, batch, 1, 32, 8, 128, length, page, append: 0));
            if (pageSizes is null || pageSizes.Contains(16)) cases.Add(DecodeCase(type, batch, 1, 32, 8, 128, length, 16, append: 1));
        }
        return cases;
    }

    /// <summary>A decode case: <paramref name="seqLenQ"/> queries against <paramref name="cacheLength"/> cached tokens plus the appended ones, full mask.</summary>
    public static BenchCase DecodeCase(DataType type, int batch, int seqLenQ, int heads, int headsK, int headDim, int cacheLength, int pageSize, int append)
        => new(batch, seqLenQ, cacheLength + append, heads, headsK, headDim, type, Causal: false, BenchDirection.Forward, new KvCacheBench(cacheLength, pageSize, append));

    /// <summary>
    /// The FlashAttention-3 paper's grid: 16k tokens in all (batch = 16384 / seqlen), hidden 2048 (heads = 2048 / head dim),
    /// seqlen 512…16k, head dim 64/128/256, full and causal, for each direction. Filters narrow it (null = all).
    /// </summary>
    public static IReadOnlyList<BenchCase> Paper(DataType type, IReadOnlyList<BenchDirection> directions,
        IReadOnlyCollection<int>? seqLens = null, IReadOnlyCollection<int>? headDims = null, bool? causal = null)
    {
        var cases = new List<BenchCase>();
        foreach (var direction in directions)
        foreach (bool c in new[] { false, true })
        {
            if (causal is bool only && only != c) continue;
            foreach (int d in PaperHeadDims)
            {
                if (headDims is not null && !headDims.Contains(d)) continue;
                foreach (int s in PaperSeqLens)
                {
                    if (seqLens is not null && !seqLens.Contains(s)) continue;
                    int heads = PaperHidden / d;
                    cases.Add(new BenchCase(PaperTokens / s, s, s, heads, heads, d, type, c, direction));
                }
            }
        }
        return cases;
    }
}
