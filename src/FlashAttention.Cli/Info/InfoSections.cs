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
        new GpuPlaceholderSection(), // GPU: replace with new CudaInfoSection() (the CUDA backend's IInfoSection)
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
        new("flashattn", typeof(InfoSections).Assembly.GetName().Version?.ToString() ?? "unknown"),
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

/// <summary>Stands in for the GPU section until the CUDA backend provides one: says so instead of staying silent.</summary>
public sealed class GpuPlaceholderSection : IInfoSection
{
    public string Title => "gpu";

    public IReadOnlyList<InfoItem> Collect(InfoRequest request) => [new("backend", "none in this build (the CUDA backend is not wired into flashattn yet)")];
}
