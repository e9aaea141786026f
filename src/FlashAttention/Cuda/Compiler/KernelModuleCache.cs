using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace FlashAttention.Cuda.Compiler;

/// <summary>A compiled module loaded into a device's context, with how long each step took.</summary>
internal sealed class LoadedKernelModule
{
    public required CompiledKernelModule Compiled { get; init; }
    public required CudaModule Module { get; init; }
    /// <summary>cuModuleLoadData time.</summary>
    public required TimeSpan LoadTime { get; init; }

    /// <summary>The kernel for one of the spec's name expressions.</summary>
    public CudaKernel GetKernel(string nameExpression) => Module.GetKernel(Compiled.LoweredName(nameExpression), nameExpression);
}

/// <summary>
/// Compiled modules loaded on one device, memoised by cache key so each specialisation is loaded once per process.
/// Launchers ask it for kernels: <c>KernelModuleCache.For(device).GetKernel(spec, "flash_fwd&lt;128, true&gt;")</c>.
/// </summary>
internal sealed class KernelModuleCache
{
    private static readonly ConcurrentDictionary<int, KernelModuleCache> PerDevice = new();
    private readonly ConcurrentDictionary<string, Lazy<LoadedKernelModule>> _loaded = new(StringComparer.Ordinal);
    // Launch-path shortcut: a launcher that keeps its KernelSpec in a static field skips source resolution and hashing.
    // Weak keys (identity), so specs created per call do not pile up.
    private readonly ConditionalWeakTable<KernelSpec, LoadedKernelModule> _bySpecInstance = new();

    /// <summary>Loads modules compiled by <paramref name="compiler"/> on <paramref name="device"/>.</summary>
    public KernelModuleCache(CudaDevice device, KernelCompiler compiler)
    {
        Device = device;
        Compiler = compiler;
    }

    /// <summary>
    /// The shared cache for a device, using <see cref="KernelCompiler.Default"/>. Throws
    /// <see cref="CudaUnavailableException"/> for a GPU that is not Hopper, or when NVRTC is missing.
    /// </summary>
    public static KernelModuleCache For(CudaDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        device.EnsureSupported();
        return PerDevice.GetOrAdd(device.Ordinal, _ => new KernelModuleCache(device, KernelCompiler.Default));
    }

    public CudaDevice Device { get; }

    public KernelCompiler Compiler { get; }

    /// <summary>
    /// The module for <paramref name="spec"/>: compiled or read from cache if needed, loaded once. Cheap on repeat calls
    /// with the same <see cref="KernelSpec"/> instance (a dictionary lookup), so launchers should keep theirs in static fields.
    /// </summary>
    public LoadedKernelModule Load(KernelSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (_bySpecInstance.TryGetValue(spec, out var known)) return known;
        var loaded = LoadByKey(spec);
        _bySpecInstance.TryAdd(spec, loaded);
        return loaded;
    }

    private LoadedKernelModule LoadByKey(KernelSpec spec)
    {
        var (_, key) = Compiler.Prepare(spec);
        var lazy = _loaded.GetOrAdd(key, _ => new Lazy<LoadedKernelModule>(() =>
        {
            var compiled = Compiler.GetOrCompile(spec);
            var clock = Stopwatch.StartNew();
            var module = CudaModule.Load(Device.Context, compiled.Cubin, spec.SourceFile);
            return new LoadedKernelModule { Compiled = compiled, Module = module, LoadTime = clock.Elapsed };
        }, LazyThreadSafetyMode.ExecutionAndPublication));
        try
        {
            return lazy.Value;
        }
        catch
        {
            _loaded.TryRemove(new KeyValuePair<string, Lazy<LoadedKernelModule>>(key, lazy));
            throw;
        }
    }

    /// <summary>One kernel of <paramref name="spec"/>, by name expression.</summary>
    public CudaKernel GetKernel(KernelSpec spec, string nameExpression) => Load(spec).GetKernel(nameExpression);
}
