using FlashAttention.Cli.Terminal;
using FlashAttention.Cuda;
using FlashAttention.Lab.Verification;

namespace FlashAttention.Cli.Verify;

/// <summary><c>flashattn verify --context-parallel[-sim] N</c>: the context-parallel cases, a line per output checked.</summary>
internal static class ContextParallelChecks
{
    public static int Run(CliContext context, int ranks, bool simulated, bool quick, int seed, string? filter)
    {
        if (ranks < 1) throw new CliException($"--context-parallel{(simulated ? "-sim" : "")}: expected at least 1 rank; got {ranks}");
        if (!simulated && CudaDevice.Count < ranks)
            throw new CliException($"--context-parallel {ranks}: this machine has {CudaDevice.Count} GPU(s); use --context-parallel-sim {ranks} on one", ExitCodes.DeviceUnavailable);
        context.Out.WriteLine($"verify context parallelism, {ranks} {(simulated ? "virtual ranks on GPU 0" : "GPUs over NCCL")}, seed {seed}");
        int failed = 0, passed = 0, i = 0;
        foreach (var c in ContextParallelVerifier.Grid(ranks, quick))
        {
            if (filter is not null && !c.ToString().Contains(filter, StringComparison.OrdinalIgnoreCase)) continue;
            try
            {
                var (ok, lines) = ContextParallelVerifier.Run(c, simulated, seed + i++);
                foreach (string line in lines) context.Out.WriteLine(line);
                if (ok) passed++; else failed++;
            }
            catch (Exception e) when (e is CudaException or CudaUnavailableException or AttentionArgumentException)
            {
                context.Out.WriteLine($"{c}: FAIL {CliContext.OneLine(e.Message)}");
                failed++;
            }
        }
        context.Out.WriteLine($"{passed} passed, {failed} failed");
        return failed == 0 ? ExitCodes.Ok : ExitCodes.CheckFailed;
    }
}
