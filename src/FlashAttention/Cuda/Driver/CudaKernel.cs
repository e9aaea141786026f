using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;

namespace FlashAttention.Cuda;

/// <summary>Grid, block or cluster dimensions.</summary>
public readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    /// <summary>A one-dimensional size.</summary>
    public static implicit operator Dim3(int x) => new(checked((uint)x));

    /// <summary>X·Y·Z.</summary>
    public ulong Volume => (ulong)X * Y * Z;

    /// <summary>"(x, y, z)".</summary>
    public override string ToString() => $"({X}, {Y}, {Z})";
}

/// <summary>How to launch a kernel.</summary>
/// <param name="Grid">Blocks in the grid.</param>
/// <param name="Block">Threads per block.</param>
/// <param name="DynamicSharedBytes">Dynamic shared memory per block; above 48 KB the kernel is opted in automatically.</param>
/// <param name="Stream">Stream to queue on; null for the legacy default stream.</param>
/// <param name="Cluster">Thread-block cluster shape (Hopper); null or (1,1,1) for none. Grid dimensions must be multiples of it.</param>
/// <param name="ProgrammaticDependency">
/// Programmatic dependent launch (Hopper): the grid may start while the kernel before it in the stream finishes; the
/// kernel must execute <c>griddepcontrol.wait</c> before it touches memory that earlier work writes or reads.
/// </param>
internal readonly record struct LaunchConfig(Dim3 Grid, Dim3 Block, int DynamicSharedBytes = 0, CudaStream? Stream = null, Dim3? Cluster = null,
    bool ProgrammaticDependency = false);

/// <summary>A loaded cubin: kernels are looked up by (lowered) name; unloaded on <see cref="Dispose"/>.</summary>
internal sealed unsafe class CudaModule : IDisposable
{
    private readonly ConcurrentDictionary<string, CudaKernel> _kernels = new(StringComparer.Ordinal);
    private nint _handle;

    private CudaModule(CudaContext context, nint handle, string name)
    {
        Context = context;
        _handle = handle;
        Name = name;
    }

    /// <summary>Loads a cubin (or NUL-terminated PTX) image into <paramref name="context"/> with cuModuleLoadData.</summary>
    public static CudaModule Load(CudaContext context, ReadOnlySpan<byte> image, string name)
    {
        if (image.IsEmpty) throw new ArgumentException("empty module image", nameof(image));
        var api = context.MakeCurrent();
        nint handle;
        fixed (byte* p = image)
            api.Check(api.cuModuleLoadData(&handle, p), nameof(api.cuModuleLoadData), $"loading {name} ({image.Length} bytes) on device {context.Device.Ordinal}");
        return new CudaModule(context, handle, name);
    }

    /// <summary>The context the module lives in.</summary>
    public CudaContext Context { get; }

    /// <summary>A name for messages (the kernel source file).</summary>
    public string Name { get; }

    internal nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle == 0, this);
            return _handle;
        }
    }

    /// <summary>The kernel with this mangled (lowered) name; <paramref name="displayName"/> (the name expression) is used in messages.</summary>
    public CudaKernel GetKernel(string loweredName, string? displayName = null)
        => _kernels.GetOrAdd(loweredName, static (n, state) => state.Module.Lookup(n, state.Display), (Module: this, Display: displayName ?? loweredName));

    private CudaKernel Lookup(string loweredName, string displayName)
    {
        var api = Context.MakeCurrent();
        byte[] utf8 = Encoding.UTF8.GetBytes(loweredName + "\0");
        nint function;
        fixed (byte* p = utf8)
            api.Check(api.cuModuleGetFunction(&function, Handle, p), nameof(api.cuModuleGetFunction), $"looking up {displayName} ({loweredName}) in {Name}");
        return new CudaKernel(this, function, loweredName, displayName);
    }

    /// <summary>Unloads the module; its kernels become unusable.</summary>
    public void Dispose()
    {
        if (_handle == 0) return;
        if (Context.TryMakeCurrent(out var api)) api.cuModuleUnload(_handle);
        _handle = 0;
    }
}

/// <summary>
/// One kernel of a loaded module: its resource attributes and <see cref="Launch"/>. Launches check the arguments
/// against the kernel's parameter sizes when the driver can report them (cuFuncGetParamInfo, CUDA 12.4+), so a
/// launcher that passes the wrong thing fails with a message instead of corrupting memory.
/// </summary>
internal sealed unsafe class CudaKernel
{
    /// <summary>Dynamic shared memory a kernel may use without opting in (48 KB on every architecture since Volta).</summary>
    public const int DefaultDynamicSharedLimit = 48 * 1024;

    // Parameter sizes by how many were asked for: the driver can only say "no such parameter" with an error, which
    // tools such as compute-sanitizer report, so we never ask past the arguments a launch passes.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, int[]?> _parameterSizes = new();
    private int _dynamicSharedLimit = -1; // what MAX_DYNAMIC_SHARED_SIZE_BYTES was last set to; -1 = untouched
    private volatile bool _largestCarveout;

    internal CudaKernel(CudaModule module, nint handle, string loweredName, string displayName)
    {
        Module = module;
        Handle = handle;
        LoweredName = loweredName;
        DisplayName = displayName;
    }

    /// <summary>The module that holds the kernel.</summary>
    public CudaModule Module { get; }

    /// <summary>CUfunction handle.</summary>
    public nint Handle { get; }

    /// <summary>The mangled name in the cubin.</summary>
    public string LoweredName { get; }

    /// <summary>The C++ name expression (e.g. <c>axpy&lt;float&gt;</c>), for messages.</summary>
    public string DisplayName { get; }

    private CudaDevice Device => Module.Context.Device;

    /// <summary>Registers per thread.</summary>
    public int RegisterCount => GetAttribute(CuFunctionAttribute.NumRegs);

    /// <summary>Local memory per thread in bytes (non-zero means register spills or local arrays).</summary>
    public int LocalBytes => GetAttribute(CuFunctionAttribute.LocalSizeBytes);

    /// <summary>Statically declared shared memory per block in bytes.</summary>
    public int StaticSharedBytes => GetAttribute(CuFunctionAttribute.SharedSizeBytes);

    /// <summary>Largest block this kernel can be launched with (limited by its registers and launch bounds).</summary>
    public int MaxThreadsPerBlock => GetAttribute(CuFunctionAttribute.MaxThreadsPerBlock);

    /// <summary>SASS version of the binary (90 for sm_90a).</summary>
    public int BinaryVersion => GetAttribute(CuFunctionAttribute.BinaryVersion);

    /// <summary>Parameter sizes in bytes as the driver reports them, or null when the driver cannot (before CUDA 12.4).</summary>
    public IReadOnlyList<int>? ParameterSizes(int count) => _parameterSizes.GetOrAdd(count, QueryParameterSizes);

    /// <summary>cuFuncGetAttribute.</summary>
    public int GetAttribute(int attribute)
    {
        var api = Module.Context.MakeCurrent();
        int value;
        api.Check(api.cuFuncGetAttribute(&value, attribute, Handle), nameof(api.cuFuncGetAttribute), $"attribute {attribute} of {DisplayName}");
        return value;
    }

    /// <summary>cuFuncSetAttribute.</summary>
    public void SetAttribute(int attribute, int value)
    {
        var api = Module.Context.MakeCurrent();
        api.Check(api.cuFuncSetAttribute(Handle, attribute, value), nameof(api.cuFuncSetAttribute), $"setting attribute {attribute} of {DisplayName} to {value}");
    }

    /// <summary>Opts the kernel in to <paramref name="bytes"/> of dynamic shared memory (needed above 48 KB).</summary>
    public void SetMaxDynamicSharedMemory(int bytes)
    {
        SetAttribute(CuFunctionAttribute.MaxDynamicSharedSizeBytes, bytes);
        _dynamicSharedLimit = bytes;
    }

    /// <summary>
    /// Asks for the SM's largest shared-memory carveout (once per kernel): a kernel whose several CTAs per SM together
    /// need more than the driver's default choice may otherwise run with fewer of them resident.
    /// </summary>
    public void PreferLargestSharedMemoryCarveout()
    {
        if (_largestCarveout) return;
        SetAttribute(CuFunctionAttribute.PreferredSharedMemoryCarveout, 100);
        _largestCarveout = true;
    }

    /// <summary>How many blocks of this kernel fit on one SM (cuOccupancyMaxActiveBlocksPerMultiprocessor).</summary>
    public int MaxActiveBlocksPerMultiprocessor(int blockSize, int dynamicSharedBytes)
    {
        EnsureSharedMemory(dynamicSharedBytes);
        var api = Module.Context.MakeCurrent();
        int blocks;
        api.Check(api.cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, Handle, blockSize, (nuint)dynamicSharedBytes),
            nameof(api.cuOccupancyMaxActiveBlocksPerMultiprocessor), $"for {DisplayName} with {blockSize} threads and {dynamicSharedBytes} bytes of dynamic shared memory");
        return blocks;
    }

    /// <summary>
    /// Queues the kernel. Opts in to large dynamic shared memory when needed, uses cuLaunchKernelEx with a cluster
    /// attribute when <see cref="LaunchConfig.Cluster"/> is set, and cuLaunchKernel otherwise. Errors detected at
    /// launch throw <see cref="CudaException"/>; errors while the kernel runs surface at the next synchronisation
    /// (<see cref="CudaStream.Synchronize"/> names this kernel).
    /// </summary>
    public void Launch(in LaunchConfig config, KernelArguments arguments)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        if (config.Grid.Volume == 0 || config.Block.Volume == 0)
            throw new ArgumentException($"{DisplayName}: grid {config.Grid} and block {config.Block} must have no zero dimension");
        if (config.DynamicSharedBytes < 0) throw new ArgumentOutOfRangeException(nameof(config), "dynamic shared memory must be non-negative");
        CheckArguments(arguments);
        EnsureSharedMemory(config.DynamicSharedBytes);

        var api = Module.Context.MakeCurrent();
        nint stream = CudaStream.HandleOf(config.Stream);
        // Argument values go to 64-byte-aligned stack memory (the tensor map's alignment), pointers next to them.
        int count = arguments.Count;
        byte* raw = stackalloc byte[arguments.Length + TensorMapDescriptor.Alignment];
        byte* storage = (byte*)(((nuint)raw + TensorMapDescriptor.Alignment - 1) & ~(nuint)(TensorMapDescriptor.Alignment - 1));
        void** pointers = stackalloc void*[Math.Max(count, 1)];
        arguments.WriteTo(storage, pointers);

        int result;
        string call;
        var cluster = config.Cluster ?? new Dim3(1);
        if (cluster.Volume > 1 || config.ProgrammaticDependency)
        {
            var attributes = stackalloc CuLaunchAttribute[2];
            uint used = 0;
            if (cluster.Volume > 1)
            {
                if (config.Grid.X % cluster.X != 0 || config.Grid.Y % cluster.Y != 0 || config.Grid.Z % cluster.Z != 0)
                    throw new ArgumentException($"{DisplayName}: grid {config.Grid} must be a multiple of the cluster shape {cluster}");
                attributes[used] = default;
                attributes[used].Id = CuLaunchAttributeId.ClusterDimension;
                attributes[used].ClusterDimX = cluster.X;
                attributes[used].ClusterDimY = cluster.Y;
                attributes[used].ClusterDimZ = cluster.Z;
                used++;
            }
            if (config.ProgrammaticDependency)
            {
                attributes[used] = default;
                attributes[used].Id = CuLaunchAttributeId.ProgrammaticStreamSerialization;
                attributes[used].ProgrammaticStreamSerializationAllowed = 1;
                used++;
            }
            var launch = new CuLaunchConfig
            {
                GridDimX = config.Grid.X, GridDimY = config.Grid.Y, GridDimZ = config.Grid.Z,
                BlockDimX = config.Block.X, BlockDimY = config.Block.Y, BlockDimZ = config.Block.Z,
                SharedMemBytes = (uint)config.DynamicSharedBytes,
                Stream = stream,
                Attrs = attributes,
                NumAttrs = used,
            };
            result = api.cuLaunchKernelEx(&launch, Handle, pointers, null);
            call = nameof(api.cuLaunchKernelEx);
        }
        else
        {
            result = api.cuLaunchKernel(Handle, config.Grid.X, config.Grid.Y, config.Grid.Z, config.Block.X, config.Block.Y, config.Block.Z,
                (uint)config.DynamicSharedBytes, stream, pointers, null);
            call = nameof(api.cuLaunchKernel);
        }
        if (config.Stream is not null) config.Stream.LastLaunch = DisplayName;
        if (result != 0)
            throw api.Error(result, call, $"launching {DisplayName} with grid {config.Grid}, block {config.Block}, {config.DynamicSharedBytes} bytes of dynamic shared memory"
                + (cluster.Volume > 1 ? $", cluster {cluster}" : "") + (config.ProgrammaticDependency ? ", programmatic dependent launch" : ""));
    }

    private void EnsureSharedMemory(int dynamicBytes)
    {
        if (dynamicBytes <= DefaultDynamicSharedLimit || dynamicBytes <= _dynamicSharedLimit) return;
        int staticBytes = StaticSharedBytes;
        int optIn = Device.MaxSharedMemoryPerBlockOptIn;
        if (dynamicBytes + staticBytes > optIn)
            throw new ArgumentException($"{DisplayName}: {dynamicBytes} bytes of dynamic plus {staticBytes} of static shared memory exceed the device's {optIn}-byte limit per block");
        SetMaxDynamicSharedMemory(dynamicBytes);
    }

    private void CheckArguments(KernelArguments arguments)
    {
        if (ParameterSizes(arguments.Count) is not { } sizes) return;
        if (sizes.Count == arguments.Count && sizes.SequenceEqual(arguments.Sizes)) return;
        throw new ArgumentException($"{DisplayName}: its first {arguments.Count} parameter(s) have sizes [{string.Join(", ", sizes)}] bytes" +
            (sizes.Count < arguments.Count ? $" (it takes only {sizes.Count})" : "") +
            $"; the launch passed {arguments.Count} of sizes [{string.Join(", ", arguments.Sizes)}]");
    }

    // Sizes of the first `count` parameters (fewer when the kernel has fewer). A launch with too few arguments is
    // not caught: finding the end would need a failing call.
    private int[]? QueryParameterSizes(int count)
    {
        var api = Module.Context.MakeCurrent();
        if (api.cuFuncGetParamInfo == null) return null;
        var sizes = new List<int>();
        for (nuint i = 0; i < (nuint)count; i++)
        {
            nuint offset, size;
            int result = api.cuFuncGetParamInfo(Handle, i, &offset, &size);
            if (result == CudaErrorCodes.InvalidValue) break; // past the last parameter
            if (result != 0) return null;                       // cannot tell: skip the check rather than guess
            sizes.Add((int)size);
        }
        return [.. sizes];
    }
}
