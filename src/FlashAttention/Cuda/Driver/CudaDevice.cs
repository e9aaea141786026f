using System.Text;

namespace FlashAttention.Cuda;

/// <summary>A GPU's compute capability, e.g. 9.0 for Hopper.</summary>
public readonly record struct ComputeCapability(int Major, int Minor)
{
    /// <summary>"9.0".</summary>
    public override string ToString() => $"{Major}.{Minor}";
}

/// <summary>
/// One CUDA device as the driver sees it (after <c>CUDA_VISIBLE_DEVICES</c>), with the properties the library and
/// <c>flashattn info</c> need. Instances are cached per ordinal; get them with <see cref="Get"/> or <see cref="All"/>.
/// </summary>
public sealed unsafe class CudaDevice
{
    /// <summary>The architecture all kernels are compiled for: Hopper with its architecture-specific features (wgmma, setmaxnreg).</summary>
    public const string HopperArchitecture = "sm_90a";

    private static readonly Lock CacheLock = new();
    private static CudaDevice?[]? _cache;

    private readonly Lazy<CudaContext> _context;

    private CudaDevice(CudaDriverApi api, int ordinal)
    {
        Ordinal = ordinal;
        int device;
        api.Check(api.cuDeviceGet(&device, ordinal), nameof(api.cuDeviceGet), $"for device {ordinal}");
        Handle = device;
        int handle = device; // a copy the local functions below may capture (a variable whose address was taken may not be)

        byte* name = stackalloc byte[256];
        api.Check(api.cuDeviceGetName(name, 256, handle), nameof(api.cuDeviceGetName), $"for device {ordinal}");
        Name = Encoding.UTF8.GetString(name, new ReadOnlySpan<byte>(name, 256).IndexOf((byte)0) is var n and >= 0 ? n : 256);

        nuint total;
        api.Check(api.cuDeviceTotalMem_v2(&total, handle), nameof(api.cuDeviceTotalMem_v2), $"for device {ordinal}");
        TotalMemoryBytes = (long)total;

        int Attribute(int attribute, string what)
        {
            int value;
            api.Check(api.cuDeviceGetAttribute(&value, attribute, handle), nameof(api.cuDeviceGetAttribute), $"reading {what} of device {ordinal}");
            return value;
        }
        // Attributes NVIDIA has deprecated (clock rates, bus width) may one day fail or read 0: they are reported as unknown, never fatal.
        int? Optional(int attribute)
        {
            int value;
            return api.cuDeviceGetAttribute(&value, attribute, handle) == 0 && value > 0 ? value : null;
        }

        ComputeCapability = new ComputeCapability(
            Attribute(CuDeviceAttribute.ComputeCapabilityMajor, "the compute capability"),
            Attribute(CuDeviceAttribute.ComputeCapabilityMinor, "the compute capability"));
        MultiprocessorCount = Attribute(CuDeviceAttribute.MultiprocessorCount, "the SM count");
        L2CacheBytes = Attribute(CuDeviceAttribute.L2CacheSize, "the L2 size");
        MaxThreadsPerBlock = Attribute(CuDeviceAttribute.MaxThreadsPerBlock, "the block size limit");
        MaxSharedMemoryPerBlock = Attribute(CuDeviceAttribute.MaxSharedMemoryPerBlock, "the shared memory limit");
        MaxSharedMemoryPerBlockOptIn = Attribute(CuDeviceAttribute.MaxSharedMemoryPerBlockOptin, "the opt-in shared memory limit");
        MaxSharedMemoryPerMultiprocessor = Attribute(CuDeviceAttribute.MaxSharedMemoryPerMultiprocessor, "the shared memory per SM");
        MaxRegistersPerMultiprocessor = Attribute(CuDeviceAttribute.MaxRegistersPerMultiprocessor, "the registers per SM");
        ClockRateKHz = Optional(CuDeviceAttribute.ClockRate);
        MemoryClockRateKHz = Optional(CuDeviceAttribute.MemoryClockRate);
        MemoryBusWidthBits = Optional(CuDeviceAttribute.GlobalMemoryBusWidth);
        SupportsClusterLaunch = Optional(CuDeviceAttribute.ClusterLaunch) is > 0;
        PciBusId = Optional(CuDeviceAttribute.PciBusId) ?? 0;
        DriverVersion = api.Version;
        _context = new Lazy<CudaContext>(() => new CudaContext(this, api));
    }

    /// <summary>Number of devices the driver sees; 0 when it sees none. Throws <see cref="CudaUnavailableException"/> without a driver.</summary>
    public static int Count
    {
        get
        {
            var api = CudaDriverApi.Instance;
            if (api.InitResult == CudaErrorCodes.NoDevice) return 0;
            int count;
            api.Check(api.cuDeviceGetCount(&count), nameof(api.cuDeviceGetCount));
            return count;
        }
    }

    /// <summary>
    /// The device with this ordinal. Throws <see cref="CudaUnavailableException"/> when there is no driver or no device,
    /// <see cref="ArgumentOutOfRangeException"/> for an ordinal past the last device. Any GPU is returned; call
    /// <see cref="EnsureSupported"/> (the kernels do) to require Hopper.
    /// </summary>
    public static CudaDevice Get(int ordinal = 0)
    {
        var api = CudaDriverApi.Instance;
        lock (CacheLock)
        {
            if (_cache is null)
            {
                int count = Count;
                if (count == 0)
                    throw new CudaUnavailableException(CudaUnavailableReason.NoDevice,
                        $"no CUDA device found: the NVIDIA driver (CUDA {api.VersionText}) is installed but sees no GPU; check nvidia-smi and CUDA_VISIBLE_DEVICES");
                _cache = new CudaDevice?[count];
            }
            if ((uint)ordinal >= (uint)_cache.Length)
                throw new ArgumentOutOfRangeException(nameof(ordinal), ordinal, $"device ordinal {ordinal} does not exist: the driver sees {_cache.Length} device(s), 0…{_cache.Length - 1}");
            return _cache[ordinal] ??= new CudaDevice(api, ordinal);
        }
    }

    /// <summary>Every device the driver sees (empty when none). Throws <see cref="CudaUnavailableException"/> without a driver.</summary>
    public static IReadOnlyList<CudaDevice> All
    {
        get
        {
            int count = Count;
            var list = new CudaDevice[count];
            for (int i = 0; i < count; i++) list[i] = Get(i);
            return list;
        }
    }

    /// <summary>The CUdevice handle.</summary>
    internal int Handle { get; }

    /// <summary>Ordinal as the driver numbers devices (0-based, after CUDA_VISIBLE_DEVICES).</summary>
    public int Ordinal { get; }

    /// <summary>Marketing name, e.g. "NVIDIA H100 80GB HBM3".</summary>
    public string Name { get; }

    /// <summary>Compute capability (9.0 for H100/H200).</summary>
    public ComputeCapability ComputeCapability { get; }

    /// <summary>True for compute capability 9.0, the only one the kernels are built for (<c>sm_90a</c> code runs on 9.0 alone).</summary>
    public bool IsHopper => ComputeCapability == new ComputeCapability(9, 0);

    /// <summary>Number of streaming multiprocessors (132 on an H100 SXM).</summary>
    public int MultiprocessorCount { get; }

    /// <summary>Total device memory in bytes.</summary>
    public long TotalMemoryBytes { get; }

    /// <summary>L2 cache size in bytes.</summary>
    public int L2CacheBytes { get; }

    /// <summary>Largest block, in threads.</summary>
    public int MaxThreadsPerBlock { get; }

    /// <summary>Shared memory a block gets without opting in (48 KB).</summary>
    public int MaxSharedMemoryPerBlock { get; }

    /// <summary>Shared memory a block may use after opting in with <c>CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES</c> (227 KB on Hopper).</summary>
    public int MaxSharedMemoryPerBlockOptIn { get; }

    /// <summary>Shared memory per SM in bytes.</summary>
    public int MaxSharedMemoryPerMultiprocessor { get; }

    /// <summary>32-bit registers per SM.</summary>
    public int MaxRegistersPerMultiprocessor { get; }

    /// <summary>Peak SM clock in kHz, when the driver still reports it.</summary>
    public int? ClockRateKHz { get; }

    /// <summary>Peak memory clock in kHz, when the driver still reports it.</summary>
    public int? MemoryClockRateKHz { get; }

    /// <summary>Memory bus width in bits, when the driver reports it.</summary>
    public int? MemoryBusWidthBits { get; }

    /// <summary>Whether thread-block clusters can be launched (true on Hopper).</summary>
    public bool SupportsClusterLaunch { get; }

    /// <summary>PCI bus id, 0 when unknown.</summary>
    public int PciBusId { get; }

    /// <summary>cuDriverGetVersion: 1000·major + 10·minor.</summary>
    public int DriverVersion { get; }

    /// <summary>The CUDA version the driver supports, e.g. "13.0".</summary>
    public string DriverVersionText => CudaDriverApi.FormatVersion(DriverVersion);

    /// <summary>The device's primary context, retained on first use and kept for the life of the process.</summary>
    public CudaContext Context => _context.Value;

    /// <summary>Throws <see cref="CudaUnavailableException"/> unless this is a compute capability 9.0 GPU.</summary>
    public void EnsureSupported()
    {
        if (!IsHopper) throw new CudaUnavailableException(CudaUnavailableReason.UnsupportedDevice, UnsupportedMessage(Name, ComputeCapability));
    }

    /// <summary>The one-line message for a GPU the kernels cannot run on.</summary>
    internal static string UnsupportedMessage(string name, ComputeCapability cc)
        => $"requires an NVIDIA Hopper GPU (compute capability 9.0, e.g. H100/H200); found {name} with compute capability {cc}";

    /// <summary>Free and total device memory in bytes, as cuMemGetInfo_v2 reports them now.</summary>
    public (long FreeBytes, long TotalBytes) GetMemoryInfo()
    {
        var api = Context.MakeCurrent();
        nuint free, total;
        api.Check(api.cuMemGetInfo_v2(&free, &total), nameof(api.cuMemGetInfo_v2));
        return ((long)free, (long)total);
    }

    /// <summary>Waits for all work on this device's primary context to finish; throws the first asynchronous error.</summary>
    public void Synchronize() => Context.Synchronize();

    /// <summary>"0: NVIDIA H100 80GB HBM3 (compute capability 9.0, 132 SMs)".</summary>
    public override string ToString() => $"{Ordinal}: {Name} (compute capability {ComputeCapability}, {MultiprocessorCount} SMs)";

    /// <summary><paramref name="device"/>, or device 0 when null.</summary>
    internal static CudaDevice OrDefault(CudaDevice? device) => device ?? Get(0);
}

/// <summary>
/// A device's primary context (the one the CUDA runtime, and so PyTorch/TorchSharp, also use), retained once and
/// never released: buffers freed by the finalizer thread must always find it alive, and a process rarely has a reason
/// to tear it down. Every call that needs a context makes this one current on the calling thread first
/// (<see cref="MakeCurrent"/>), so callers may use the library from any thread.
/// </summary>
public sealed unsafe class CudaContext
{
    private readonly CudaDriverApi _api;

    internal CudaContext(CudaDevice device, CudaDriverApi api)
    {
        _api = api;
        Device = device;
        nint context;
        api.Check(api.cuDevicePrimaryCtxRetain(&context, device.Handle), nameof(api.cuDevicePrimaryCtxRetain), $"for device {device.Ordinal} ({device.Name})");
        Handle = context;
    }

    /// <summary>The device this context belongs to.</summary>
    public CudaDevice Device { get; }

    /// <summary>The CUcontext handle.</summary>
    public nint Handle { get; }

    /// <summary>
    /// Makes this context current on the calling thread unless it already is, and returns the driver API for the call
    /// that follows. Cheap: cuCtxGetCurrent is a thread-local read in the driver.
    /// </summary>
    internal CudaDriverApi MakeCurrent()
    {
        nint current;
        _api.Check(_api.cuCtxGetCurrent(&current), nameof(_api.cuCtxGetCurrent));
        if (current != Handle) _api.Check(_api.cuCtxSetCurrent(Handle), nameof(_api.cuCtxSetCurrent), $"for device {Device.Ordinal}");
        return _api;
    }

    /// <summary>Like <see cref="MakeCurrent"/> but for finalizers and Dispose: reports failure instead of throwing.</summary>
    internal bool TryMakeCurrent(out CudaDriverApi api)
    {
        api = _api;
        nint current;
        if (_api.cuCtxGetCurrent(&current) != 0) return false;
        return current == Handle || _api.cuCtxSetCurrent(Handle) == 0;
    }

    /// <summary>Waits for all work in this context; throws the first asynchronous error (a failed kernel, for instance).</summary>
    public void Synchronize()
    {
        var api = MakeCurrent();
        api.Check(api.cuCtxSynchronize(), nameof(api.cuCtxSynchronize), $"on device {Device.Ordinal}");
    }
}
