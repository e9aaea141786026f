namespace FlashAttention;

/// <summary>
/// Which keys a query row sees, FlashAttention's convention: query <c>i</c> of <c>Sq</c> sits at key position
/// <c>i + Sk − Sq</c>; it sees keys <c>j</c> with <c>i + Sk − Sq − left ≤ j ≤ i + Sk − Sq + right</c>
/// (a bound of −1 is unbounded), clipped to <c>[0, Sk)</c>. Causal is right = 0.
/// Every engine, CPU and GPU, follows this one definition.
/// </summary>
public readonly record struct AttentionMask(int SeqLenQ, int SeqLenK, int WindowLeft, int WindowRight)
{
    /// <summary>First visible key of query row i (may exceed <see cref="LastKey"/> when none is visible).</summary>
    public int FirstKey(int i)
    {
        if (WindowLeft < 0) return 0;
        long first = (long)i + SeqLenK - SeqLenQ - WindowLeft;
        return (int)Math.Clamp(first, 0, SeqLenK);
    }

    /// <summary>Last visible key of query row i (−1 when none is visible).</summary>
    public int LastKey(int i)
    {
        if (WindowRight < 0) return SeqLenK - 1;
        long last = (long)i + SeqLenK - SeqLenQ + WindowRight;
        return (int)Math.Clamp(last, -1, SeqLenK - 1);
    }

    /// <summary>True when query i sees key j.</summary>
    public bool IsVisible(int i, int j) => j >= FirstKey(i) && j <= LastKey(i);

    /// <summary>Number of visible keys of query row i.</summary>
    public int VisibleCount(int i) => Math.Max(0, LastKey(i) - FirstKey(i) + 1);

    /// <summary>Number of visible (query, key) pairs.</summary>
    public double VisiblePairs()
    {
        double n = 0;
        for (int i = 0; i < SeqLenQ; i++) n += VisibleCount(i);
        return n;
    }
}
