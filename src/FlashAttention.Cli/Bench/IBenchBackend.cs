namespace FlashAttention.Cli.Bench;

/// <summary>
/// Something <c>flashattn bench</c> can time: our CPU engine, our CUDA kernels. Backends are listed in
/// <see cref="BenchBackends.All"/>; the first available one is the default device.
/// </summary>
/// <remarks>
/// To add the CUDA backend: implement this interface in <c>src/FlashAttention.Cli/Bench/CudaBenchBackend.cs</c>
/// (<see cref="Device"/> = "cuda"; time with CUDA events after warm-up; rotate inputs larger than L2; fill
/// <see cref="BenchDeviceInfo"/> with the GPU name, SM count, clocks, driver and NVRTC versions), and put an instance
/// first in <see cref="BenchBackends.All"/>. If it holds native resources, implement <see cref="IDisposable"/>: the
/// command disposes backends it used.
/// </remarks>
public interface IBenchBackend
{
    /// <summary>The <c>--device</c> value: "cpu", "cuda".</summary>
    string Device { get; }

    /// <summary>The implementation name recorded in JSON rows ("flashattn" for ours).</summary>
    string Implementation { get; }

    /// <summary>Element type when <c>--dtype</c> is not given.</summary>
    DataType DefaultType { get; }

    /// <summary>Untimed calls when <c>--warmup</c> is not given.</summary>
    int DefaultWarmup { get; }

    /// <summary>Timed calls when <c>--repeats</c> is not given.</summary>
    int DefaultRepeats { get; }

    /// <summary>True when the device can be used now; otherwise <paramref name="reason"/> says why (no GPU, driver too old, …).</summary>
    bool IsAvailable(out string reason);

    /// <summary>True when this backend can time <paramref name="benchCase"/>; otherwise <paramref name="reason"/> says why.</summary>
    bool Supports(BenchCase benchCase, out string reason);

    /// <summary>
    /// Describes the device once per <c>bench</c> run. May measure (the CPU backend measures its FMA peak unless
    /// <paramref name="knownPeakGflops"/> is given).
    /// </summary>
    BenchDeviceInfo DescribeDevice(double? knownPeakGflops);

    /// <summary>Times one case on fresh random inputs: <see cref="BenchSettings.Warmup"/> untimed calls, then <see cref="BenchSettings.Repeats"/> timed ones.</summary>
    /// <param name="progress">Optional progress lines for long cases.</param>
    BenchMeasurement Run(BenchCase benchCase, BenchSettings settings, Action<string>? progress, CancellationToken cancellationToken);
}

/// <summary>The registered bench backends, in order of preference for the default device.</summary>
public static class BenchBackends
{
    /// <summary>
    /// Extension point: the CUDA backend is added here, before the CPU one (<c>[new CudaBenchBackend(), new CpuBenchBackend()]</c>),
    /// so that <c>bench</c> without <c>--device</c> uses the GPU when one is usable and the CPU otherwise.
    /// </summary>
    public static IReadOnlyList<IBenchBackend> All { get; } =
    [
        new CudaBenchBackend(),
        new CpuBenchBackend(),
    ];
}
