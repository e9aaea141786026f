using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FlashAttention.Cli.Terminal;
using FlashAttention.Cuda;
using FlashAttention.Lab.Probes;
using FlashAttention.Cli.Verify;
using FlashAttention.Lab.Verification;

namespace FlashAttention.Cli.Commands;

/// <summary>
/// <c>flashattn verify</c>: checks the kernels against the CPU's float64 reference on fresh random inputs. On the GPU,
/// first the device primitives (TMA swizzle, wgmma descriptors and fragments, the decode family's pieces) one by one,
/// then every attention case of the grid, forward and backward, then the KV-cache cases; one line per checked quantity
/// with the error, the bound and PASS/FAIL. Exits 4 when anything fails.
/// </summary>
internal static class VerifyCommand
{
    public static Command Create()
    {
        var device = new Option<string?>("--device") { Description = "cuda (the GPU kernels) or cpu (the CPU engine). Default: cuda when usable, else cpu." };
        device.AcceptOnlyFromAmong("cuda", "cpu");
        var forward = new Option<bool>("--forward") { Description = "Forward cases only." };
        var backward = new Option<bool>("--backward") { Description = "Backward cases only." };
        var decode = new Option<bool>("--decode") { Description = "The decode family only: its probes, the KV-cache cases (contiguous and paged, append, splits, broken contracts) and the forward cases it takes (seqlen_q ≤ 16)." };
        var varlen = new Option<bool>("--varlen") { Description = "The variable-length cases only (packed batches with device offsets: lengths 0 and 1, sq ≠ sk, used keys, every mask, deterministic backward, broken contracts)." };
        var quick = new Option<bool>("--quick") { Description = "A few small cases (e.g. under compute-sanitizer)." };
        var noProbes = new Option<bool>("--no-probes") { Description = "Skip the primitive checks (and the per-stream state check)." };
        var seed = new Option<int?>("--seed") { Description = "Seed of the random inputs (default: fresh each run)." };
        var filter = new Option<string?>("--filter") { Description = "Only cases whose description contains this text, e.g. 'd128 causal'." };
        var contextParallel = new Option<int?>("--context-parallel") { Description = "Context parallelism over N GPUs of this machine (NCCL) against one GPU, alone." };
        var contextParallelSim = new Option<int?>("--context-parallel-sim") { Description = "Context parallelism with N virtual ranks on GPU 0 (device copies for NCCL) against one GPU, alone." };
        var command = new Command("verify", """
            Check the attention kernels against the float64 CPU reference on fresh random inputs, outputs poisoned (NaN)
            first. Rule (FlashAttention's): the largest absolute error must be at most 2x that of a plain implementation in
            the same precision, plus the element type's rounding step at 0.3. Exit code 4 when any check fails.
            """) { device, forward, backward, decode, varlen, quick, noProbes, seed, filter, contextParallel, contextParallelSim }.WithExamples(
            "flashattn verify --device cuda",
            "flashattn verify --device cuda --backward",
            "flashattn verify --device cuda --decode",
            "flashattn verify --device cuda --varlen",
            "flashattn verify --device cuda --quick --no-probes",
            "flashattn verify --device cpu --quick");
        CommandActions.Set(command, (p, context) =>
        {
            var env = CudaEnvironment.Probe();
            string chosen = p.GetValue(device) ?? (env.IsUsable ? "cuda" : "cpu");
            if (chosen == "cuda" && !env.IsUsable)
                throw new CliException($"--device cuda: not usable here: {env.UnavailableMessage}", ExitCodes.DeviceUnavailable);
            if ((p.GetValue(contextParallel) ?? p.GetValue(contextParallelSim)) is int cpRanks)
                return ContextParallelChecks.Run(context, cpRanks, simulated: p.GetValue(contextParallel) is null, p.GetValue(quick), p.GetValue(seed) ?? Random.Shared.Next(), p.GetValue(filter));
            bool onlyDecode = p.GetValue(decode);
            if (onlyDecode && (p.GetValue(forward) || p.GetValue(backward)))
                throw new CliException("--decode: the decode family's checks stand alone; leave out --forward and --backward");
            if (onlyDecode && chosen != "cuda")
                throw new CliException("--decode: the decode family's checks are GPU checks (--device cuda)");
            bool onlyVarlen = p.GetValue(varlen);
            if (onlyVarlen && (p.GetValue(forward) || p.GetValue(backward) || onlyDecode))
                throw new CliException("--varlen: the variable-length checks stand alone; leave out --forward, --backward and --decode");
            if (onlyVarlen && chosen != "cuda")
                throw new CliException("--varlen: the variable-length checks are GPU checks (--device cuda); the CPU engine's varlen path is covered by the test suite");
            bool any = p.GetValue(forward) || p.GetValue(backward) || onlyDecode || onlyVarlen;
            bool fwd = p.GetValue(forward) || !any, bwd = p.GetValue(backward) || !any, kv = chosen == "cuda" && (onlyDecode || !any);
            bool vl = chosen == "cuda" && (onlyVarlen || !any);
            int baseSeed = p.GetValue(seed) ?? Random.Shared.Next();
            string? text = p.GetValue(filter);
            bool Matches(object c) => text is null || c.ToString()!.Contains(text, StringComparison.OrdinalIgnoreCase);
            var cases = new List<VerifyCase>();
            if (onlyDecode) cases.AddRange(VerifyGrids.DecodeShaped(p.GetValue(quick)));
            if (fwd) cases.AddRange(chosen == "cuda" ? VerifyGrids.Forward(p.GetValue(quick)).Concat(VerifyGrids.Fp8(p.GetValue(quick))) : CpuVerifier.ForwardGrid(p.GetValue(quick)));
            if (bwd) cases.AddRange(chosen == "cuda" ? VerifyGrids.Backward(p.GetValue(quick)) : CpuVerifier.BackwardGrid(p.GetValue(quick)));
            var allKv = kv ? KvCacheGrids.Cases(p.GetValue(quick)).ToList() : [];
            var allVarlen = vl ? VarlenGrids.Cases(p.GetValue(quick)).ToList() : [];
            var matching = cases.Where(Matches).ToList();
            var kvCases = allKv.Where(Matches).ToList();
            var varlenCases = allVarlen.Where(Matches).ToList();
            // A filter that selects nothing is a mistyped filter, not a pass.
            int total = cases.Count + allKv.Count + allVarlen.Count;
            if (matching.Count == 0 && kvCases.Count == 0 && varlenCases.Count == 0 && total > 0)
                throw new CliException($"--filter '{text}': matches none of the {total} cases; expected text from a case's description, such as '{(cases.Count > 0 ? cases[0] : allKv.Count > 0 ? allKv[0] : allVarlen[0])}'");
            cases = matching;

            int passed = 0, failed = 0;
            var clock = Stopwatch.StartNew();
            context.Out.WriteLine($"verify on {chosen}, seed {baseSeed}");
            if (chosen == "cuda" && !p.GetValue(noProbes) && !onlyVarlen)
            {
                var gpu = CudaDevice.Get(env.SupportedDeviceOrdinal ?? 0);
                var probes = onlyDecode ? RunDecodeProbes(gpu, baseSeed)
                    : PrimitiveProbes.RunAll(gpu, baseSeed).Concat(RunDecodeProbes(gpu, baseSeed)).Concat(RunStreamChecks(gpu, baseSeed));
                foreach (var r in probes)
                {
                    Count(r.Passed, ref passed, ref failed);
                    context.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{(r.Passed ? "PASS" : "FAIL")}  probe {r.Name,-46} error {r.Error,9:G3}  tol {r.Tolerance,8:G3}  ({r.Proves})"));
                }
            }
            for (int i = 0; i < cases.Count; i++)
            {
                var c = cases[i];
                int caseSeed = baseSeed + i;
                Check(c, 6, () => (chosen == "cuda"
                        ? GpuAttentionVerifier.Run(c, CudaDevice.Get(env.SupportedDeviceOrdinal ?? 0), caseSeed)
                        : CpuVerifier.Run(c, caseSeed)).Select(CheckLine.Of),
                    e => e is CudaException);
            }
            for (int i = 0; i < kvCases.Count; i++)
            {
                var c = kvCases[i];
                int caseSeed = baseSeed + cases.Count + i;
                Check(c, 9, () => GpuKvCacheVerifier.Run(c, CudaDevice.Get(env.SupportedDeviceOrdinal ?? 0), caseSeed).Select(CheckLine.Of),
                    e => e is CudaException or AttentionArgumentException);
            }
            for (int i = 0; i < varlenCases.Count; i++)
            {
                var c = varlenCases[i];
                int caseSeed = baseSeed + cases.Count + kvCases.Count + i;
                Check(c, 7, () => GpuVarlenVerifier.Run(c, CudaDevice.Get(env.SupportedDeviceOrdinal ?? 0), caseSeed).Select(CheckLine.Of),
                    e => e is CudaException or AttentionArgumentException);
            }
            // One case's checked quantities, or a single failed "run" line when it throws what it may; each counted and printed.
            void Check(object c, int quantityWidth, Func<IEnumerable<CheckLine>> run, Func<Exception, bool> expected)
            {
                List<CheckLine> lines;
                try
                {
                    lines = run().ToList();
                }
                catch (Exception e) when (expected(e))
                {
                    lines = [new CheckLine("run", double.PositiveInfinity, 0, 0, false, CliContext.OneLine(e.Message))];
                }
                foreach (var r in lines)
                {
                    Count(r.Passed, ref passed, ref failed);
                    context.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{(r.Passed ? "PASS" : "FAIL")}  {c,-58} {r.Quantity.PadRight(quantityWidth)} error {r.Error,9:G3}  plain {r.PlainError,9:G3}  tol {r.Tolerance,9:G3}{(r.Note is null ? "" : "  " + r.Note)}"));
                }
            }

            context.Out.WriteLine($"{passed} passed, {failed} failed, {clock.Elapsed.TotalSeconds:F1} s");
            return failed == 0 ? ExitCodes.Ok : ExitCodes.CheckFailed;
        });
        return command;
    }

    private static List<ProbeResult> RunDecodeProbes(CudaDevice gpu, int seed)
    {
        try
        {
            return DecodeProbes.RunAll(gpu, seed);
        }
        catch (CudaException e)
        {
            return [new ProbeResult("decode", CliContext.OneLine(e.Message), double.PositiveInfinity, 0, false)];
        }
    }

    private static List<ProbeResult> RunStreamChecks(CudaDevice gpu, int seed)
    {
        try
        {
            return StreamChecks.RunAll(gpu, seed);
        }
        catch (CudaException e)
        {
            return [new ProbeResult("streams", CliContext.OneLine(e.Message), double.PositiveInfinity, 0, false)];
        }
    }

    /// <summary>One checked quantity of a case (forward, KV-cache or varlen), as verify prints it.</summary>
    private readonly record struct CheckLine(string Quantity, double Error, double PlainError, double Tolerance, bool Passed, string? Note)
    {
        public static CheckLine Of(VerifyRow r) => new(r.Quantity, r.Error, r.PlainError, r.Tolerance, r.Passed, r.Note);
        public static CheckLine Of(KvCacheRow r) => new(r.Quantity, r.Error, r.PlainError, r.Tolerance, r.Passed, r.Note);
        public static CheckLine Of(VarlenRow r) => new(r.Quantity, r.Error, r.PlainError, r.Tolerance, r.Passed, r.Note);
    }

    private static void Count(bool ok, ref int passed, ref int failed)
    {
        if (ok) passed++;
        else failed++;
    }
}
