using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using FlashAttention.Numerics;

namespace FlashAttention.Cpu;

/// <summary>
/// Row conversions between the caller's element type and the engine's float32 tiles, vectorised for every type
/// (the BCL converts Half; bfloat16 widening is a 16-bit shift we do here), so tiles are converted once, in bulk,
/// never element by element inside a kernel.
/// </summary>
internal static unsafe class TileConvert
{
    /// <summary>Widens <paramref name="count"/> elements to float32 and zero-fills up to <paramref name="padded"/>.</summary>
    public static void ToSingle<T>(T* source, float* destination, int count, int padded) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            Buffer.MemoryCopy(source, destination, (long)count * 4, (long)count * 4);
        else if (typeof(T) == typeof(Half))
            HalfToSingle((ushort*)source, destination, count);
        else if (typeof(T) == typeof(BFloat16))
            BFloat16ToSingle((ushort*)source, destination, count);
        else
            throw new NotSupportedException(typeof(T).Name);
        for (int i = count; i < padded; i++) destination[i] = 0;
    }

    /// <summary>Narrows <paramref name="count"/> floats to T (round to nearest even).</summary>
    public static void FromSingle<T>(float* source, T* destination, int count) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            Buffer.MemoryCopy(source, destination, (long)count * 4, (long)count * 4);
        else if (typeof(T) == typeof(Half))
            TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(source, count), new Span<Half>(destination, count));
        else if (typeof(T) == typeof(BFloat16))
        {
            ushort* d = (ushort*)destination;
            for (int i = 0; i < count; i++) d[i] = BFloat16.RoundToBits(source[i]);
        }
        else
            throw new NotSupportedException(typeof(T).Name);
    }

    /// <summary>
    /// binary16 → float32, exact, vectorised with integer operations (the BCL's span conversion costs ~2 ns an
    /// element on short rows, which made half inputs 3× slower than bfloat16). F. Giesen's method: move exponent and
    /// mantissa into place and rebias; infinities/NaN get the rest of the exponent; zeros and subnormals are
    /// renormalised by one float subtraction (of normal numbers, so no subnormal arithmetic).
    /// </summary>
    private static void HalfToSingle(ushort* source, float* destination, int count)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 32 <= count; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(source + i));
                HalfBitsToSingle(lo).Store(destination + i);
                HalfBitsToSingle(hi).Store(destination + i + 16);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 16 <= count; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(source + i));
                HalfBitsToSingle(lo).Store(destination + i);
                HalfBitsToSingle(hi).Store(destination + i + 8);
            }
        }
        for (; i < count; i++) destination[i] = (float)BitConverter.UInt16BitsToHalf(source[i]);
    }

    private const uint ShiftedExponent = 0x7C00u << 13;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> HalfBitsToSingle(Vector512<uint> h)
    {
        var o = Vector512.ShiftLeft(h & Vector512.Create(0x7FFFu), 13);
        var e = o & Vector512.Create(ShiftedExponent);
        o += Vector512.Create(112u << 23);
        o = Vector512.ConditionalSelect(Vector512.Equals(e, Vector512.Create(ShiftedExponent)), o + Vector512.Create(112u << 23), o);
        var renormalised = (o + Vector512.Create(1u << 23)).AsSingle() - Vector512.Create(113u << 23).AsSingle();
        var f = Vector512.ConditionalSelect(Vector512.Equals(e, Vector512<uint>.Zero).AsSingle(), renormalised, o.AsSingle());
        return (f.AsUInt32() | Vector512.ShiftLeft(h & Vector512.Create(0x8000u), 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HalfBitsToSingle(Vector256<uint> h)
    {
        var o = Vector256.ShiftLeft(h & Vector256.Create(0x7FFFu), 13);
        var e = o & Vector256.Create(ShiftedExponent);
        o += Vector256.Create(112u << 23);
        o = Vector256.ConditionalSelect(Vector256.Equals(e, Vector256.Create(ShiftedExponent)), o + Vector256.Create(112u << 23), o);
        var renormalised = (o + Vector256.Create(1u << 23)).AsSingle() - Vector256.Create(113u << 23).AsSingle();
        var f = Vector256.ConditionalSelect(Vector256.Equals(e, Vector256<uint>.Zero).AsSingle(), renormalised, o.AsSingle());
        return (f.AsUInt32() | Vector256.ShiftLeft(h & Vector256.Create(0x8000u), 16)).AsSingle();
    }

    /// <summary>bfloat16 → float32 is exact: the 16 bits become the top half of the float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BFloat16ToSingle(ushort* source, float* destination, int count)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 32 <= count; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(source + i));
                Vector512.ShiftLeft(lo, 16).AsSingle().Store(destination + i);
                Vector512.ShiftLeft(hi, 16).AsSingle().Store(destination + i + 16);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 16 <= count; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(source + i));
                Vector256.ShiftLeft(lo, 16).AsSingle().Store(destination + i);
                Vector256.ShiftLeft(hi, 16).AsSingle().Store(destination + i + 8);
            }
        }
        for (; i < count; i++) destination[i] = BFloat16.ToSingle(source[i]);
    }
}
