namespace FlashAttention.Cuda.Compiler;

/// <summary>
/// One compilation unit to build: a kernel source, the template instantiations wanted from it (NVRTC name
/// expressions such as <c>axpy&lt;float&gt;</c> or <c>flash_fwd&lt;128, true&gt;</c>), and the options. Everything here
/// (plus the sources' text, NVRTC's version and the architecture) goes into the cache key.
/// </summary>
internal sealed record KernelSpec
{
    /// <summary>Creates a spec.</summary>
    public KernelSpec(string sourceFile, IReadOnlyList<string> nameExpressions, CompileOptions? options = null, IKernelSourceProvider? sources = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(sourceFile);
        ArgumentNullException.ThrowIfNull(nameExpressions);
        if (nameExpressions.Count == 0) throw new ArgumentException("at least one name expression (the kernel to instantiate) is needed", nameof(nameExpressions));
        foreach (string e in nameExpressions) ArgumentException.ThrowIfNullOrWhiteSpace(e, nameof(nameExpressions));
        if (nameExpressions.Distinct(StringComparer.Ordinal).Count() != nameExpressions.Count)
            throw new ArgumentException($"name expressions must be distinct: {string.Join(", ", nameExpressions)}", nameof(nameExpressions));
        SourceFile = sourceFile;
        NameExpressions = [.. nameExpressions];
        Options = options ?? CompileOptions.Default;
        Sources = sources;
    }

    /// <summary>Where the source and its headers come from; null for the compiler's own (the library's embedded kernels).</summary>
    public IKernelSourceProvider? Sources { get; }

    /// <summary>The embedded <c>.cu</c> file.</summary>
    public string SourceFile { get; }

    /// <summary>The kernels to instantiate, as C++ name expressions.</summary>
    public IReadOnlyList<string> NameExpressions { get; }

    /// <summary>Compiler settings.</summary>
    public CompileOptions Options { get; }

    /// <summary>"selftest.cu [axpy&lt;float&gt;, axpy&lt;double&gt;]".</summary>
    public override string ToString() => $"{SourceFile} [{string.Join(", ", NameExpressions)}]";
}

/// <summary>Everything a compiler needs for one program, with sources already resolved and options already built.</summary>
internal sealed record CompileRequest(ResolvedKernelSource Source, IReadOnlyList<string> Options, IReadOnlyList<string> NameExpressions);

/// <summary>What a compiler returns: the cubin, the mangled name of each name expression, and the log.</summary>
internal sealed record CompilerOutput(byte[] Cubin, IReadOnlyDictionary<string, string> LoweredNames, string Log);

/// <summary>
/// A compiler of CUDA C++ to cubin. The real one is <see cref="NvrtcCompiler"/>; tests use a fake so the caching and
/// bookkeeping around it are checked without a GPU or NVRTC.
/// </summary>
internal interface IKernelCompiler
{
    /// <summary>What identifies this compiler's output in the cache key, e.g. "nvrtc 13.0".</summary>
    string Identity { get; }

    /// <summary>Compiles, or throws <see cref="KernelCompilationException"/> with the log.</summary>
    CompilerOutput Compile(CompileRequest request);
}

/// <summary>Where a compiled module came from.</summary>
internal enum KernelOrigin
{
    /// <summary>Compiled by NVRTC just now.</summary>
    Compiled,
    /// <summary>Read from the on-disk cache.</summary>
    DiskCache,
    /// <summary>Already in this process's memory.</summary>
    Memory,
}

/// <summary>A compiled kernel module: cubin, lowered names, log, and how long it took to get.</summary>
internal sealed record CompiledKernelModule
{
    public required KernelSpec Spec { get; init; }
    /// <summary>SHA-256 cache key (64 lower-case hex digits).</summary>
    public required string CacheKey { get; init; }
    public required byte[] Cubin { get; init; }
    /// <summary>Name expression → mangled symbol in <see cref="Cubin"/>.</summary>
    public required IReadOnlyDictionary<string, string> LoweredNames { get; init; }
    /// <summary>NVRTC's log from the compilation (stored with the cache entry, so ptxas -v figures survive a cache hit).</summary>
    public required string Log { get; init; }
    /// <summary>How long NVRTC took when the module was compiled (also for cache hits: recorded in the entry).</summary>
    public required TimeSpan CompileTime { get; init; }
    /// <summary>Where this copy came from.</summary>
    public required KernelOrigin Origin { get; init; }
    /// <summary>Time spent obtaining it this time: compiling, or reading and verifying the cache entry.</summary>
    public required TimeSpan ObtainTime { get; init; }

    /// <summary>The mangled name of a name expression of the spec.</summary>
    public string LoweredName(string nameExpression) => LoweredNames.TryGetValue(nameExpression, out var name)
        ? name
        : throw new KeyNotFoundException($"{nameExpression} is not one of the name expressions compiled for {Spec}");

    /// <summary>Register and spill figures from the log (present when compiled with <see cref="CompileOptions.PtxasVerbose"/>).</summary>
    public IReadOnlyList<PtxasInfo> ParsePtxasInfo() => PtxasInfo.Parse(Log);
}
