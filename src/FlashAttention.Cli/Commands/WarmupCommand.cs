using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FlashAttention.Cli.Terminal;
using FlashAttention.Cuda;
using FlashAttention.Cuda.Compiler;
using FlashAttention.Cuda.Launchers;

using FlashAttention.Lab;

namespace FlashAttention.Cli.Commands;

/// <summary>
/// <c>flashattn warmup</c>: compiles every kernel variant into the on-disk cache ahead of time, in parallel, so a
/// deployment never compiles on a request path. Needs NVRTC, not a GPU. Reports per variant how it was obtained, the
/// NVRTC compile time, the time to load it back from the cache, and ptxas's register and spill figures. A cache that
/// cannot be written, found before compiling or by any variant left out of it, fails the command (exit 1): a deploy
/// step must not pass with an empty cache.
/// </summary>
internal static class WarmupCommand
{
    public static Command Create()
    {
        var ablations = new Option<bool>("--ablations") { Description = "Also the forward ablation variants (bench --ablation)." };
        var probes = new Option<bool>("--probes") { Description = "Also the primitive probe kernels (verify)." };
        var jobs = new Option<int?>("--jobs") { Description = "Parallel compilations (default: the core count)." };
        var filter = new Option<string?>("--filter") { Description = "Only variants whose label contains this text (e.g. 'fwd bf16 d128')." };
        var command = new Command("warmup", """
            Compile kernel variants into the on-disk cache (FLASHATTN_CACHE_DIR, else ~/.cache/flashattention) ahead of
            time, with progress; then load each back from the cache and report both times and ptxas's registers/spills.
            Needs NVRTC; no GPU is needed. Exits 1 when the cache cannot be written (every variant must end up in it).
            """) { ablations, probes, jobs, filter }.WithExamples(
            "flashattn warmup",
            "flashattn warmup --ablations --probes --jobs 16",
            "flashattn warmup --filter 'fwd bf16'");
        CommandActions.Set(command, (p, context) =>
        {
            // The folder the default compiler will use, checked before NVRTC and before any compile: warmup exists to fill it.
            if (!KernelDiskCache.CreateDefault().CanWrite(out string? cacheProblem))
                throw new CliException($"{cacheProblem}; warmup would cache nothing (set {KernelDiskCache.DirectoryVariable} to a writable folder)", ExitCodes.Failure);
            KernelCompiler compiler;
            try
            {
                compiler = KernelCompiler.Default;
            }
            catch (CudaUnavailableException e)
            {
                throw new CliException(e.Message, ExitCodes.DeviceUnavailable);
            }
            var cache = compiler.Cache ?? throw new CliException("the kernel compiler has no disk cache; warmup would cache nothing", ExitCodes.Failure);
            // Damaged entries replaced, directories in an entry's place, writes that failed: each said once, as it happens.
            compiler.Warning = message => context.Warn(message);
            string? text = p.GetValue(filter);
            var entries = KernelCatalog.All()
                .Concat(p.GetValue(ablations) ? LabCatalog.Ablations() : [])
                .Concat(p.GetValue(probes) ? LabCatalog.Probes() : [])
                .Where(e => text is null || e.Label.Contains(text, StringComparison.OrdinalIgnoreCase))
                .DistinctBy(e => e.Spec)
                .ToList();
            if (entries.Count == 0) throw new CliException($"--filter {text}: no kernel variant matches");
            int parallel = p.GetValue(jobs) ?? Environment.ProcessorCount;
            if (parallel < 1) throw new CliException($"--jobs: expected 1 or more; got {parallel}");

            context.Progress($"{entries.Count} variants, {parallel} at a time, cache {compiler.Cache?.Directory ?? "(none)"}");
            var wall = Stopwatch.StartNew();
            var results = new CompiledKernelModule[entries.Count];
            int done = 0;
            var failures = new List<string>();
            Parallel.For(0, entries.Count, new ParallelOptions { MaxDegreeOfParallelism = parallel }, i =>
            {
                try
                {
                    results[i] = compiler.GetOrCompile(entries[i].Spec);
                    int n = Interlocked.Increment(ref done);
                    context.Progress($"[{n}/{entries.Count}] {entries[i].Label}: {Describe(results[i].Origin)} in {results[i].ObtainTime.TotalSeconds:F2} s");
                }
                catch (KernelCompilationException e)
                {
                    lock (failures) failures.Add($"{entries[i].Label}: {e.Message}\n{e.Log}");
                }
            });
            foreach (string f in failures) context.Error(f);
            double warmSeconds = wall.Elapsed.TotalSeconds;

            // Load every entry back from disk with a fresh compiler (its memory cache is empty): the cost a new process pays.
            // An entry that is not on disk is not loaded (that would compile it again): it is counted as missing.
            var fresh = new KernelCompiler(compiler.Compiler, compiler.Architecture, cache) { Warning = compiler.Warning };
            var missing = new List<string>();
            // The label column as wide as the longest label: so nothing that sets variants apart is cut.
            int width = Math.Max("variant".Length, entries.Max(e => e.Label.Length));
            context.Out.WriteLine($"{"variant".PadRight(width)} {"origin",-9} {"compile s",9} {"load ms",8} {"regs",5} {"spill B",8}");
            var compileTimes = new List<double>();
            var loadTimes = new List<double>();
            for (int i = 0; i < entries.Count; i++)
            {
                if (results[i] is null) continue;
                if (cache.TryRead(results[i].CacheKey, out _) is null)
                {
                    missing.Add(entries[i].Label);
                    continue;
                }
                var loaded = fresh.GetOrCompile(entries[i].Spec);
                var ptxas = PtxasInfo.Parse(results[i].Log);
                var info = ptxas.Count > 0 ? ptxas[0] : null;
                if (results[i].Origin == KernelOrigin.Compiled) compileTimes.Add(results[i].CompileTime.TotalSeconds);
                if (loaded.Origin == KernelOrigin.DiskCache) loadTimes.Add(loaded.ObtainTime.TotalMilliseconds);
                context.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{entries[i].Label.PadRight(width)} {Describe(results[i].Origin),-9} {results[i].CompileTime.TotalSeconds,9:F2} {loaded.ObtainTime.TotalMilliseconds,8:F1} {info?.Registers.ToString() ?? "?",5} {(info is null ? "?" : (info.SpillStoreBytes + info.SpillLoadBytes).ToString()),8}"));
                foreach (string line in (results[i].Log ?? "").Split('\n'))
                    // ptxas reports wgmma serialisation and ignored setmaxnreg as "info" lines with a C75xx code.
                    if (line.Contains("warning", StringComparison.OrdinalIgnoreCase) || line.Contains("Performance Loss", StringComparison.Ordinal) || line.Contains("(C75", StringComparison.Ordinal))
                        context.Warn($"{entries[i].Label}: {line.Trim()}");
            }
            context.Out.WriteLine(
                FormattableString.Invariant($"{entries.Count - failures.Count - missing.Count} of {entries.Count} variants ready in the cache in {warmSeconds:F1} s wall ({parallel} parallel)") +
                (compileTimes.Count > 0 ? FormattableString.Invariant($"; cold compile {compileTimes.Average():F2} s per variant (max {compileTimes.Max():F2} s)") : "; nothing needed compiling") +
                (loadTimes.Count > 0 ? FormattableString.Invariant($"; cached load {loadTimes.Average():F1} ms per variant") : ""));
            if (missing.Count > 0)
                throw new CliException($"{missing.Count} of {entries.Count} variants are not in the kernel cache {cache.Directory} (first: {missing[0]}); see the warnings above", ExitCodes.Failure);
            return failures.Count == 0 ? ExitCodes.Ok : ExitCodes.Failure;
        });
        return command;
    }

    private static string Describe(KernelOrigin origin) => origin switch
    {
        KernelOrigin.Compiled => "compiled",
        KernelOrigin.DiskCache => "cached",
        _ => "in memory",
    };

}
