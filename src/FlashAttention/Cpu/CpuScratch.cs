using System.Runtime.CompilerServices;

namespace FlashAttention.Cpu;

/// <summary>
/// Per-thread float32 scratch for the engine's tiles: one pinned (pinned-object-heap) array per thread, grown when
/// a call needs more and otherwise reused, so a tile never allocates. A body of a parallel loop takes the scratch
/// of the thread it runs on, carves it with <see cref="Carver"/>, and is done with it when it returns (bodies
/// never block or nest, so no two users share a thread's scratch at once).
/// </summary>
internal sealed unsafe class CpuScratch
{
    [ThreadStatic] private static CpuScratch? t_scratch;

    private float[] _array = [];
    private float* _aligned;
    private long _capacity;

    /// <summary>At least <paramref name="floats"/> floats, 64-byte aligned, contents undefined.</summary>
    public static float* Get(long floats)
    {
        var s = t_scratch ??= new CpuScratch();
        if (s._capacity < floats)
        {
            long n = Math.Max(floats, s._capacity * 3 / 2) + 16;
            s._array = GC.AllocateUninitializedArray<float>(checked((int)n), pinned: true);
            float* p = (float*)Unsafe.AsPointer(ref s._array[0]);
            s._aligned = (float*)(((nuint)p + 63) & ~(nuint)63);
            s._capacity = n - 16;
        }
        return s._aligned;
    }

    /// <summary>Cuts consecutive 64-byte-aligned pieces out of a scratch block; <see cref="Size"/> sums them first.</summary>
    public struct Carver(float* start)
    {
        private float* _next = start;

        /// <summary>
        /// Floats a piece of <paramref name="floats"/> occupies: rounded up to whole cache lines, plus 5 lines so that
        /// tiles whose sizes are multiples of 4 KiB do not all start at the same L1 set (4 KiB aliasing).
        /// </summary>
        public static long Size(long floats) => ((floats + 15) & ~15L) + 80;

        public float* Take(long floats)
        {
            float* p = _next;
            _next += Size(floats);
            return p;
        }

        public int* TakeInts(long count) => (int*)Take(count);
    }
}
