namespace FlashAttention;

/// <summary>
/// What validation needs to know of one tensor argument, whatever memory it lives in: its name (for messages),
/// element type, lengths and element strides, and the address of element 0 (host or device) for aliasing checks.
/// </summary>
internal readonly struct TensorLayout
{
    public readonly string Name;
    public readonly DataType Type;
    public readonly long[] Lengths;
    public readonly long[] Strides;
    public readonly nuint Address;

    public TensorLayout(string name, DataType type, ReadOnlySpan<long> lengths, ReadOnlySpan<long> strides, nuint address)
    {
        if (lengths.Length != strides.Length)
            throw new ArgumentException($"{name}: {lengths.Length} lengths but {strides.Length} strides; expected one stride per dimension.", name);
        Name = name;
        Type = type;
        Lengths = lengths.ToArray();
        Strides = strides.ToArray();
        Address = address;
    }

    public int Rank => Lengths.Length;

    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long l in Lengths) n *= l;
            return n;
        }
    }

    /// <summary>Byte range [start, end) spanned by the tensor; empty when it has no elements.</summary>
    public (nuint Start, nuint End) ByteExtent
    {
        get
        {
            if (ElementCount == 0) return (Address, Address);
            long last = 0;
            for (int i = 0; i < Rank; i++) last += (Lengths[i] - 1) * Strides[i];
            return (Address, Address + (nuint)((last + 1) * DataTypes.SizeOf(Type)));
        }
    }

    public string ShapeText => "(" + string.Join(", ", Lengths) + ")";
    public string StrideText => "(" + string.Join(", ", Strides) + ")";

    /// <summary>True when two different index tuples can reach the same element (outputs must not).</summary>
    public bool SelfOverlaps
    {
        get
        {
            // A tensor without elements has no two elements to collide, whatever its strides (an empty TensorSpan gets 0).
            if (ElementCount == 0) return false;
            // Sort the dimensions that matter by stride; each must step past everything the inner ones span.
            // (An insertion sort on the stack: this runs for every output of every call.)
            Span<int> dims = Rank <= 16 ? stackalloc int[Rank] : new int[Rank];
            int count = 0;
            for (int i = 0; i < Rank; i++)
            {
                if (Lengths[i] <= 1) continue;
                int at = count++;
                while (at > 0 && Strides[dims[at - 1]] > Strides[i]) { dims[at] = dims[at - 1]; at--; }
                dims[at] = i;
            }
            long span = 0;
            foreach (int i in dims[..count])
            {
                if (Strides[i] <= span) return true;
                span += (Lengths[i] - 1) * Strides[i];
            }
            return false;
        }
    }

    /// <summary>
    /// Whether some element of <paramref name="a"/> and some element of <paramref name="b"/> share a byte: the byte
    /// ranges first (disjoint ranges share nothing), then the element addresses themselves, so interleaved slices of
    /// one buffer (dQ, dK, dV as heads of one packed tensor) are told apart from real overlaps.
    /// </summary>
    public static ElementOverlap Overlap(in TensorLayout a, in TensorLayout b)
    {
        var (a0, a1) = a.ByteExtent;
        var (b0, b1) = b.ByteExtent;
        if (a0 >= a1 || b0 >= b1 || a1 <= b0 || b1 <= a0) return ElementOverlap.None;
        // Elements at a0 + Σ i_d·sa_d·ea and b0 + Σ j_d·sb_d·eb share a byte when their difference lies in (−ea, eb):
        // each dimension is an integer unknown with a byte coefficient (equal coefficients merge), found by a search.
        int ea = DataTypes.SizeOf(a.Type), eb = DataTypes.SizeOf(b.Type);
        int n = a.Rank + b.Rank;
        Span<long> weight = n <= 16 ? stackalloc long[n] : new long[n];
        Span<long> low = n <= 16 ? stackalloc long[n] : new long[n];
        Span<long> high = n <= 16 ? stackalloc long[n] : new long[n];
        int count = 0;
        void Add(long w, long length, Span<long> weight, Span<long> low, Span<long> high, ref int count)
        {
            if (length <= 1 || w == 0) return;
            long lo = 0, hi = length - 1;
            if (w < 0) { w = -w; (lo, hi) = (-hi, -lo); }
            for (int i = 0; i < count; i++)
                if (weight[i] == w) { low[i] += lo; high[i] += hi; return; }
            weight[count] = w; low[count] = lo; high[count] = hi; count++;
        }
        for (int d = 0; d < a.Rank; d++) Add(a.Strides[d] * ea, a.Lengths[d], weight, low, high, ref count);
        for (int d = 0; d < b.Rank; d++) Add(-b.Strides[d] * eb, b.Lengths[d], weight, low, high, ref count);
        // Largest coefficients first: each then leaves only a few values for the smaller ones to make up.
        for (int i = 1; i < count; i++)
            for (int j = i; j > 0 && weight[j] > weight[j - 1]; j--)
            {
                (weight[j], weight[j - 1]) = (weight[j - 1], weight[j]);
                (low[j], low[j - 1]) = (low[j - 1], low[j]);
                (high[j], high[j - 1]) = (high[j - 1], high[j]);
            }
        long offset = (long)(a0 - b0);
        int budget = 1 << 20;
        bool found = Search(0, offset, weight[..count], low[..count], high[..count], -ea, eb, ref budget);
        return found ? ElementOverlap.Shared : budget <= 0 ? ElementOverlap.Undecided : ElementOverlap.None;
    }

    // Is there x with lo ≤ x ≤ hi per unknown such that minExclusive < sum + Σ weight·x < maxExclusive? Depth-first over
    // the unknowns, each limited to the values the remaining ones can still complete; gives up when the budget runs out.
    private static bool Search(int at, long sum, ReadOnlySpan<long> weight, ReadOnlySpan<long> low, ReadOnlySpan<long> high,
        long minExclusive, long maxExclusive, ref int budget)
    {
        if (--budget <= 0) return false;
        if (at == weight.Length) return sum > minExclusive && sum < maxExclusive;
        long restLow = 0, restHigh = 0;
        for (int i = at + 1; i < weight.Length; i++) { restLow += weight[i] * low[i]; restHigh += weight[i] * high[i]; }
        long w = weight[at];
        // weight·x must lie in (minExclusive − sum − restHigh, maxExclusive − sum − restLow).
        long from = Math.Max(low[at], FloorDiv(minExclusive - sum - restHigh, w) + 1);
        long to = Math.Min(high[at], CeilDiv(maxExclusive - sum - restLow, w) - 1);
        for (long x = from; x <= to; x++)
        {
            if (Search(at + 1, sum + w * x, weight, low, high, minExclusive, maxExclusive, ref budget)) return true;
            if (budget <= 0) return false;
        }
        return false;
    }

    private static long FloorDiv(long a, long b) => a / b - ((a % b != 0 && (a < 0) != (b < 0)) ? 1 : 0);
    private static long CeilDiv(long a, long b) => -FloorDiv(-a, b);
}

/// <summary>The verdict of <see cref="TensorLayout.Overlap"/>.</summary>
internal enum ElementOverlap
{
    /// <summary>No byte belongs to an element of both.</summary>
    None,
    /// <summary>Some element of one shares a byte with an element of the other.</summary>
    Shared,
    /// <summary>The byte ranges overlap and the search gave up before deciding (strides of no simple nesting).</summary>
    Undecided,
}
