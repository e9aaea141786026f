using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace FlashAttention.Cuda.Compiler;

/// <summary>
/// Turns a <see cref="KernelSpec"/> into a compiled module, as cheaply as possible: from this process's memory, else
/// from the on-disk cache, else by compiling (and then storing the result). Thread-safe: concurrent requests for the
/// same spec compile once. Needs NVRTC only, not a GPU, so <c>flashattn warmup</c> can fill a cache on a build machine.
/// </summary>
internal sealed class KernelCompiler
{

    private static readonly Lazy<KernelCompiler> LazyDefault = new(() =>
        new KernelCompiler(new NvrtcCompiler(), CudaDevice.HopperArchitecture, KernelDiskCache.CreateDefault()) { Warning = DistinctWarnings.To(Console.Error) });

    [ThreadStatic] private static bool t_obtainedHere; // set by Obtain, which Lazy runs on the calling thread

    private readonly ConcurrentDictionary<string, Lazy<CompiledKernelModule>> _memory = new(StringComparer.Ordinal);
    private readonly IKernelSourceProvider _sources;

    /// <summary>Creates a compiler front end.</summary>
    /// <param name="compiler">The compiler (NVRTC, or a fake in tests).</param>
    /// <param name="architecture">Target, e.g. <c>sm_90a</c>.</param>
    /// <param name="cache">On-disk cache, or null for none.</param>
    /// <param name="sources">Where sources come from (the embedded resources when null).</param>
    public KernelCompiler(IKernelCompiler compiler, string architecture, KernelDiskCache? cache, IKernelSourceProvider? sources = null)
    {
        Compiler = compiler;
        Architecture = architecture;
        Cache = cache;
        _sources = sources ?? EmbeddedKernelSources.Instance;
    }

    /// <summary>
    /// The process-wide compiler: NVRTC, <c>sm_90a</c>, the default cache folder. Throws
    /// <see cref="CudaUnavailableException"/> when NVRTC is missing or too old.
    /// </summary>
    public static KernelCompiler Default => LazyDefault.Value;

    /// <summary>The compiler behind this front end.</summary>
    public IKernelCompiler Compiler { get; }

    /// <summary>Target architecture.</summary>
    public string Architecture { get; }

    /// <summary>The on-disk cache, or null.</summary>
    public KernelDiskCache? Cache { get; }

    /// <summary>A folder where every compiled or cache-loaded cubin is also written as a plain .cubin (for cuobjdump) with its log; null for none (the lab sets it, process-wide).</summary>
    public static string? DumpDirectory { get; set; }

    /// <summary>
    /// Receives non-fatal problems (a damaged cache entry replaced, a directory in an entry's place, a cache folder that
    /// cannot be written). Null: ignored. The <see cref="Default"/> compiler writes each distinct one to standard error.
    /// </summary>
    public Action<string>? Warning { get; set; }

    /// <summary>
    /// The compiled module for <paramref name="spec"/>. <see cref="CompiledKernelModule.Origin"/> says whether it was
    /// compiled now, read from disk, or already in memory; <see cref="CompiledKernelModule.ObtainTime"/> how long that took.
    /// </summary>
    /// <exception cref="KernelCompilationException">The source does not compile; the exception carries NVRTC's log.</exception>
    public CompiledKernelModule GetOrCompile(KernelSpec spec)
    {
        var (request, key) = Prepare(spec);
        var lazy = _memory.GetOrAdd(key, k => new Lazy<CompiledKernelModule>(() => Obtain(spec, request, k), LazyThreadSafetyMode.ExecutionAndPublication));
        CompiledKernelModule module;
        t_obtainedHere = false;
        try
        {
            module = lazy.Value;
        }
        catch
        {
            _memory.TryRemove(new KeyValuePair<string, Lazy<CompiledKernelModule>>(key, lazy)); // let a later call retry
            throw;
        }
        // Only the thread that ran the factory reports how the module was obtained; everyone else found it in memory.
        bool obtainedHere = t_obtainedHere;
        t_obtainedHere = false;
        return obtainedHere ? module : module with { Origin = KernelOrigin.Memory, ObtainTime = TimeSpan.Zero, Spec = spec };
    }

    /// <summary>Resolves the sources, builds the options and computes the key, without compiling.</summary>
    public (CompileRequest Request, string Key) Prepare(KernelSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var source = KernelSources.Resolve(spec.SourceFile, spec.Sources ?? _sources);
        var options = NvrtcOptionBuilder.Build(Architecture, spec.Options);
        var request = new CompileRequest(source, options, spec.NameExpressions);
        return (request, ComputeKey(request, Compiler.Identity, Architecture));
    }

    /// <summary>
    /// The cache key: SHA-256 over the cache format version, the compiler identity (NVRTC version), the architecture,
    /// the options in order, the name expressions in order, the main source (name and text) and every header (name and
    /// text, sorted by name). Each field is length-prefixed so no two different inputs serialise alike.
    /// </summary>
    public static string ComputeKey(CompileRequest request, string compilerIdentity, string architecture)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Field(string tag, string value)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(value);
            hash.AppendData(Encoding.UTF8.GetBytes($"{tag}:{bytes.Length}:"));
            hash.AppendData(bytes);
        }
        Field("format", KernelDiskCache.FormatVersion.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Field("compiler", compilerIdentity);
        Field("arch", architecture);
        Field("options", request.Options.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (string option in request.Options) Field("option", option);
        Field("names", request.NameExpressions.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (string name in request.NameExpressions) Field("name", name);
        Field("source", request.Source.Main.Name);
        Field("text", request.Source.Main.Text);
        var headers = request.Source.Headers.OrderBy(h => h.Name, StringComparer.Ordinal).ToList();
        Field("headers", headers.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (var header in headers)
        {
            Field("header", header.Name);
            Field("text", header.Text);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private CompiledKernelModule Obtain(KernelSpec spec, CompileRequest request, string key)
    {
        t_obtainedHere = true;
        var clock = Stopwatch.StartNew();
        string? readProblem = null;
        if (Cache?.TryRead(key, out readProblem) is { } entry)
        {
            var names = entry.LoweredNames.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
            if (spec.NameExpressions.All(names.ContainsKey))
            {
                var cached = new CompiledKernelModule
                {
                    Spec = spec, CacheKey = key, Cubin = entry.Cubin, LoweredNames = names, Log = entry.Log,
                    CompileTime = entry.CompileTime, Origin = KernelOrigin.DiskCache, ObtainTime = clock.Elapsed,
                };
                Dump(cached);
                return cached;
            }
            Warning?.Invoke($"cache entry {Cache.PathFor(key)} lacks a lowered name for one of [{string.Join(", ", spec.NameExpressions)}]; recompiling");
        }
        else if (readProblem is not null)
        {
            Warning?.Invoke(readProblem);
        }

        clock.Restart();
        var output = Compiler.Compile(request);
        var compileTime = clock.Elapsed;
        foreach (string expression in spec.NameExpressions)
            if (!output.LoweredNames.ContainsKey(expression))
                throw new InvalidOperationException($"the compiler returned no lowered name for {expression} ({spec})");
        var module = new CompiledKernelModule
        {
            Spec = spec, CacheKey = key, Cubin = output.Cubin, LoweredNames = output.LoweredNames, Log = output.Log,
            CompileTime = compileTime, Origin = KernelOrigin.Compiled, ObtainTime = compileTime,
        };
        if (Cache is not null)
        {
            var entryToWrite = new KernelCacheEntry(key, [.. spec.NameExpressions.Select(e => new KeyValuePair<string, string>(e, output.LoweredNames[e]))],
                output.Log, compileTime, output.Cubin);
            if (!Cache.TryWrite(entryToWrite, out string? writeProblem)) Warning?.Invoke(writeProblem!);
        }
        Dump(module);
        return module;
    }

    /// <summary>With <see cref="DumpDirectory"/> set, writes the cubin (for <c>cuobjdump --dump-sass</c>), the log and the lowered names there.</summary>
    private void Dump(CompiledKernelModule module)
    {
        string? folder = DumpDirectory;
        if (string.IsNullOrWhiteSpace(folder)) return;
        try
        {
            Directory.CreateDirectory(folder);
            string stem = Path.Join(folder, $"{Path.GetFileNameWithoutExtension(module.Spec.SourceFile)}-{module.CacheKey[..12]}");
            File.WriteAllBytes(stem + ".cubin", module.Cubin);
            File.WriteAllText(stem + ".log", module.Log);
            File.WriteAllLines(stem + ".names", module.LoweredNames.Select(p => $"{p.Key}\t{p.Value}"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Warning?.Invoke($"cannot dump {module.Spec} to {folder}: {e.Message}");
        }
    }
}

/// <summary>
/// The default compiler's warnings: one line per distinct message, so that a cache that cannot be written is seen
/// (every process would otherwise compile again in silence) without repeating itself per call.
/// </summary>
internal static class DistinctWarnings
{
    /// <summary>A sink writing each distinct message once to <paramref name="writer"/>, as <c>warning: FlashAttention kernel cache: …</c>.</summary>
    public static Action<string> To(TextWriter writer)
    {
        var seen = new ConcurrentDictionary<string, bool>(StringComparer.Ordinal);
        return message =>
        {
            if (seen.TryAdd(message, true)) writer.WriteLine("warning: FlashAttention kernel cache: " + message);
        };
    }
}
