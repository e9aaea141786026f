using FlashAttention.Cuda;

namespace FlashAttention.Tests.Cuda;

/// <summary>
/// Why GPU tests cannot run on this machine (null when they can): the CUDA driver, NVRTC and a compute capability 9.0
/// GPU must all be present. Probed once per test run.
/// </summary>
public static class GpuAvailability
{
    private static readonly Lazy<CudaEnvironmentReport> LazyReport = new(CudaEnvironment.Probe);

    /// <summary>The probe's report.</summary>
    public static CudaEnvironmentReport Report => LazyReport.Value;

    /// <summary>The skip reason, or null when a Hopper GPU, its driver and NVRTC are all usable.</summary>
    public static string? SkipReason => Report.IsUsable ? null : "needs an NVIDIA Hopper GPU with driver and NVRTC: " + Report.UnavailableMessage;

    /// <summary>The device GPU tests run on (the first Hopper GPU).</summary>
    public static CudaDevice Device => CudaDevice.Get(Report.SupportedDeviceOrdinal ?? 0);
}

/// <summary>
/// A fact that runs only where <see cref="GpuAvailability"/> finds a Hopper GPU, the CUDA driver and NVRTC; elsewhere
/// it is skipped with the reason (e.g. "libcuda.so.1 not found: install the NVIDIA driver …").
/// </summary>
public sealed class HopperFactAttribute : FactAttribute
{
    public HopperFactAttribute()
    {
        if (GpuAvailability.SkipReason is { } reason) Skip = reason;
    }
}

/// <summary>The theory counterpart of <see cref="HopperFactAttribute"/>.</summary>
public sealed class HopperTheoryAttribute : TheoryAttribute
{
    public HopperTheoryAttribute()
    {
        if (GpuAvailability.SkipReason is { } reason) Skip = reason;
    }
}
