using FlashAttention.Cuda;

namespace FlashAttention.Tests.Cuda;

// Facts that check what a machine lacking something is told, or that need something beyond a Hopper GPU. Each is
// skipped, with the reason, where its condition does not hold, so a run counts it as skipped instead of passing it
// without a check (xunit 2 decides skips when the attribute is built).

/// <summary>A fact for machines with no usable Hopper GPU (driver, NVRTC and GPU): it checks the message such a machine gives.</summary>
public sealed class WithoutGpuFactAttribute : FactAttribute
{
    public WithoutGpuFactAttribute()
    {
        if (GpuAvailability.SkipReason is null) Skip = "a usable Hopper GPU is present; this checks what a machine without one is told";
    }
}

/// <summary>A fact for machines where NVRTC is not found.</summary>
public sealed class WithoutNvrtcFactAttribute : FactAttribute
{
    public WithoutNvrtcFactAttribute()
    {
        if (GpuAvailability.Report.NvrtcFound) Skip = "NVRTC is present; this checks what a machine without it is told";
    }
}

/// <summary>A fact for machines where the CUDA driver (libcuda.so.1) is not found.</summary>
public sealed class WithoutDriverFactAttribute : FactAttribute
{
    public WithoutDriverFactAttribute()
    {
        if (CudaDriverApi.TryGetInstance(out _) is not null) Skip = "the CUDA driver is present; this checks what a machine without it is told";
    }
}

/// <summary>A <see cref="HopperFactAttribute"/> that also needs cuFuncGetParamInfo (driver 12.4 or newer).</summary>
public sealed unsafe class HopperWithParameterInfoFactAttribute : FactAttribute
{
    public HopperWithParameterInfoFactAttribute()
    {
        if (GpuAvailability.SkipReason is { } reason) Skip = reason;
        else if (CudaDriverApi.TryGetInstance(out _) is { } api && api.cuFuncGetParamInfo == null)
            Skip = $"needs a CUDA driver with cuFuncGetParamInfo (12.4 or newer); this one is {api.VersionText}";
    }
}

/// <summary>A fact that runs on Linux only (it loads Linux system libraries).</summary>
public sealed class LinuxFactAttribute : FactAttribute
{
    public LinuxFactAttribute()
    {
        if (!OperatingSystem.IsLinux()) Skip = "Linux only";
    }
}

/// <summary>A Unix fact that needs permission bits to bind (root ignores them).</summary>
public sealed class UnprivilegedFactAttribute : FactAttribute
{
    public UnprivilegedFactAttribute()
    {
        if (OperatingSystem.IsWindows()) Skip = "Unix permission bits";
        else if (Environment.IsPrivilegedProcess) Skip = "running as root, which ignores permission bits";
    }
}
