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
