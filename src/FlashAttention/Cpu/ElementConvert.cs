using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using FlashAttention.Numerics;

namespace FlashAttention.Cpu;

/// <summary>
/// Conversions between the element types the CPU accepts (float, Half, BFloat16) and float32, the type all CPU
/// arithmetic runs in. The typeof checks fold away when the JIT specialises for a value type.
/// </summary>
internal static unsafe class ElementConvert
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle<T>(T value) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return Unsafe.As<T, float>(ref value);
        if (typeof(T) == typeof(Half)) return (float)Unsafe.As<T, Half>(ref value);
        if (typeof(T) == typeof(BFloat16)) return BFloat16.ToSingle(Unsafe.As<T, BFloat16>(ref value).Bits);
        throw new NotSupportedException(typeof(T).Name);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T FromSingle<T>(float value) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return Unsafe.As<float, T>(ref value);
        if (typeof(T) == typeof(Half)) { Half h = (Half)value; return Unsafe.As<Half, T>(ref h); }
        if (typeof(T) == typeof(BFloat16)) { BFloat16 b = (BFloat16)value; return Unsafe.As<BFloat16, T>(ref b); }
        throw new NotSupportedException(typeof(T).Name);
    }

    /// <summary>Rounds a float to the precision of T and back (identity for float).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundTo<T>(float value) where T : unmanaged => ToSingle(FromSingle<T>(value));

    /// <summary>Widens <paramref name="count"/> contiguous elements to float32.</summary>
    public static void ToSingle<T>(T* source, Span<float> destination, int count) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) { new ReadOnlySpan<float>(source, count).CopyTo(destination); return; }
        if (typeof(T) == typeof(Half)) { TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(source, count), destination); return; }
        for (int i = 0; i < count; i++) destination[i] = ToSingle(source[i]);
    }

    /// <summary>Narrows <paramref name="count"/> floats to T (round to nearest even).</summary>
    public static void FromSingle<T>(ReadOnlySpan<float> source, T* destination, int count) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) { source[..count].CopyTo(new Span<float>(destination, count)); return; }
        if (typeof(T) == typeof(Half)) { TensorPrimitives.ConvertToHalf(source[..count], new Span<Half>(destination, count)); return; }
        for (int i = 0; i < count; i++) destination[i] = FromSingle<T>(source[i]);
    }
}
