using System.Runtime.CompilerServices;
using FlashAttention.Numerics;

namespace FlashAttention.Cli.Bench;

/// <summary>Fills buffers with standard normal values (Box–Muller), in parallel chunks, reproducibly for a seed. Never zeros.</summary>
public static class RandomTensors
{
    private const int Chunk = 1 << 16;

    public static void FillNormal<T>(T[] data, int seed, float scale = 1f) where T : unmanaged
    {
        int chunks = (int)((data.LongLength + Chunk - 1) / Chunk);
        Parallel.For(0, chunks, c =>
        {
            var random = new Random(HashCode.Combine(seed, c));
            int start = c * Chunk, end = (int)Math.Min(data.LongLength, start + (long)Chunk);
            for (int i = start; i < end; i += 2)
            {
                double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
                double r = Math.Sqrt(-2.0 * Math.Log(u1)) * scale;
                data[i] = From<T>((float)(r * Math.Cos(2 * Math.PI * u2)));
                if (i + 1 < end) data[i + 1] = From<T>((float)(r * Math.Sin(2 * Math.PI * u2)));
            }
        });
    }

    public static T From<T>(float value) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return Unsafe.As<float, T>(ref value);
        if (typeof(T) == typeof(Half)) { Half h = (Half)value; return Unsafe.As<Half, T>(ref h); }
        if (typeof(T) == typeof(BFloat16)) { BFloat16 b = (BFloat16)value; return Unsafe.As<BFloat16, T>(ref b); }
        throw new NotSupportedException($"element type {typeof(T).Name}");
    }
}
