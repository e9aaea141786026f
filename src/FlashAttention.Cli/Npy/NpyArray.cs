using System.Runtime.InteropServices;

namespace FlashAttention.Cli.Npy;

/// <summary>
/// A C-ordered array as stored in a <c>.npy</c> file: its NumPy descr, shape and raw little-endian bytes.
/// </summary>
public sealed class NpyArray
{
    /// <summary>Wraps <paramref name="data"/>, which must hold exactly the elements of <paramref name="shape"/>.</summary>
    public NpyArray(string descr, long[] shape, byte[] data)
    {
        ElementType = NpyDescr.Parse(descr, out string? refusal) ?? throw new ArgumentException(refusal, nameof(descr));
        Descr = descr;
        Shape = shape;
        Data = data;
        long expected = ElementCount * NpyDescr.SizeOf(ElementType);
        if (data.LongLength != expected)
            throw new ArgumentException($"expected {expected} bytes for shape {ShapeText(shape)} of '{descr}'; got {data.LongLength}", nameof(data));
    }

    /// <summary>The NumPy descr, e.g. <c>&lt;f4</c>.</summary>
    public string Descr { get; }

    public NpyElementType ElementType { get; }

    /// <summary>Lengths, outermost first (C order).</summary>
    public long[] Shape { get; }

    /// <summary>The elements' bytes, little-endian, C order.</summary>
    public byte[] Data { get; }

    public int Rank => Shape.Length;

    public long ElementCount => Count(Shape);

    /// <summary>The data viewed as elements of <typeparamref name="T"/> (float, Half, BFloat16, ushort).</summary>
    public Span<T> AsSpan<T>() where T : unmanaged => MemoryMarshal.Cast<byte, T>(Data.AsSpan());

    /// <summary>A new zero-filled array of the given descr and shape.</summary>
    public static NpyArray Create(string descr, long[] shape)
    {
        var type = NpyDescr.Parse(descr, out string? refusal) ?? throw new ArgumentException(refusal, nameof(descr));
        return new NpyArray(descr, shape, new byte[checked(Count(shape) * NpyDescr.SizeOf(type))]);
    }

    /// <summary>Python's way of writing a shape: <c>(2, 3)</c>, <c>(5,)</c>, <c>()</c>.</summary>
    public static string ShapeText(IReadOnlyList<long> shape) => shape.Count == 1 ? $"({shape[0]},)" : "(" + string.Join(", ", shape) + ")";

    internal static long Count(IReadOnlyList<long> shape)
    {
        long n = 1;
        foreach (long l in shape) n = checked(n * l);
        return n;
    }
}
