using System.Runtime.InteropServices;

namespace FlashAttention.Cuda;

/// <summary>NCCL's opaque unique id (<c>ncclUniqueId</c>, 128 bytes), passed by value to <c>ncclCommInitRank</c>.</summary>
[StructLayout(LayoutKind.Sequential, Size = NcclApi.UniqueIdBytes)]
internal unsafe struct NcclUniqueIdBlob
{
    public fixed byte Bytes[NcclApi.UniqueIdBytes];
}

/// <summary>
/// NCCL, the collective communication library, loaded at run time (see <see cref="LibrarySearch.NcclCandidates"/>)
/// and called through unmanaged function pointers named after its exports. Only multi-GPU calls load it.
/// </summary>
internal sealed unsafe class NcclApi
{
    /// <summary>2.18.0 as ncclGetVersion codes it (major·10000 + minor·100 + patch): NVLink SHARP (2.17) can be switched off, and its early fixes are in.</summary>
    public const int MinimumVersion = 21800;

    /// <summary>sizeof(ncclUniqueId).</summary>
    public const int UniqueIdBytes = 128;

    // ncclDataType_t and ncclRedOp_t values the library uses.
    public const int Uint8 = 1;
    public const int Float32 = 7;
    public const int Sum = 0;

    private static readonly LazyApi<NcclApi> Loaded = new(() => Load(SystemLibraryProbe.Instance));

    /// <summary>The loaded NCCL; throws <see cref="CudaUnavailableException"/> with the reason when there is none.</summary>
    public static NcclApi Instance => Loaded.Instance;

    /// <summary>NCCL, or null with the reason; never throws.</summary>
    public static NcclApi? TryGetInstance(out CudaUnavailableException? error) => Loaded.TryGet(out error);

    /// <summary>The library that was loaded and where it lives.</summary>
    public LoadedLibrary Library { get; }

    /// <summary>ncclGetVersion's code, e.g. 22703 for 2.27.3.</summary>
    public int Version { get; }

    /// <summary>"2.27.3".</summary>
    public string VersionText => FormatVersion(Version);

    public readonly delegate* unmanaged<int*, int> ncclGetVersion;
    public readonly delegate* unmanaged<NcclUniqueIdBlob*, int> ncclGetUniqueId;
    public readonly delegate* unmanaged<nint*, int, NcclUniqueIdBlob, int, int> ncclCommInitRank;
    public readonly delegate* unmanaged<nint*, int, int*, int> ncclCommInitAll;
    public readonly delegate* unmanaged<nint, int> ncclCommDestroy;
    public readonly delegate* unmanaged<nint, int> ncclCommAbort;
    public readonly delegate* unmanaged<nint, int*, int> ncclCommCount;
    public readonly delegate* unmanaged<nint, int*, int> ncclCommCuDevice;
    public readonly delegate* unmanaged<nint, int*, int> ncclCommUserRank;
    public readonly delegate* unmanaged<nint, int*, int> ncclCommGetAsyncError;
    public readonly delegate* unmanaged<int> ncclGroupStart;
    public readonly delegate* unmanaged<int> ncclGroupEnd;
    public readonly delegate* unmanaged<nint, nuint, int, int, nint, nint, int> ncclSend;
    public readonly delegate* unmanaged<nint, nuint, int, int, nint, nint, int> ncclRecv;
    public readonly delegate* unmanaged<nint, nint, nuint, int, nint, nint, int> ncclAllGather;
    public readonly delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int> ncclReduceScatter;
    public readonly delegate* unmanaged<int, byte*> ncclGetErrorString;
    /// <summary>ncclGetLastError (2.13+): the last failure's detail, for messages.</summary>
    public readonly delegate* unmanaged<nint, byte*> ncclGetLastError;

    private NcclApi(LoadedLibrary library, ExportResolver r)
    {
        Library = library;
        ncclGetVersion = (delegate* unmanaged<int*, int>)r.Required("ncclGetVersion");
        ncclGetUniqueId = (delegate* unmanaged<NcclUniqueIdBlob*, int>)r.Required("ncclGetUniqueId");
        ncclCommInitRank = (delegate* unmanaged<nint*, int, NcclUniqueIdBlob, int, int>)r.Required("ncclCommInitRank");
        ncclCommInitAll = (delegate* unmanaged<nint*, int, int*, int>)r.Required("ncclCommInitAll");
        ncclCommDestroy = (delegate* unmanaged<nint, int>)r.Required("ncclCommDestroy");
        ncclCommAbort = (delegate* unmanaged<nint, int>)r.Required("ncclCommAbort");
        ncclCommCount = (delegate* unmanaged<nint, int*, int>)r.Required("ncclCommCount");
        ncclCommCuDevice = (delegate* unmanaged<nint, int*, int>)r.Required("ncclCommCuDevice");
        ncclCommUserRank = (delegate* unmanaged<nint, int*, int>)r.Required("ncclCommUserRank");
        ncclCommGetAsyncError = (delegate* unmanaged<nint, int*, int>)r.Required("ncclCommGetAsyncError");
        ncclGroupStart = (delegate* unmanaged<int>)r.Required("ncclGroupStart");
        ncclGroupEnd = (delegate* unmanaged<int>)r.Required("ncclGroupEnd");
        ncclSend = (delegate* unmanaged<nint, nuint, int, int, nint, nint, int>)r.Required("ncclSend");
        ncclRecv = (delegate* unmanaged<nint, nuint, int, int, nint, nint, int>)r.Required("ncclRecv");
        ncclAllGather = (delegate* unmanaged<nint, nint, nuint, int, nint, nint, int>)r.Required("ncclAllGather");
        ncclReduceScatter = (delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int>)r.Required("ncclReduceScatter");
        ncclGetErrorString = (delegate* unmanaged<int, byte*>)r.Required("ncclGetErrorString");
        ncclGetLastError = (delegate* unmanaged<nint, byte*>)r.Optional("ncclGetLastError");
        if (ncclGetVersion == null) return;
        int version;
        if (ncclGetVersion(&version) == 0) Version = version;
    }

    /// <summary>"2.18.1" from 21801; codes before 2.9 (major·1000 + minor·100 + patch) are read as such.</summary>
    public static string FormatVersion(int code) => code <= 0 ? "unknown"
        : code < 10000 ? $"{code / 1000}.{code % 1000 / 100}.{code % 100}"
        : $"{code / 10000}.{code % 10000 / 100}.{code % 100}";

    private const string InstallHint = "install NCCL 2.18 or newer (pip install nvidia-nccl-cu13, or the libnccl2 package), or set " + LibrarySearch.NcclVariable + "=/path/libnccl.so.2";

    /// <summary>The first candidate that loads and is new enough (see <see cref="NativeLibraryLoader.LoadFirstUsable"/>); never throws.</summary>
    internal static (NcclApi?, CudaUnavailableException?) Load(ILibraryProbe probe)
    {
        var candidates = LibrarySearch.NcclCandidates(probe);
        return NativeLibraryLoader.LoadFirstUsable(candidates,
            (library, exports) => new NcclApi(library, exports),
            api => api.Version < MinimumVersion ? $"is version {api.VersionText}" : null,
            (library, problem) => new CudaUnavailableException(CudaUnavailableReason.NcclTooOld,
                $"NCCL at {library.ResolvedPath} {problem}: context parallelism needs NCCL {FormatVersion(MinimumVersion)} or newer; {InstallHint}"),
            candidate => new CudaUnavailableException(CudaUnavailableReason.NcclNotFound,
                $"NCCL not found: {LibrarySearch.NcclVariable}={candidate.Path} cannot be loaded (missing file or wrong architecture); point it at a libnccl.so.2 of NCCL 2.18 or newer (pip install nvidia-nccl-cu13 puts one in site-packages/nvidia/nccl/lib)"),
            () => new CudaUnavailableException(CudaUnavailableReason.NcclNotFound,
                $"NCCL not found: {InstallHint} (searched {candidates.Count} places: {string.Join(", ", candidates.Select(c => c.Path))})"));
    }

    /// <summary>Throws <see cref="CudaException"/> unless <paramref name="result"/> is ncclSuccess.</summary>
    public void Check(int result, string call, string? context = null, nint communicator = 0)
    {
        if (result != 0) throw Error(result, call, context, communicator);
    }

    /// <summary>The exception <see cref="Check"/> would throw: ncclGetErrorString's text, and ncclGetLastError's detail when it has one.</summary>
    public CudaException Error(int result, string call, string? context = null, nint communicator = 0)
    {
        string description = ncclGetErrorString != null && ncclGetErrorString(result) is var s && s != null
            ? Marshal.PtrToStringUTF8((nint)s) ?? "" : "";
        if (ncclGetLastError != null && ncclGetLastError(communicator) is var l && l != null && Marshal.PtrToStringUTF8((nint)l) is { Length: > 0 } last)
            description = description.Length == 0 ? last : $"{description}: {last}";
        return NcclErrors.Exception(result, call, description, context);
    }
}

/// <summary>Names of <c>ncclResult_t</c> codes, kept here so an error is named even when the library cannot describe it.</summary>
internal static class NcclErrors
{
    public static string Name(int code) => code switch
    {
        0 => "ncclSuccess",
        1 => "ncclUnhandledCudaError",
        2 => "ncclSystemError",
        3 => "ncclInternalError",
        4 => "ncclInvalidArgument",
        5 => "ncclInvalidUsage",
        6 => "ncclRemoteError",
        7 => "ncclInProgress",
        _ => $"ncclResult({code})",
    };

    /// <summary>The exception for a failed NCCL call; <paramref name="description"/> is ncclGetErrorString's text (may be empty).</summary>
    public static CudaException Exception(int code, string call, string description, string? context)
        => new(CudaApi.Nccl, call, code, Name(code), description.Length > 0 ? description : "no description from NCCL", context);
}
