using System.Globalization;
using System.Text.RegularExpressions;

namespace FlashAttention.Cuda.Compiler;

/// <summary>
/// What ptxas reported for one kernel with <c>-v</c>: registers, spills, stack, shared memory. Parsed from NVRTC's
/// log so register pressure and spills can be checked (and printed) without cuobjdump.
/// </summary>
/// <param name="Function">The mangled kernel name.</param>
/// <param name="Registers">Registers per thread.</param>
/// <param name="SpillStoreBytes">Bytes of spill stores (0 is the goal).</param>
/// <param name="SpillLoadBytes">Bytes of spill loads.</param>
/// <param name="StackFrameBytes">Stack frame per thread.</param>
/// <param name="SharedBytes">Static shared memory per block (0 when not reported).</param>
internal sealed partial record PtxasInfo(string Function, int Registers, int SpillStoreBytes, int SpillLoadBytes, int StackFrameBytes, int SharedBytes)
{
    /// <summary>True when ptxas spilled registers to local memory.</summary>
    public bool Spills => SpillStoreBytes > 0 || SpillLoadBytes > 0;

    /// <summary>Every kernel's figures found in <paramref name="log"/>, in log order; empty when the log has none.</summary>
    public static IReadOnlyList<PtxasInfo> Parse(string? log)
    {
        var result = new List<PtxasInfo>();
        if (string.IsNullOrEmpty(log)) return result;
        string? function = null;
        int stack = 0, spillStores = 0, spillLoads = 0;
        foreach (string raw in log.Split('\n'))
        {
            string line = raw.Trim();
            var m = FunctionPattern().Match(line);
            if (m.Success)
            {
                function = m.Groups["name"].Value;
                stack = spillStores = spillLoads = 0;
                continue;
            }
            m = FramePattern().Match(line);
            if (m.Success)
            {
                stack = Int(m, "stack");
                spillStores = Int(m, "stores");
                spillLoads = Int(m, "loads");
                continue;
            }
            m = UsedPattern().Match(line);
            if (m.Success && function is not null)
            {
                var smem = SharedPattern().Match(line);
                result.Add(new PtxasInfo(function, Int(m, "regs"), spillStores, spillLoads, stack, smem.Success ? Int(smem, "smem") : 0));
                function = null;
            }
        }
        return result;
    }

    private static int Int(Match m, string group) => int.Parse(m.Groups[group].Value, CultureInfo.InvariantCulture);

    // "ptxas info    : Function properties for _Z4axpyIfEvT_PKS0_PS0_i" (also "Compiling entry function '…' for 'sm_90a'")
    [GeneratedRegex(@"ptxas info\s*:\s*(?:Function properties for|Compiling entry function)\s+'?(?<name>[^'\s]+)'?", RegexOptions.CultureInvariant)]
    private static partial Regex FunctionPattern();

    // "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads"
    [GeneratedRegex(@"(?<stack>\d+) bytes stack frame, (?<stores>\d+) bytes spill stores, (?<loads>\d+) bytes spill loads", RegexOptions.CultureInvariant)]
    private static partial Regex FramePattern();

    // "ptxas info    : Used 10 registers, used 0 barriers, 380 bytes cmem[0]"
    [GeneratedRegex(@"ptxas info\s*:\s*Used (?<regs>\d+) registers", RegexOptions.CultureInvariant)]
    private static partial Regex UsedPattern();

    [GeneratedRegex(@"(?<smem>\d+) bytes smem", RegexOptions.CultureInvariant)]
    private static partial Regex SharedPattern();
}
