using FlashAttention.Cuda.Compiler;

namespace FlashAttention.Cuda;

/// <summary>One GPU as <see cref="CudaEnvironment.Probe"/> saw it.</summary>
/// <param name="Ordinal">Driver ordinal.</param>
/// <param name="Name">Device name.</param>
/// <param name="ComputeCapability">Compute capability.</param>
/// <param name="MultiprocessorCount">SM count.</param>
/// <param name="TotalMemoryBytes">Device memory.</param>
/// <param name="L2CacheBytes">L2 size.</param>
/// <param name="MaxSharedMemoryPerBlockOptIn">Opt-in shared memory per block.</param>
/// <param name="ClockRateKHz">SM clock, when reported.</param>
/// <param name="MemoryClockRateKHz">Memory clock, when reported.</param>
/// <param name="IsSupported">True for compute capability 9.0.</param>
/// <param name="Problem">Why the kernels cannot run on it, or null.</param>
public sealed record CudaDeviceReport(int Ordinal, string Name, ComputeCapability ComputeCapability, int MultiprocessorCount,
    long TotalMemoryBytes, int L2CacheBytes, int MaxSharedMemoryPerBlockOptIn, int? ClockRateKHz, int? MemoryClockRateKHz,
    bool IsSupported, string? Problem);

/// <summary>What this machine offers the GPU backend, for <c>flashattn info</c> and for tests that decide whether to run.</summary>
public sealed record CudaEnvironmentReport
{
    /// <summary>Whether the CUDA driver loaded and initialised.</summary>
    public required bool DriverFound { get; init; }
    /// <summary>The driver library file, when loaded.</summary>
    public string? DriverPath { get; init; }
    /// <summary>The CUDA version the driver supports, e.g. "13.0".</summary>
    public string? DriverVersion { get; init; }
    /// <summary>Why the driver is unusable, or null.</summary>
    public string? DriverProblem { get; init; }

    /// <summary>Whether a usable NVRTC (12.0+) was found.</summary>
    public required bool NvrtcFound { get; init; }
    /// <summary>The NVRTC library file, when loaded.</summary>
    public string? NvrtcPath { get; init; }
    /// <summary>How it was found ("system loader", "FLASHATTN_NVRTC", "/usr/local/cuda", …).</summary>
    public string? NvrtcOrigin { get; init; }
    /// <summary>NVRTC version, e.g. "13.0".</summary>
    public string? NvrtcVersion { get; init; }
    /// <summary>Architectures NVRTC can target ("sm_90", …), when it reports them.</summary>
    public IReadOnlyList<string> NvrtcArchitectures { get; init; } = [];
    /// <summary>Why NVRTC is unusable, or null.</summary>
    public string? NvrtcProblem { get; init; }

    /// <summary>Every GPU the driver sees.</summary>
    public IReadOnlyList<CudaDeviceReport> Devices { get; init; } = [];

    /// <summary>The cubin cache folder.</summary>
    public required string CacheDirectory { get; init; }
    /// <summary>Bytes in the cache folder's entries.</summary>
    public long CacheSizeBytes { get; init; }
    /// <summary>Number of cache entries.</summary>
    public int CacheEntryCount { get; init; }

    /// <summary>The first ordinal the kernels can run on, or null.</summary>
    public int? SupportedDeviceOrdinal { get; init; }

    /// <summary>True when driver, NVRTC and a Hopper GPU are all present.</summary>
    public bool IsUsable => UnavailableReason is null;

    /// <summary>What is missing, or null when the GPU backend can run.</summary>
    public CudaUnavailableReason? UnavailableReason { get; init; }

    /// <summary>The one-line explanation of <see cref="UnavailableReason"/>, or null.</summary>
    public string? UnavailableMessage { get; init; }
}

/// <summary>Looks at the machine without failing: the driver, NVRTC, the GPUs and the kernel cache.</summary>
public static class CudaEnvironment
{
    /// <summary>
    /// Loads (once per process) the driver and NVRTC, lists the GPUs and measures the cache. Never throws: every
    /// problem is reported in the result, with the same one-line messages the GPU calls would raise.
    /// </summary>
    public static CudaEnvironmentReport Probe()
    {
        var cache = KernelDiskCache.CreateDefault();
        var (cacheBytes, cacheEntries) = cache.Measure();

        var driver = CudaDriverApi.TryGetInstance(out var driverError);
        var nvrtc = NvrtcApi.TryGetInstance(out var nvrtcError);

        var devices = new List<CudaDeviceReport>();
        CudaUnavailableException? deviceError = null;
        if (driver is not null)
        {
            try
            {
                foreach (var d in CudaDevice.All)
                {
                    string? problem = d.IsHopper ? null : CudaDevice.UnsupportedMessage(d.Name, d.ComputeCapability);
                    devices.Add(new CudaDeviceReport(d.Ordinal, d.Name, d.ComputeCapability, d.MultiprocessorCount, d.TotalMemoryBytes,
                        d.L2CacheBytes, d.MaxSharedMemoryPerBlockOptIn, d.ClockRateKHz, d.MemoryClockRateKHz, d.IsHopper, problem));
                }
                if (devices.Count == 0)
                    deviceError = new CudaUnavailableException(CudaUnavailableReason.NoDevice,
                        $"no CUDA device found: the NVIDIA driver (CUDA {driver.VersionText}) is installed but sees no GPU; check nvidia-smi and CUDA_VISIBLE_DEVICES");
                else if (!devices.Any(d => d.IsSupported))
                    deviceError = new CudaUnavailableException(CudaUnavailableReason.UnsupportedDevice, devices[0].Problem!);
            }
            catch (Exception e) when (e is CudaException or CudaUnavailableException)
            {
                deviceError = e as CudaUnavailableException
                    ?? new CudaUnavailableException(CudaUnavailableReason.DriverInitFailed, "cannot list CUDA devices: " + e.Message, e);
            }
        }

        // Order of blame: without a driver nothing else matters; then the GPU; then the compiler.
        var blocking = driverError ?? deviceError ?? nvrtcError;
        return new CudaEnvironmentReport
        {
            DriverFound = driver is not null,
            DriverPath = driver?.Library.ResolvedPath,
            DriverVersion = driver?.VersionText,
            DriverProblem = driverError?.Message,
            NvrtcFound = nvrtc is not null,
            NvrtcPath = nvrtc?.Library.ResolvedPath,
            NvrtcOrigin = nvrtc?.Library.Candidate.Origin,
            NvrtcVersion = nvrtc?.VersionText,
            NvrtcArchitectures = nvrtc?.SupportedArchs?.Select(a => "sm_" + a).ToArray() ?? [],
            NvrtcProblem = nvrtcError?.Message,
            Devices = devices,
            CacheDirectory = cache.Directory,
            CacheSizeBytes = cacheBytes,
            CacheEntryCount = cacheEntries,
            SupportedDeviceOrdinal = devices.FirstOrDefault(d => d.IsSupported)?.Ordinal,
            UnavailableReason = blocking?.Reason,
            UnavailableMessage = blocking?.Message,
        };
    }
}
