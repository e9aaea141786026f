namespace FlashAttention.Cli.Info;

/// <summary>One line of <c>flashattn info</c>: a key and its value.</summary>
public readonly record struct InfoItem(string Key, string Value);

/// <summary>
/// A block of <c>flashattn info</c>. Sections are listed in <see cref="InfoSections.All"/>; the GPU backend adds its own
/// (device name, compute capability, SM count, clocks, memory, driver and NVRTC versions) by implementing this interface
/// and adding an instance there. A section must not throw for a missing device: it reports why instead.
/// </summary>
public interface IInfoSection
{
    /// <summary>Heading, e.g. "machine", "cpu", "gpu".</summary>
    string Title { get; }

    /// <summary>Collects the section's lines. May take time (the CPU section measures the FMA peak for about a second).</summary>
    IReadOnlyList<InfoItem> Collect(InfoRequest request);
}

/// <summary>What <c>flashattn info</c> was asked for.</summary>
/// <param name="PeakDuration">How long the FMA peak measurement may run; zero skips it.</param>
public sealed record InfoRequest(TimeSpan PeakDuration);

/// <summary>
/// The sections <c>flashattn info</c> prints, in order. Extension point for the GPU: add
/// <c>new CudaInfoSection()</c> (an <see cref="IInfoSection"/>) to <see cref="All"/> — one line, here.
/// </summary>
public static class InfoSections
{
    public static IReadOnlyList<IInfoSection> All { get; } =
    [
        new MachineSection(),
        new CpuSection(),
        new CudaInfoSection(),
    ];
}

/// <summary>OS, .NET, architecture.</summary>
public sealed class MachineSection : IInfoSection
{
    public string Title => "machine";

    public IReadOnlyList<InfoItem> Collect(InfoRequest request) =>
    [
        new("os", MachineInfo.OperatingSystem),
        new(".NET", MachineInfo.DotNet),
        new("architecture", MachineInfo.Architecture),
        new("flashattn", Bench.GitCommit.Version),
        new("commit", Bench.GitCommit.Current()),
    ];
}

/// <summary>CPU model, cores, instruction sets, and the measured fp32 FMA peak.</summary>
public sealed class CpuSection : IInfoSection
{
    public string Title => "cpu";

    public IReadOnlyList<InfoItem> Collect(InfoRequest request)
    {
        var items = new List<InfoItem>
        {
            new("model", MachineInfo.CpuModel),
            new("logical cores", MachineInfo.LogicalCores.ToString()),
            new(".NET uses", string.Join(' ', MachineInfo.DotNetIsa())),
            new("vectors", MachineInfo.VectorWidths),
        };
        var flags = MachineInfo.HardwareFlags();
        if (flags.Count > 0) items.Add(new("hardware flags", string.Join(' ', flags)));
        if (request.PeakDuration > TimeSpan.Zero)
            items.Add(new("fp32 FMA peak", FmaPeak.Measure(request.PeakDuration).Describe() + " (measured)"));
        return items;
    }
}

/// <summary>
/// The GPU backend: driver and NVRTC (versions, paths), each device (name, compute capability, SMs, memory, L2, shared
/// memory, clocks) and whether the kernels can run on it, and the kernel cache folder with its size. Never throws: a
/// missing driver, NVRTC or Hopper GPU is reported with what to install or which GPU is needed.
/// </summary>
public sealed class CudaInfoSection : IInfoSection
{
    public string Title => "gpu";

    public IReadOnlyList<InfoItem> Collect(InfoRequest request)
    {
        var r = FlashAttention.Cuda.CudaEnvironment.Probe();
        var items = new List<InfoItem>
        {
            new("driver", r.DriverFound ? $"{r.DriverVersion} ({r.DriverPath})" : $"not found: {r.DriverProblem}"),
            new("nvrtc", r.NvrtcFound ? $"{r.NvrtcVersion} ({r.NvrtcPath}, {r.NvrtcOrigin})" : $"not found: {r.NvrtcProblem}"),
        };
        if (r.NvrtcArchitectures.Count > 0) items.Add(new("nvrtc targets", string.Join(' ', r.NvrtcArchitectures)));
        foreach (var d in r.Devices)
        {
            items.Add(new($"device {d.Ordinal}", $"{d.Name}, compute capability {d.ComputeCapability}, {d.MultiprocessorCount} SMs, " +
                $"{d.TotalMemoryBytes / (1L << 30)} GiB, L2 {d.L2CacheBytes / (1 << 20)} MiB, {d.MaxSharedMemoryPerBlockOptIn / 1024} KB shared/block" +
                (d.ClockRateKHz is int sm ? $", SM clock {sm / 1000} MHz" : "") + (d.MemoryClockRateKHz is int mem ? $", memory clock {mem / 1000} MHz" : "")));
            items.Add(new($"device {d.Ordinal} kernels", d.IsSupported ? "supported (sm_90a)" : d.Problem ?? "not supported"));
        }
        items.Add(new("kernel cache", $"{r.CacheDirectory} ({r.CacheEntryCount} entries, {r.CacheSizeBytes / 1024.0 / 1024.0:F1} MiB)"));
        items.Add(new("status", r.IsUsable ? "usable" : $"not usable: {r.UnavailableMessage}"));
        return items;
    }
}
