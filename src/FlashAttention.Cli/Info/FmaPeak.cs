using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace FlashAttention.Cli.Info;

/// <summary>The measured fp32 FMA peak of this machine.</summary>
/// <param name="GflopsPerSecond">All threads together, counting an FMA as 2 FLOPs per lane.</param>
/// <param name="Threads">Threads that ran the loop at once (one per logical core).</param>
/// <param name="VectorBits">Width of the vectors used: 512, 256 or 128.</param>
/// <param name="HardwareFma">False when the vector FMA had to be a multiply and an add.</param>
/// <param name="Seconds">Wall time of the best timed round.</param>
public sealed record FmaPeakResult(double GflopsPerSecond, int Threads, int VectorBits, bool HardwareFma, double Seconds)
{
    public string Describe() => $"{GflopsPerSecond:F1} GFLOP/s fp32 ({Threads} threads × Vector{VectorBits} {(HardwareFma ? "FMA" : "mul+add")}, {Accumulators} accumulators each)";

    /// <summary>Independent accumulators per thread, enough to cover FMA latency × FMA ports on current cores.</summary>
    public const int Accumulators = FmaPeak.Accumulators;
}

/// <summary>
/// Measures the fp32 FMA throughput of this machine: every logical core runs a loop of vector fused multiply-adds on
/// <see cref="Accumulators"/> independent accumulators (so latency never limits it), for a given time; the best of a
/// number of short rounds counts. This is the yardstick for "% of peak" in <c>flashattn bench</c> and is shown by <c>flashattn info</c>.
/// Uses the widest vector that is hardware-accelerated in this process (note: a Native AOT build only uses the
/// instruction sets it was compiled for).
/// </summary>
public static class FmaPeak
{
    public const int Accumulators = 12;

    /// <summary>Measures for about <paramref name="duration"/> in all (default one second).</summary>
    public static FmaPeakResult Measure(TimeSpan? duration = null, int? threads = null)
    {
        int n = Math.Max(1, threads ?? Environment.ProcessorCount);
        int bits = Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? 512 : Vector256.IsHardwareAccelerated ? 256 : 128;
        bool fma = bits == 512 || (bits == 256 && Fma.IsSupported);
        double total = (duration ?? TimeSpan.FromSeconds(1)).TotalSeconds;

        // Calibrate on one thread (also warms the code), then size each round to a share of the time.
        long iterations = 1 << 14;
        double elapsed;
        while (true)
        {
            var sw = Stopwatch.StartNew();
            Sink = Kernel(bits, fma, iterations);
            elapsed = sw.Elapsed.TotalSeconds;
            if (elapsed > 0.01 || iterations > 1L << 40) break;
            iterations *= 4;
        }
        // Many short rounds, the best counts: on a shared or throttling machine the best round is the closest to the peak.
        int rounds = (int)Math.Clamp(total * 0.9 / 0.06, 3, 16);
        double perRound = Math.Max(0.02, total * 0.9 / rounds);
        iterations = Math.Max(1, (long)(iterations * perRound / elapsed));

        double best = 0, bestSeconds = 0;
        for (int round = 0; round < rounds; round++)
        {
            double seconds = RunAll(n, bits, fma, iterations);
            double flops = (double)iterations * Accumulators * (bits / 32) * 2 * n;
            if (flops / seconds > best) { best = flops / seconds; bestSeconds = seconds; }
        }
        return new FmaPeakResult(best / 1e9, n, bits, fma, bestSeconds);
    }

    /// <summary>Keeps the kernels' results alive.</summary>
    internal static volatile float Sink;

    private static double RunAll(int threads, int bits, bool fma, long iterations)
    {
        using var start = new Barrier(threads + 1);
        var done = new CountdownEvent(threads);
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            workers[t] = new Thread(() =>
            {
                start.SignalAndWait();
                Sink = Kernel(bits, fma, iterations);
                done.Signal();
            }) { IsBackground = true, Priority = ThreadPriority.AboveNormal };
            workers[t].Start();
        }
        start.SignalAndWait();
        var sw = Stopwatch.StartNew();
        done.Wait();
        double seconds = sw.Elapsed.TotalSeconds;
        foreach (var w in workers) w.Join();
        done.Dispose();
        return seconds;
    }

    private static float Kernel(int bits, bool fma, long iterations) => bits switch
    {
        512 => Kernel512(iterations),
        256 => fma ? Kernel256(iterations) : Kernel256MulAdd(iterations),
        _ => Kernel128(iterations),
    };

    // 12 accumulators, each a <- a*m + c with m just below 1: values stay normal and bounded.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Kernel512(long iterations)
    {
        var m = Vector512.Create(0.99999994f);
        var c = Vector512.Create(1e-7f);
        Vector512<float> a0 = Vector512.Create(1.0f), a1 = Vector512.Create(1.1f), a2 = Vector512.Create(1.2f), a3 = Vector512.Create(1.3f),
            a4 = Vector512.Create(1.4f), a5 = Vector512.Create(1.5f), a6 = Vector512.Create(1.6f), a7 = Vector512.Create(1.7f),
            a8 = Vector512.Create(1.8f), a9 = Vector512.Create(1.9f), a10 = Vector512.Create(2.0f), a11 = Vector512.Create(2.1f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Avx512F.FusedMultiplyAdd(a0, m, c); a1 = Avx512F.FusedMultiplyAdd(a1, m, c);
            a2 = Avx512F.FusedMultiplyAdd(a2, m, c); a3 = Avx512F.FusedMultiplyAdd(a3, m, c);
            a4 = Avx512F.FusedMultiplyAdd(a4, m, c); a5 = Avx512F.FusedMultiplyAdd(a5, m, c);
            a6 = Avx512F.FusedMultiplyAdd(a6, m, c); a7 = Avx512F.FusedMultiplyAdd(a7, m, c);
            a8 = Avx512F.FusedMultiplyAdd(a8, m, c); a9 = Avx512F.FusedMultiplyAdd(a9, m, c);
            a10 = Avx512F.FusedMultiplyAdd(a10, m, c); a11 = Avx512F.FusedMultiplyAdd(a11, m, c);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Kernel256(long iterations)
    {
        var m = Vector256.Create(0.99999994f);
        var c = Vector256.Create(1e-7f);
        Vector256<float> a0 = Vector256.Create(1.0f), a1 = Vector256.Create(1.1f), a2 = Vector256.Create(1.2f), a3 = Vector256.Create(1.3f),
            a4 = Vector256.Create(1.4f), a5 = Vector256.Create(1.5f), a6 = Vector256.Create(1.6f), a7 = Vector256.Create(1.7f),
            a8 = Vector256.Create(1.8f), a9 = Vector256.Create(1.9f), a10 = Vector256.Create(2.0f), a11 = Vector256.Create(2.1f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Fma.MultiplyAdd(a0, m, c); a1 = Fma.MultiplyAdd(a1, m, c);
            a2 = Fma.MultiplyAdd(a2, m, c); a3 = Fma.MultiplyAdd(a3, m, c);
            a4 = Fma.MultiplyAdd(a4, m, c); a5 = Fma.MultiplyAdd(a5, m, c);
            a6 = Fma.MultiplyAdd(a6, m, c); a7 = Fma.MultiplyAdd(a7, m, c);
            a8 = Fma.MultiplyAdd(a8, m, c); a9 = Fma.MultiplyAdd(a9, m, c);
            a10 = Fma.MultiplyAdd(a10, m, c); a11 = Fma.MultiplyAdd(a11, m, c);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Kernel256MulAdd(long iterations)
    {
        var m = Vector256.Create(0.99999994f);
        var c = Vector256.Create(1e-7f);
        Vector256<float> a0 = Vector256.Create(1.0f), a1 = Vector256.Create(1.1f), a2 = Vector256.Create(1.2f), a3 = Vector256.Create(1.3f),
            a4 = Vector256.Create(1.4f), a5 = Vector256.Create(1.5f), a6 = Vector256.Create(1.6f), a7 = Vector256.Create(1.7f),
            a8 = Vector256.Create(1.8f), a9 = Vector256.Create(1.9f), a10 = Vector256.Create(2.0f), a11 = Vector256.Create(2.1f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c; a4 = a4 * m + c; a5 = a5 * m + c;
            a6 = a6 * m + c; a7 = a7 * m + c; a8 = a8 * m + c; a9 = a9 * m + c; a10 = a10 * m + c; a11 = a11 * m + c;
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Kernel128(long iterations)
    {
        var m = Vector128.Create(0.99999994f);
        var c = Vector128.Create(1e-7f);
        Vector128<float> a0 = Vector128.Create(1.0f), a1 = Vector128.Create(1.1f), a2 = Vector128.Create(1.2f), a3 = Vector128.Create(1.3f),
            a4 = Vector128.Create(1.4f), a5 = Vector128.Create(1.5f), a6 = Vector128.Create(1.6f), a7 = Vector128.Create(1.7f),
            a8 = Vector128.Create(1.8f), a9 = Vector128.Create(1.9f), a10 = Vector128.Create(2.0f), a11 = Vector128.Create(2.1f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c; a4 = a4 * m + c; a5 = a5 * m + c;
            a6 = a6 * m + c; a7 = a7 * m + c; a8 = a8 * m + c; a9 = a9 * m + c; a10 = a10 * m + c; a11 = a11 * m + c;
        }
        return Vector128.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }
}
