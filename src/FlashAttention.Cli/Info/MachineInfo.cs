using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace FlashAttention.Cli.Info;

/// <summary>Facts about this machine and process that need no measurement.</summary>
public static class MachineInfo
{
    public static string OperatingSystem => RuntimeInformation.OSDescription;

    public static string DotNet => RuntimeInformation.FrameworkDescription + (RuntimeFeature.IsDynamicCodeSupported ? " (JIT)" : " (Native AOT)");

    public static string Architecture => RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();

    public static int LogicalCores => Environment.ProcessorCount;

    /// <summary>The CPU model from /proc/cpuinfo ("model name"), or a generic description where that file is absent.</summary>
    public static string CpuModel => CpuInfoField("model name") ?? CpuInfoField("Model") ?? $"unknown {Architecture} CPU";

    /// <summary>SIMD instruction sets this process can use (what the JIT or the AOT compiler targets), most relevant first.</summary>
    public static IReadOnlyList<string> DotNetIsa()
    {
        var isa = new List<string>();
        void Add(bool supported, string name) { if (supported) isa.Add(name); }
        Add(Sse42.IsSupported, "Sse42");
        Add(Avx.IsSupported, "Avx");
        Add(Avx2.IsSupported, "Avx2");
        Add(Fma.IsSupported, "Fma");
        Add(Avx512F.IsSupported, "Avx512F");
        Add(Avx512BW.IsSupported, "Avx512BW");
        Add(Avx512DQ.IsSupported, "Avx512DQ");
        Add(Avx512Vbmi.IsSupported, "Avx512Vbmi");
        Add(AvxVnni.IsSupported, "AvxVnni");
        Add(Avx10v1.IsSupported, "Avx10v1");
        Add(System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported, "AdvSimd");
        return isa;
    }

    /// <summary>Which vector widths are hardware-accelerated, and Vector&lt;float&gt;'s lane count.</summary>
    public static string VectorWidths =>
        $"Vector512 {(Vector512.IsHardwareAccelerated ? "yes" : "no")}, Vector256 {(Vector256.IsHardwareAccelerated ? "yes" : "no")}, " +
        $"Vector128 {(Vector128.IsHardwareAccelerated ? "yes" : "no")}, Vector<float> = {Vector<float>.Count} lanes";

    /// <summary>The vector and matrix features the hardware reports in /proc/cpuinfo (whether or not .NET uses them).</summary>
    public static IReadOnlyList<string> HardwareFlags()
    {
        string? flags = CpuInfoField("flags") ?? CpuInfoField("Features");
        if (flags is null) return [];
        string[] interesting = ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2"];
        var present = flags.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        return interesting.Where(present.Contains).ToArray();
    }

    private static string? CpuInfoField(string name)
    {
        try
        {
            if (!File.Exists("/proc/cpuinfo")) return null;
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
            {
                int colon = line.IndexOf(':');
                if (colon > 0 && line[..colon].Trim() == name) return line[(colon + 1)..].Trim();
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }
}
