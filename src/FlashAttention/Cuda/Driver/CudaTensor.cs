namespace FlashAttention.Cuda;

/// <summary>
/// A densely packed tensor in device memory that owns its storage, for callers who have no GPU memory of their own:
/// allocate with a shape, <see cref="Upload"/> host data, pass it (it converts to a <see cref="DeviceTensor"/>),
/// <see cref="Download"/> the result, dispose.
/// </summary>
/// <typeparam name="T">Element type: <see cref="float"/>, <see cref="Half"/>, <see cref="Numerics.BFloat16"/>, or a
/// one-byte type such as <see cref="byte"/> for FP8 data with an explicit <see cref="DataType"/>.</typeparam>
public sealed unsafe class CudaTensor<T> : IDisposable where T : unmanaged
{
    private readonly long[] _lengths;
    private readonly long[] _strides;

    /// <summary>Allocates an uninitialised tensor on device 0.</summary>
    public CudaTensor(params ReadOnlySpan<long> lengths) : this(null, null, lengths)
    {
    }

    /// <summary>Allocates an uninitialised tensor.</summary>
    /// <param name="device">Device (device 0 when null).</param>
    /// <param name="type">Element type; null to infer it from <typeparamref name="T"/>. Needed for FP8 (<c>T</c> = <see cref="byte"/>).</param>
    /// <param name="lengths">Lengths, outermost first.</param>
    public CudaTensor(CudaDevice? device, DataType? type, params ReadOnlySpan<long> lengths)
    {
        Type = type ?? DataTypes.Of<T>()
            ?? throw new ArgumentException($"element type {typeof(T).Name} has no DataType; pass one explicitly", nameof(type));
        if (DataTypes.SizeOf(Type) != sizeof(T))
            throw new ArgumentException($"{Type} elements are {DataTypes.SizeOf(Type)} bytes but {typeof(T).Name} is {sizeof(T)}", nameof(type));
        long count = 1;
        foreach (long l in lengths)
        {
            if (l < 0) throw new ArgumentOutOfRangeException(nameof(lengths), $"lengths must be non-negative; got ({string.Join(", ", lengths.ToArray())})");
            count = checked(count * l);
        }
        _lengths = lengths.ToArray();
        _strides = DeviceTensor.ContiguousStrides(lengths);
        ElementCount = count;
        Buffer = new DeviceBuffer(checked(count * sizeof(T)), device);
    }

    /// <summary>Allocates a tensor and uploads <paramref name="data"/> (exactly the shape's element count).</summary>
    public static CudaTensor<T> FromHost(ReadOnlySpan<T> data, ReadOnlySpan<long> lengths, CudaDevice? device = null, DataType? type = null)
    {
        var tensor = new CudaTensor<T>(device, type, lengths);
        try
        {
            tensor.Upload(data);
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>The storage.</summary>
    public DeviceBuffer Buffer { get; }

    /// <summary>The device it lives on.</summary>
    public CudaDevice Device => Buffer.Device;

    /// <summary>Element type.</summary>
    public DataType Type { get; }

    /// <summary>Lengths, outermost first.</summary>
    public ReadOnlySpan<long> Lengths => _lengths;

    /// <summary>Row-major element strides.</summary>
    public ReadOnlySpan<long> Strides => _strides;

    /// <summary>Number of elements.</summary>
    public long ElementCount { get; }

    /// <summary>Device address of element 0.</summary>
    public nint Pointer => Buffer.Pointer;

    /// <summary>Copies all elements from the host; <paramref name="source"/> must hold exactly <see cref="ElementCount"/>.</summary>
    public void Upload(ReadOnlySpan<T> source, CudaStream? stream = null)
    {
        if (source.Length != ElementCount)
            throw new ArgumentException($"expected {ElementCount} elements (shape ({string.Join(", ", _lengths)})); got {source.Length}", nameof(source));
        Buffer.CopyFrom(source, 0, stream);
    }

    /// <summary>Copies all elements to the host; <paramref name="destination"/> must hold exactly <see cref="ElementCount"/>.</summary>
    public void Download(Span<T> destination, CudaStream? stream = null)
    {
        if (destination.Length != ElementCount)
            throw new ArgumentException($"expected room for {ElementCount} elements (shape ({string.Join(", ", _lengths)})); got {destination.Length}", nameof(destination));
        Buffer.CopyTo(destination, 0, stream);
    }

    /// <summary>The elements, copied to a new array.</summary>
    public T[] ToArray()
    {
        var result = new T[ElementCount];
        Download(result);
        return result;
    }

    /// <summary>A non-owning view of this tensor for the GPU API.</summary>
    public DeviceTensor AsDeviceTensor() => new(Pointer, Type, _lengths, _strides);

    /// <summary>A non-owning view of this tensor for the GPU API.</summary>
    public static implicit operator DeviceTensor(CudaTensor<T> tensor) => tensor.AsDeviceTensor();

    /// <summary>Frees the device memory.</summary>
    public void Dispose() => Buffer.Dispose();
}
