using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using FlashAttention.Cpu;

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
/// number of rounds counts. This is the yardstick for "% of peak" in <c>flashattn bench</c> and is shown by <c>flashattn info</c>.
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
        // The widths and the multiply-add the CPU engine picks (CpuFlashAttention: Vector512, else Vector256, else 128).
        int bits = Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 128;
        bool fma = bits == 512 || Fma.IsSupported || (bits == 128 && AdvSimd.IsSupported);
        double total = (duration ?? TimeSpan.FromSeconds(1)).TotalSeconds;

        // Calibrate on one thread (also warms the code), then size each round to a share of the time.
        long iterations = 1 << 14;
        double elapsed;
        while (true)
        {
            var sw = Stopwatch.StartNew();
            Sink = Kernel(bits, iterations);
            elapsed = sw.Elapsed.TotalSeconds;
            if (elapsed > 0.01 || iterations > 1L << 40) break;
            iterations *= 4;
        }
        // Rounds of about 0.1 s, the best counts: another process on these cores only ever slows a round down, so the
        // best round is the closest to the peak (a ceiling, as long as one round ran alone).
        int rounds = (int)Math.Clamp(total * 0.9 / 0.1, 3, 16);
        double perRound = Math.Max(0.03, total * 0.9 / rounds);
        iterations = Math.Max(1, (long)(iterations * perRound / elapsed));

        double best = 0, bestSeconds = 0;
        for (int round = 0; round < rounds; round++)
        {
            double seconds = RunAll(n, bits, iterations);
            double flops = (double)iterations * Accumulators * (bits / 32) * 2 * n;
            if (flops / seconds > best) { best = flops / seconds; bestSeconds = seconds; }
        }
        return new FmaPeakResult(best / 1e9, n, bits, fma, bestSeconds);
    }

    /// <summary>Keeps the kernels' results alive.</summary>
    internal static volatile float Sink;

    private static double RunAll(int threads, int bits, long iterations)
    {
        using var start = new Barrier(threads + 1);
        var done = new CountdownEvent(threads);
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            workers[t] = new Thread(() =>
            {
                start.SignalAndWait();
                Sink = Kernel(bits, iterations);
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

    private static float Kernel(int bits, long iterations) => bits switch
    {
        512 => Kernel<Simd512>(iterations),
        256 => Kernel<Simd256>(iterations),
        _ => Kernel<Simd128>(iterations),
    };

    // 12 accumulators, each a <- a*m + c with m just below 1: values stay normal and bounded. The multiply-add is the
    // CPU engine's own (ISimd.Fma: fused where the hardware has FMA), so the yardstick measures what the engine issues.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Kernel<TV>(long iterations) where TV : unmanaged, ISimd<TV>
    {
        TV m = TV.Broadcast(0.99999994f), c = TV.Broadcast(1e-7f);
        TV a0 = TV.Broadcast(1.0f), a1 = TV.Broadcast(1.1f), a2 = TV.Broadcast(1.2f), a3 = TV.Broadcast(1.3f),
            a4 = TV.Broadcast(1.4f), a5 = TV.Broadcast(1.5f), a6 = TV.Broadcast(1.6f), a7 = TV.Broadcast(1.7f),
            a8 = TV.Broadcast(1.8f), a9 = TV.Broadcast(1.9f), a10 = TV.Broadcast(2.0f), a11 = TV.Broadcast(2.1f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = TV.Fma(a0, m, c); a1 = TV.Fma(a1, m, c); a2 = TV.Fma(a2, m, c); a3 = TV.Fma(a3, m, c);
            a4 = TV.Fma(a4, m, c); a5 = TV.Fma(a5, m, c); a6 = TV.Fma(a6, m, c); a7 = TV.Fma(a7, m, c);
            a8 = TV.Fma(a8, m, c); a9 = TV.Fma(a9, m, c); a10 = TV.Fma(a10, m, c); a11 = TV.Fma(a11, m, c);
        }
        TV sum = TV.Add(TV.Add(TV.Add(a0, a1), TV.Add(a2, a3)), TV.Add(TV.Add(a4, a5), TV.Add(a6, a7)));
        return TV.Sum(TV.Add(sum, TV.Add(TV.Add(a8, a9), TV.Add(a10, a11))));
    }
}
