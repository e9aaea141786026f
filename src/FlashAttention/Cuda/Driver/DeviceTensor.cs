namespace FlashAttention.Cuda;

/// <summary>
/// A non-owning view of a tensor in device memory: a device pointer, an element type, lengths and element strides.
/// The GPU API takes these so memory owned by TorchSharp, ONNX Runtime or raw CUDA code passes without copies; the
/// caller keeps the memory alive and unchanged while the call runs. Nothing is checked here beyond one stride per
/// length: the library's shared validation checks shapes, strides and overlaps before any kernel runs.
/// </summary>
public readonly struct DeviceTensor
{
    private readonly long[]? _lengths;
    private readonly long[]? _strides;

    /// <summary>A view with explicit element strides (FlashAttention's convention: the last dimension is contiguous).</summary>
    /// <param name="pointer">Device address of element 0 (e.g. TorchSharp's <c>data_ptr</c>).</param>
    /// <param name="type">Element type.</param>
    /// <param name="lengths">Length of each dimension, outermost first.</param>
    /// <param name="strides">Stride of each dimension in elements (not bytes).</param>
    public DeviceTensor(nint pointer, DataType type, ReadOnlySpan<long> lengths, ReadOnlySpan<long> strides)
    {
        if (lengths.Length != strides.Length)
            throw new ArgumentException($"{lengths.Length} lengths but {strides.Length} strides; expected one stride per dimension", nameof(strides));
        Pointer = pointer;
        Type = type;
        _lengths = lengths.ToArray();
        _strides = strides.ToArray();
    }

    /// <summary>A densely packed, row-major view (the last dimension varies fastest).</summary>
    public static DeviceTensor Contiguous(nint pointer, DataType type, params ReadOnlySpan<long> lengths)
        => new(pointer, type, lengths, ContiguousStrides(lengths));

    /// <summary>Device address of element 0.</summary>
    public nint Pointer { get; }

    /// <summary>Device address as CUdeviceptr.</summary>
    public ulong Address => (ulong)Pointer;

    /// <summary>Element type.</summary>
    public DataType Type { get; }

    /// <summary>Lengths, outermost first.</summary>
    public ReadOnlySpan<long> Lengths => _lengths;

    /// <summary>Element strides, one per length.</summary>
    public ReadOnlySpan<long> Strides => _strides;

    /// <summary>Number of dimensions.</summary>
    public int Rank => _lengths?.Length ?? 0;

    /// <summary>Number of elements (product of the lengths).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long l in Lengths) n *= l;
            return n;
        }
    }

    /// <summary>True when the strides are those of <see cref="Contiguous"/> (ignoring dimensions of length 1).</summary>
    public bool IsContiguous
    {
        get
        {
            long expected = 1;
            for (int i = Rank - 1; i >= 0; i--)
            {
                if (_lengths![i] != 1 && _strides![i] != expected) return false;
                expected *= _lengths![i];
            }
            return true;
        }
    }

    /// <summary>Row-major strides for <paramref name="lengths"/>.</summary>
    public static long[] ContiguousStrides(ReadOnlySpan<long> lengths)
    {
        var strides = new long[lengths.Length];
        long s = 1;
        for (int i = lengths.Length - 1; i >= 0; i--)
        {
            strides[i] = s;
            s *= Math.Max(lengths[i], 1);
        }
        return strides;
    }

    /// <summary>The description the shared validation path (<see cref="AttentionValidation"/>) takes, named for messages.</summary>
    internal TensorLayout ToLayout(string name) => new(name, Type, Lengths, Strides, (nuint)Pointer);

    /// <summary>"bf16 (2, 128, 8, 64) strides (65536, 512, 64, 1) at 0x7f…".</summary>
    public override string ToString()
        => $"{DataTypes.ShortName(Type)} ({string.Join(", ", _lengths ?? [])}) strides ({string.Join(", ", _strides ?? [])}) at 0x{Pointer:x}";
}
