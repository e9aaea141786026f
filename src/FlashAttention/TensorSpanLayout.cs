using System.Numerics.Tensors;

namespace FlashAttention;

/// <summary>Turns .NET's strided views into <see cref="TensorLayout"/>s for validation, at a pinned address.</summary>
internal static class TensorSpanLayout
{
    public static unsafe TensorLayout Of<T>(string name, in ReadOnlyTensorSpan<T> span, void* address)
    {
        var type = ElementType<T>(name);
        Span<long> lengths = stackalloc long[span.Rank], strides = stackalloc long[span.Rank];
        for (int i = 0; i < span.Rank; i++)
        {
            lengths[i] = span.Lengths[i];
            strides[i] = span.Strides[i];
        }
        return new TensorLayout(name, type, lengths, strides, (nuint)address);
    }

    public static unsafe TensorLayout Of<T>(string name, in TensorSpan<T> span, void* address)
        => Of(name, (ReadOnlyTensorSpan<T>)span, address);

    public static DataType ElementType<T>(string name) => DataTypes.Of<T>() is DataType t and (DataType.Float32 or DataType.Float16 or DataType.BFloat16)
        ? t
        : throw new AttentionArgumentException(name, $"{name}: element type {typeof(T).Name} is not supported here; expected float, Half or BFloat16");
}
