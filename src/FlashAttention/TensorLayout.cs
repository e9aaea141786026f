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
}
