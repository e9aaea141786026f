using System.Runtime.InteropServices;

namespace FlashAttention.Cuda;

/// <summary>
/// The CUDA driver API, loaded at run time from <c>libcuda.so.1</c> with <see cref="NativeLibrary"/> and called through
/// unmanaged function pointers: nothing is linked at build time, there is no reflection and no marshalling stubs,
/// so the library trims and compiles ahead of time (Native AOT) cleanly.
/// </summary>
/// <remarks>
/// Field names are the exact exported symbols (the <c>_v2</c> variants where cuda.h maps the plain name to them), so
/// a reader can match every call against the driver documentation. Handles are <see cref="nint"/>, device pointers
/// <see cref="ulong"/> (<c>CUdeviceptr</c> is 64-bit), <c>size_t</c> is <see cref="nuint"/>, enums are <see cref="int"/>.
/// Every result must go through <see cref="Check"/>.
/// </remarks>
internal sealed unsafe class CudaDriverApi
{
    /// <summary>The oldest driver the library accepts, as cuDriverGetVersion reports it (1000·major + 10·minor).</summary>
    public const int MinimumDriverVersion = 12000;

    private static readonly LazyApi<CudaDriverApi> Loaded = new(() => Load(SystemLibraryProbe.Instance));

    /// <summary>The loaded and initialised driver; throws <see cref="CudaUnavailableException"/> with the reason when there is none.</summary>
    public static CudaDriverApi Instance => Loaded.Instance;

    /// <summary>The driver, or null with the reason; never throws.</summary>
    public static CudaDriverApi? TryGetInstance(out CudaUnavailableException? error) => Loaded.TryGet(out error);

    /// <summary>The library that was loaded and where it lives.</summary>
    public LoadedLibrary Library { get; }

    /// <summary>cuDriverGetVersion: 1000·major + 10·minor (13000 for CUDA 13.0).</summary>
    public int Version { get; }

    /// <summary>The driver's CUDA version as text, e.g. "13.0".</summary>
    public string VersionText => FormatVersion(Version);

    /// <summary>What cuInit returned: <see cref="CudaErrorCodes.Success"/>, or <see cref="CudaErrorCodes.NoDevice"/> when the driver sees no GPU.</summary>
    public int InitResult { get; }

    /// <summary>Exports that were looked for and not found, optional ones included (for reports).</summary>
    public IReadOnlyList<string> MissingOptionalExports { get; }

    // ---- initialisation and version
    public readonly delegate* unmanaged<uint, int> cuInit;
    public readonly delegate* unmanaged<int*, int> cuDriverGetVersion;
    public readonly delegate* unmanaged<int, byte**, int> cuGetErrorName;
    public readonly delegate* unmanaged<int, byte**, int> cuGetErrorString;

    // ---- devices
    public readonly delegate* unmanaged<int*, int> cuDeviceGetCount;
    public readonly delegate* unmanaged<int*, int, int> cuDeviceGet;
    public readonly delegate* unmanaged<byte*, int, int, int> cuDeviceGetName;
    public readonly delegate* unmanaged<int*, int, int, int> cuDeviceGetAttribute;
    public readonly delegate* unmanaged<nuint*, int, int> cuDeviceTotalMem_v2;

    // ---- contexts
    public readonly delegate* unmanaged<nint*, int, int> cuDevicePrimaryCtxRetain;
    public readonly delegate* unmanaged<int, int> cuDevicePrimaryCtxRelease_v2;
    public readonly delegate* unmanaged<nint, int> cuCtxSetCurrent;
    public readonly delegate* unmanaged<nint*, int> cuCtxGetCurrent;
    public readonly delegate* unmanaged<int> cuCtxSynchronize;

    // ---- memory
    public readonly delegate* unmanaged<ulong*, nuint, int> cuMemAlloc_v2;
    public readonly delegate* unmanaged<ulong, int> cuMemFree_v2;
    public readonly delegate* unmanaged<ulong, void*, nuint, int> cuMemcpyHtoD_v2;
    public readonly delegate* unmanaged<void*, ulong, nuint, int> cuMemcpyDtoH_v2;
    public readonly delegate* unmanaged<ulong, ulong, nuint, int> cuMemcpyDtoD_v2;
    public readonly delegate* unmanaged<ulong, ulong, nuint, nint, int> cuMemcpyDtoDAsync_v2;
    public readonly delegate* unmanaged<ulong, void*, nuint, nint, int> cuMemcpyHtoDAsync_v2;
    public readonly delegate* unmanaged<void*, ulong, nuint, nint, int> cuMemcpyDtoHAsync_v2;
    public readonly delegate* unmanaged<ulong, byte, nuint, int> cuMemsetD8_v2;
    public readonly delegate* unmanaged<ulong, uint, nuint, int> cuMemsetD32_v2;
    public readonly delegate* unmanaged<ulong, byte, nuint, nint, int> cuMemsetD8Async;
    public readonly delegate* unmanaged<nuint*, nuint*, int> cuMemGetInfo_v2;

    // ---- streams and events
    public readonly delegate* unmanaged<nint*, uint, int> cuStreamCreate;
    public readonly delegate* unmanaged<nint, int> cuStreamDestroy_v2;
    public readonly delegate* unmanaged<nint, int> cuStreamSynchronize;
    /// <summary>cuStreamGetId (CUDA 12.0+, optional): a stream's ID, unique for the life of the program (a handle can be reused after cuStreamDestroy).</summary>
    public readonly delegate* unmanaged<nint, ulong*, int> cuStreamGetId;
    public readonly delegate* unmanaged<nint*, uint, int> cuEventCreate;
    public readonly delegate* unmanaged<nint, nint, int> cuEventRecord;
    public readonly delegate* unmanaged<nint, int> cuEventSynchronize;
    public readonly delegate* unmanaged<float*, nint, nint, int> cuEventElapsedTime;
    public readonly delegate* unmanaged<nint, int> cuEventDestroy_v2;
    public readonly delegate* unmanaged<nint, nint, uint, int> cuStreamWaitEvent;

    // ---- modules, functions, launches
    public readonly delegate* unmanaged<nint*, void*, int> cuModuleLoadData;
    public readonly delegate* unmanaged<nint, int> cuModuleUnload;
    public readonly delegate* unmanaged<nint*, nint, byte*, int> cuModuleGetFunction;
    public readonly delegate* unmanaged<nint, int, int, int> cuFuncSetAttribute;
    public readonly delegate* unmanaged<int*, int, nint, int> cuFuncGetAttribute;
    /// <summary>cuFuncGetParamInfo (CUDA 12.4+, optional): lets launches check argument sizes against the kernel's signature.</summary>
    public readonly delegate* unmanaged<nint, nuint, nuint*, nuint*, int> cuFuncGetParamInfo;
    public readonly delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int> cuLaunchKernel;
    public readonly delegate* unmanaged<CuLaunchConfig*, nint, void**, void**, int> cuLaunchKernelEx;
    public readonly delegate* unmanaged<int*, nint, int, nuint, int> cuOccupancyMaxActiveBlocksPerMultiprocessor;

    // ---- tensor maps (TMA)
    public readonly delegate* unmanaged<void*, int, uint, void*, ulong*, ulong*, uint*, uint*, int, int, int, int, int> cuTensorMapEncodeTiled;

    private CudaDriverApi(LoadedLibrary library, ExportResolver r)
    {
        Library = library;
        cuInit = (delegate* unmanaged<uint, int>)r.Required("cuInit");
        cuDriverGetVersion = (delegate* unmanaged<int*, int>)r.Required("cuDriverGetVersion");
        cuGetErrorName = (delegate* unmanaged<int, byte**, int>)r.Optional("cuGetErrorName");
        cuGetErrorString = (delegate* unmanaged<int, byte**, int>)r.Optional("cuGetErrorString");

        cuDeviceGetCount = (delegate* unmanaged<int*, int>)r.Required("cuDeviceGetCount");
        cuDeviceGet = (delegate* unmanaged<int*, int, int>)r.Required("cuDeviceGet");
        cuDeviceGetName = (delegate* unmanaged<byte*, int, int, int>)r.Required("cuDeviceGetName");
        cuDeviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)r.Required("cuDeviceGetAttribute");
        cuDeviceTotalMem_v2 = (delegate* unmanaged<nuint*, int, int>)r.Required("cuDeviceTotalMem_v2");

        cuDevicePrimaryCtxRetain = (delegate* unmanaged<nint*, int, int>)r.Required("cuDevicePrimaryCtxRetain");
        cuDevicePrimaryCtxRelease_v2 = (delegate* unmanaged<int, int>)r.Required("cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease");
        cuCtxSetCurrent = (delegate* unmanaged<nint, int>)r.Required("cuCtxSetCurrent");
        cuCtxGetCurrent = (delegate* unmanaged<nint*, int>)r.Required("cuCtxGetCurrent");
        cuCtxSynchronize = (delegate* unmanaged<int>)r.Required("cuCtxSynchronize");

        cuMemAlloc_v2 = (delegate* unmanaged<ulong*, nuint, int>)r.Required("cuMemAlloc_v2");
        cuMemFree_v2 = (delegate* unmanaged<ulong, int>)r.Required("cuMemFree_v2");
        cuMemcpyHtoD_v2 = (delegate* unmanaged<ulong, void*, nuint, int>)r.Required("cuMemcpyHtoD_v2");
        cuMemcpyDtoH_v2 = (delegate* unmanaged<void*, ulong, nuint, int>)r.Required("cuMemcpyDtoH_v2");
        cuMemcpyDtoD_v2 = (delegate* unmanaged<ulong, ulong, nuint, int>)r.Required("cuMemcpyDtoD_v2");
        cuMemcpyDtoDAsync_v2 = (delegate* unmanaged<ulong, ulong, nuint, nint, int>)r.Required("cuMemcpyDtoDAsync_v2");
        cuMemcpyHtoDAsync_v2 = (delegate* unmanaged<ulong, void*, nuint, nint, int>)r.Required("cuMemcpyHtoDAsync_v2");
        cuMemcpyDtoHAsync_v2 = (delegate* unmanaged<void*, ulong, nuint, nint, int>)r.Required("cuMemcpyDtoHAsync_v2");
        cuMemsetD8_v2 = (delegate* unmanaged<ulong, byte, nuint, int>)r.Required("cuMemsetD8_v2");
        cuMemsetD32_v2 = (delegate* unmanaged<ulong, uint, nuint, int>)r.Required("cuMemsetD32_v2");
        cuMemsetD8Async = (delegate* unmanaged<ulong, byte, nuint, nint, int>)r.Required("cuMemsetD8Async");
        cuMemGetInfo_v2 = (delegate* unmanaged<nuint*, nuint*, int>)r.Required("cuMemGetInfo_v2");

        cuStreamCreate = (delegate* unmanaged<nint*, uint, int>)r.Required("cuStreamCreate");
        cuStreamDestroy_v2 = (delegate* unmanaged<nint, int>)r.Required("cuStreamDestroy_v2");
        cuStreamSynchronize = (delegate* unmanaged<nint, int>)r.Required("cuStreamSynchronize");
        cuStreamGetId = (delegate* unmanaged<nint, ulong*, int>)r.Optional("cuStreamGetId");
        cuEventCreate = (delegate* unmanaged<nint*, uint, int>)r.Required("cuEventCreate");
        cuEventRecord = (delegate* unmanaged<nint, nint, int>)r.Required("cuEventRecord");
        cuEventSynchronize = (delegate* unmanaged<nint, int>)r.Required("cuEventSynchronize");
        cuEventElapsedTime = (delegate* unmanaged<float*, nint, nint, int>)r.Required("cuEventElapsedTime", "cuEventElapsedTime_v2");
        cuEventDestroy_v2 = (delegate* unmanaged<nint, int>)r.Required("cuEventDestroy_v2");
        cuStreamWaitEvent = (delegate* unmanaged<nint, nint, uint, int>)r.Required("cuStreamWaitEvent");

        cuModuleLoadData = (delegate* unmanaged<nint*, void*, int>)r.Required("cuModuleLoadData");
        cuModuleUnload = (delegate* unmanaged<nint, int>)r.Required("cuModuleUnload");
        cuModuleGetFunction = (delegate* unmanaged<nint*, nint, byte*, int>)r.Required("cuModuleGetFunction");
        cuFuncSetAttribute = (delegate* unmanaged<nint, int, int, int>)r.Required("cuFuncSetAttribute");
        cuFuncGetAttribute = (delegate* unmanaged<int*, int, nint, int>)r.Required("cuFuncGetAttribute");
        cuFuncGetParamInfo = (delegate* unmanaged<nint, nuint, nuint*, nuint*, int>)r.Optional("cuFuncGetParamInfo");
        cuLaunchKernel = (delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int>)r.Required("cuLaunchKernel");
        cuLaunchKernelEx = (delegate* unmanaged<CuLaunchConfig*, nint, void**, void**, int>)r.Required("cuLaunchKernelEx");
        cuOccupancyMaxActiveBlocksPerMultiprocessor = (delegate* unmanaged<int*, nint, int, nuint, int>)r.Required("cuOccupancyMaxActiveBlocksPerMultiprocessor");

        cuTensorMapEncodeTiled = (delegate* unmanaged<void*, int, uint, void*, ulong*, ulong*, uint*, uint*, int, int, int, int, int>)r.Required("cuTensorMapEncodeTiled");

        MissingOptionalExports = r.MissingOptional;
        if (r.MissingRequired.Count > 0) return; // Load() reports it; nothing may be called

        int version;
        Version = cuDriverGetVersion(&version) == 0 ? version : 0;
        InitResult = cuInit(0);
    }

    /// <summary>Loads and initialises the driver found by <paramref name="probe"/>; never throws.</summary>
    internal static (CudaDriverApi?, CudaUnavailableException?) Load(ILibraryProbe probe)
    {
        var candidates = LibrarySearch.DriverCandidates(probe);
        var library = NativeLibraryLoader.TryLoad(candidates);
        if (library is null)
            return (null, new CudaUnavailableException(CudaUnavailableReason.DriverNotFound,
                "libcuda.so.1 not found: install the NVIDIA driver (it provides the CUDA driver library libcuda.so.1) on a machine with an NVIDIA GPU"));

        var resolver = new ExportResolver(library.Handle);
        var api = new CudaDriverApi(library, resolver);
        if (resolver.MissingRequired.Count > 0)
        {
            string version = api.cuDriverGetVersion == null ? "" : $" (it reports CUDA {FormatVersion(QueryVersion(api))})";
            return (null, new CudaUnavailableException(CudaUnavailableReason.DriverTooOld,
                $"the NVIDIA driver at {library.ResolvedPath}{version} lacks {string.Join(", ", resolver.MissingRequired)}: update the NVIDIA driver to one for CUDA 12.0 or newer"));
        }
        if (api.InitResult == CudaErrorCodes.StubLibrary)
            return (null, new CudaUnavailableException(CudaUnavailableReason.DriverNotFound,
                $"libcuda.so.1 not found: {library.ResolvedPath} is the CUDA toolkit's stub library, not the driver; install the NVIDIA driver, or remove the stubs folder from LD_LIBRARY_PATH"));
        if (api.Version < MinimumDriverVersion)
            return (null, new CudaUnavailableException(CudaUnavailableReason.DriverTooOld,
                $"the NVIDIA driver supports CUDA {api.VersionText}; FlashAttention needs a driver for CUDA 12.0 or newer (for TMA tensor maps and cluster launches): update the NVIDIA driver"));
        if (api.InitResult is not (CudaErrorCodes.Success or CudaErrorCodes.NoDevice))
            return (null, new CudaUnavailableException(CudaUnavailableReason.DriverInitFailed,
                $"cuInit failed: {api.ErrorName(api.InitResult)} ({api.ErrorDescription(api.InitResult)}); the NVIDIA driver at {library.ResolvedPath} (CUDA {api.VersionText}) could not start: check nvidia-smi"));
        return (api, null);
    }

    private static int QueryVersion(CudaDriverApi api)
    {
        int v;
        return api.cuDriverGetVersion(&v) == 0 ? v : 0;
    }

    /// <summary>"13.0" for 13000.</summary>
    public static string FormatVersion(int version) => version <= 0 ? "unknown" : $"{version / 1000}.{version % 1000 / 10}";

    /// <summary>Throws <see cref="CudaException"/> unless <paramref name="result"/> is CUDA_SUCCESS.</summary>
    /// <param name="result">The CUresult a call returned.</param>
    /// <param name="call">The exported name of the call, e.g. <c>nameof(cuMemAlloc_v2)</c>.</param>
    /// <param name="context">What was being done, appended to the message ("allocating 1024 bytes").</param>
    public void Check(int result, string call, string? context = null)
    {
        if (result != CudaErrorCodes.Success) throw Error(result, call, context);
    }

    /// <summary>The exception <see cref="Check"/> would throw.</summary>
    public CudaException Error(int result, string call, string? context = null)
        => new(CudaApi.Driver, call, result, ErrorName(result), ErrorDescription(result), context);

    /// <summary>The enumerator name: the table's (stable across driver versions), else the driver's own.</summary>
    public string ErrorName(int code)
    {
        string name = CudaErrorCodes.DriverName(code);
        if (!name.StartsWith("CUresult(", StringComparison.Ordinal) || cuGetErrorName == null) return name;
        byte* text = null;
        return cuGetErrorName(code, &text) == 0 && text is not null ? Marshal.PtrToStringUTF8((nint)text) ?? name : name;
    }

    /// <summary>The driver's description of a code (cuGetErrorString), else the table's.</summary>
    public string ErrorDescription(int code)
    {
        if (cuGetErrorString != null)
        {
            byte* text = null;
            if (cuGetErrorString(code, &text) == 0 && text is not null && Marshal.PtrToStringUTF8((nint)text) is { Length: > 0 } s) return s;
        }
        return CudaErrorCodes.DriverDescription(code);
    }
}
