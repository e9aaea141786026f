using System.Text.RegularExpressions;

namespace FlashAttention.Cuda.Compiler;

/// <summary>
/// NVRTC settings for one kernel specialisation. The target architecture is not here: it comes from the device
/// (<see cref="CudaDevice.HopperArchitecture"/>), so a spec never disagrees with the GPU it runs on.
/// </summary>
internal sealed record CompileOptions
{
    /// <summary>The defaults: C++20 (the kernels take their variant records as class-type template parameters), device as the default execution space, no fast math, no line info.</summary>
    public static readonly CompileOptions Default = new();

    /// <summary>C++ dialect for <c>--std</c>.</summary>
    public string LanguageStandard { get; init; } = "c++20";

    /// <summary><c>--use_fast_math</c>: approximate division, square root and transcendental functions, flush denormals.</summary>
    public bool FastMath { get; init; }

    /// <summary><c>--generate-line-info</c>: source lines in the cubin, for Nsight Compute and compute-sanitizer.</summary>
    public bool LineInfo { get; init; }

    /// <summary>
    /// <c>--device-as-default-execution-space</c> (alias <c>-default-device</c>): unannotated functions and variables are
    /// device code. NVRTC programs have no host side, so this spares every helper its <c>__device__</c>.
    /// </summary>
    public bool DeviceAsDefaultExecutionSpace { get; init; } = true;

    /// <summary><c>--ptxas-options=-v</c>: ptxas writes registers, spills and shared memory per kernel into the log (see <see cref="PtxasInfo"/>).</summary>
    public bool PtxasVerbose { get; init; }

    /// <summary><c>--maxrregcount=N</c> when set: cap registers per thread (prefer <c>__launch_bounds__</c> in the source).</summary>
    public int? MaxRegisterCount { get; init; }

    /// <summary>Preprocessor macros, each becoming <c>-DNAME</c> or <c>-DNAME=VALUE</c>, in this order.</summary>
    public IReadOnlyList<KeyValuePair<string, string?>> Defines { get; init; } = [];

    /// <summary>Further options passed to NVRTC verbatim, after all others.</summary>
    public IReadOnlyList<string> ExtraOptions { get; init; } = [];
}

/// <summary>Turns <see cref="CompileOptions"/> into NVRTC's option strings. Pure: the result is also part of the cache key.</summary>
internal static partial class NvrtcOptionBuilder
{
    /// <summary>The option list, in a fixed order: architecture, dialect, execution space, math, debug info, ptxas, registers, macros, extras.</summary>
    /// <param name="architecture">A real architecture such as <c>sm_90a</c>, so NVRTC emits a cubin (SASS), not just PTX.</param>
    /// <param name="options">The settings.</param>
    public static string[] Build(string architecture, CompileOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!ArchitecturePattern().IsMatch(architecture))
            throw new ArgumentException($"architecture must look like sm_90a (a real GPU architecture, so NVRTC produces a cubin); got \"{architecture}\"", nameof(architecture));
        if (!StandardPattern().IsMatch(options.LanguageStandard))
            throw new ArgumentException($"language standard must look like c++17; got \"{options.LanguageStandard}\"", nameof(options));

        var list = new List<string>
        {
            $"--gpu-architecture={architecture}",
            $"--std={options.LanguageStandard}",
        };
        if (options.DeviceAsDefaultExecutionSpace) list.Add("--device-as-default-execution-space");
        if (options.FastMath) list.Add("--use_fast_math");
        if (options.LineInfo) list.Add("--generate-line-info");
        if (options.PtxasVerbose) list.Add("--ptxas-options=-v");
        if (options.MaxRegisterCount is { } registers)
        {
            if (registers is < 16 or > 255) throw new ArgumentOutOfRangeException(nameof(options), registers, "MaxRegisterCount must be 16…255");
            list.Add($"--maxrregcount={registers}");
        }
        foreach (var (name, value) in options.Defines)
        {
            if (!IdentifierPattern().IsMatch(name))
                throw new ArgumentException($"macro name \"{name}\" is not a C identifier", nameof(options));
            if (value is not null && (value.Contains('\n') || value.Contains('\r')))
                throw new ArgumentException($"macro {name}'s value must be one line", nameof(options));
            list.Add(value is null ? $"-D{name}" : $"-D{name}={value}");
        }
        foreach (string extra in options.ExtraOptions)
        {
            if (string.IsNullOrWhiteSpace(extra)) throw new ArgumentException("extra options must not be blank", nameof(options));
            list.Add(extra);
        }
        return [.. list];
    }

    [GeneratedRegex(@"^sm_[0-9]{2,3}[af]?$", RegexOptions.CultureInvariant)]
    private static partial Regex ArchitecturePattern();

    [GeneratedRegex(@"^c\+\+[0-9]{2}$", RegexOptions.CultureInvariant)]
    private static partial Regex StandardPattern();

    [GeneratedRegex(@"^[A-Za-z_][A-Za-z0-9_]*$", RegexOptions.CultureInvariant)]
    private static partial Regex IdentifierPattern();
}
