using FlashAttention.Cuda;
using FlashAttention.Cuda.Compiler;
using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;
using FlashAttention.Lab;
using FlashAttention.Lab.Tuning;

namespace FlashAttention.Tests.Cuda;

/// <summary>
/// A fact that needs NVRTC (12.0 or newer, able to target sm_90a) but no GPU: compiling is a host-side job. Skipped
/// where none is found; on a Debian machine without CUDA, <c>eval "$(bash scripts/local-toolkit.sh)"</c> provides one.
/// With <c>FLASHATTN_REQUIRE_NVRTC=1</c> (CI sets it) it runs regardless, so a missing NVRTC fails instead of skipping.
/// </summary>
public sealed class NvrtcFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> LazySkip = new(() =>
    {
        if (Environment.GetEnvironmentVariable("FLASHATTN_REQUIRE_NVRTC") == "1") return null;
        var report = CudaEnvironment.Probe();
        if (!report.NvrtcFound) return "needs NVRTC (no GPU): " + (report.NvrtcProblem ?? "not found") + "; scripts/local-toolkit.sh provides one";
        return report.NvrtcArchitectures.Count > 0 && !report.NvrtcArchitectures.Contains("sm_90") && !report.NvrtcArchitectures.Contains("sm_90a")
            ? $"needs an NVRTC that targets sm_90a; this one ({report.NvrtcVersion}) lists {string.Join(", ", report.NvrtcArchitectures)}"
            : null;
    });

    public NvrtcFactAttribute()
    {
        if (LazySkip.Value is { } reason) Skip = reason;
    }
}

/// <summary>
/// Every kernel variant the library, the ablation and verify's probes use, compiled for sm_90a as NVRTC compiles it on
/// the GPU machine, with ptxas's verdicts checked: what the GPU run would otherwise be the first to show.
/// </summary>
[Collection(PolicyScope.Collection)]
public sealed class KernelBuildTests
{
    private static readonly Lazy<IReadOnlyList<(KernelCatalog.Entry Entry, CompiledKernelModule Module)>> LazyBuilt = new(() =>
    {
        // No disk cache: each variant is compiled here and now, so its log is this NVRTC's.
        var compiler = new KernelCompiler(new NvrtcCompiler(), CudaDevice.HopperArchitecture, cache: null);
        var entries = LabCatalog.Everything().DistinctBy(e => e.Spec).ToArray();
        var modules = new CompiledKernelModule[entries.Length];
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.For(0, entries.Length, i =>
        {
            try { modules[i] = compiler.GetOrCompile(entries[i].Spec); }
            catch (KernelCompilationException e) { failures.Add($"{entries[i].Label}: {e.Log.Trim()}"); }
        });
        // A kernel that does not compile fails every test here with the compiler's words, once per distinct message.
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Distinct().Order()));
        return entries.Zip(modules).ToArray();
    });

    [NvrtcFact]
    public void Every_variant_compiles_with_its_wgmma_left_asynchronous_and_setmaxnreg_honoured()
    {
        var built = LazyBuilt.Value;
        Assert.True(built.Count > 50, $"only {built.Count} variants in the catalog");
        // ptxas reports a serialised wgmma pipeline ("Potential Performance Loss: wgmma.mma_async instructions are
        // serialized …": C7514, C7515, C7518, C7520; the GEMMs then run one at a time) or an ignored setmaxnreg (C7508)
        // as an "info" line, not as an error: the kernel runs, slowly. Fail on any. (C7517/C7519, a wait or arrive the
        // compiler injected, are notices that ptxas 12.5 and 13.0 give for different kernels; they serialise nothing.)
        var findings = built
            .SelectMany(b => b.Module.Log.Split('\n')
                .Where(line => line.Contains("Performance Loss", StringComparison.Ordinal) || line.Contains("serialized", StringComparison.Ordinal)
                               || line.Contains("(C7508)", StringComparison.Ordinal))
                .Select(line => $"{b.Entry.Label}: {line.Trim()}"))
            .ToArray();
        Assert.True(findings.Length == 0, string.Join('\n', findings));
        foreach (var (entry, module) in built)
            Assert.True(module.Cubin.Length > 0 && PtxasInfo.Parse(module.Log).Count > 0, $"{entry.Label}: no cubin or no ptxas figures in the log");
    }

    [NvrtcFact]
    public void The_default_d64_and_d128_kernels_keep_everything_in_registers()
    {
        // d256 is allowed a few bytes (its forward's 128 O accumulators; the softcap backward's derivatives), measured
        // and kept; at d64 and d128 any spill is a regression.
        var defaults = KernelCatalog.All().Where(e => e.Label.Contains(" d64 ", StringComparison.Ordinal) || e.Label.Contains(" d128 ", StringComparison.Ordinal))
            .Select(e => e.Spec).ToHashSet();
        var spilled = LazyBuilt.Value
            .Where(b => defaults.Contains(b.Entry.Spec))
            .SelectMany(b => PtxasInfo.Parse(b.Module.Log).Where(i => i.Spills).Select(i => $"{b.Entry.Label}: {i.SpillStoreBytes} bytes stored, {i.SpillLoadBytes} loaded"))
            .ToArray();
        Assert.True(defaults.Count >= 16, $"only {defaults.Count} d64/d128 default variants found");
        Assert.Contains(KernelCatalog.All(), e => e.Label.StartsWith("decode bf16 d128 ", StringComparison.Ordinal) && defaults.Contains(e.Spec));
        Assert.True(spilled.Length == 0, string.Join('\n', spilled));
    }

    [NvrtcFact]
    public void Shared_memory_sizes_in_the_records_agree_with_the_kernel_headers()
    {
        // One program of static_asserts, one per variant of the tables and the ablation: the C# records' sizes against
        // the headers' kSmemBytes, so a launch never asks for a size other than the one the kernel lays out.
        var forward = ForwardVariants.HeadDims.SelectMany(ForwardVariants.All)
            .Concat(ForwardAblation.PaperTable.Select(a => a.Apply(ForwardVariants.For(128, ForwardVariants.LongKeysFrom, false))));
        var backward = BackwardVariants.HeadDims.SelectMany(BackwardVariants.All);
        var decode = DecodeVariants.HeadDims.SelectMany(DecodeVariants.All);
        var checks = forward.Select(v => Check(v.NameExpression(DataType.BFloat16), v.SharedMemoryBytes, "fwd " + v))
            .Concat(backward.Select(v => Check(v.NameExpression(DataType.BFloat16), v.SharedMemoryBytes, "bwd " + v)))
            .Concat(Fp8Variants.HeadDims.Select(Fp8Variants.For).Select(v => Check(v.NameExpression(DataType.BFloat16), v.SharedMemoryBytes, "fp8 " + v)))
            .Concat(decode.Select(v => Check(v.NameExpression(DataType.BFloat16), v.SharedMemoryBytes, "decode " + v)))
            .Concat(Fp8Variants.HeadDims.Select(Fp8Variants.Quantizer).SelectMany(q => new[] { q with { Resident = true }, q with { Resident = false } })
                .Select(q => $"static_assert({q.ConfigExpression}::kSmemBytes == {q.SharedMemoryBytes} && {q.ConfigExpression}::kThreads == {q.Threads} && " +
                             $"{q.ConfigExpression}::kCtasPerSm == {q.CtasPerSm}, \"quantiser {q}: the C# shape disagrees\");"))
            .ToList();
        string source = "#include \"fwd/fwd_config.cuh\"\n#include \"bwd/bwd_config.cuh\"\n#include \"fp8/fp8_config.cuh\"\n#include \"decode/decode_config.cuh\"\n" +
                        "#include \"fp8/fp8_quantize.cu\"\n" + string.Join("\n", checks) +
                        "\n__global__ void smem_checks() {}\n";
        var sources = new CompositeKernelSources(new InMemoryKernelSources(new Dictionary<string, string> { ["smem_checks.cu"] = source }), EmbeddedKernelSources.Instance);
        var compiler = new KernelCompiler(new NvrtcCompiler(), CudaDevice.HopperArchitecture, cache: null);
        var e = Record.Exception(() => compiler.GetOrCompile(new KernelSpec("smem_checks.cu", ["smem_checks"], KernelCatalog.Options, sources)));
        Assert.True(e is null, (e as KernelCompilationException)?.Log ?? e?.Message);
        Assert.True(checks.Count >= 23, $"only {checks.Count} checks");

        // fa::flash_fwd_kernel<fa::FwdConfig<…>> → fa::FwdConfig<…>::kSmemBytes
        static string Check(string kernelName, int bytes, string label)
            => $"static_assert({kernelName[(kernelName.IndexOf('<') + 1)..^1]}::kSmemBytes == {bytes}, \"{label}: the C# record says {bytes} bytes\");";
    }

    [NvrtcFact]
    public void Parameter_structs_match_their_host_mirrors_field_by_field()
    {
        // The i-th field of the header's struct sits at the i-th explicit offset of the C# mirror, and the sizes agree:
        // a field added, dropped or moved on one side only fails here instead of as a kernel reading the wrong bytes.
        (string Header, string Struct, Type Mirror)[] structs =
        [
            ("fwd/fwd_params.cuh", "FwdParams", typeof(FwdParams)),
            ("bwd/bwd_params.cuh", "BwdParams", typeof(BwdParams)),
            ("bwd/bwd_params.cuh", "BwdAuxParams", typeof(BwdAuxParams)),
            ("decode/decode_params.cuh", "DecodeParams", typeof(DecodeParams)),
            ("decode/decode_params.cuh", "KvCacheParams", typeof(KvCacheParams)),
            ("varlen/varlen_params.cuh", "VarlenPrepareParams", typeof(VarlenPrepareParams)),
        ];
        var checks = new List<string>();
        foreach (var (header, name, mirror) in structs)
        {
            string body = System.Text.RegularExpressions.Regex.Match(KernelSources.StripComments(KernelSources.Load(header)),
                $@"struct {name} \{{(?<body>[^}}]*)\}};").Groups["body"].Value;
            // Declarations such as "int64_t o_stride_b, o_stride_s, o_stride_h;" name several fields.
            var fields = body.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .SelectMany(d => d.Split(',').Select(part => System.Text.RegularExpressions.Regex.Match(part, @"(\w+)\s*$").Groups[1].Value))
                .ToList();
            var offsets = mirror.GetFields(System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Public)
                .Select(f => f.GetCustomAttributes(typeof(System.Runtime.InteropServices.FieldOffsetAttribute), false).Cast<System.Runtime.InteropServices.FieldOffsetAttribute>().Single().Value)
                .Order().ToList();
            Assert.True(fields.Count == offsets.Count, $"{name}: {fields.Count} fields in {header}, {offsets.Count} in {mirror.Name}");
            // __INTADDR__ is the front end's offsetof (NVRTC has neither <cstddef> nor __builtin_offsetof).
            checks.AddRange(fields.Select((f, i) => $"static_assert((unsigned long long)__INTADDR__(&((fa::{name}*)0)->{f}) == {offsets[i]}, \"{name}.{f}: the mirror puts it at {offsets[i]}\");"));
            int size = System.Runtime.InteropServices.Marshal.SizeOf(mirror);
            checks.Add($"static_assert(sizeof(fa::{name}) == {size}, \"{name}: the mirror is {size} bytes\");");
        }
        string source = string.Concat(structs.Select(s => s.Header).Distinct().Select(h => $"#include \"{h}\"\n")) + string.Join("\n", checks) +
                        "\n__global__ void param_checks() {}\n";
        var sources = new CompositeKernelSources(new InMemoryKernelSources(new Dictionary<string, string> { ["param_checks.cu"] = source }), EmbeddedKernelSources.Instance);
        var compiler = new KernelCompiler(new NvrtcCompiler(), CudaDevice.HopperArchitecture, cache: null);
        var e = Record.Exception(() => compiler.GetOrCompile(new KernelSpec("param_checks.cu", ["param_checks"], KernelCatalog.Options, sources)));
        Assert.True(e is null, (e as KernelCompilationException)?.Log ?? e?.Message);
    }
}
