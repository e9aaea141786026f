using System.Runtime.InteropServices;

namespace FlashAttention.Cuda;

/// <summary>
/// NVRTC, the CUDA run-time compiler, loaded at run time (see <see cref="LibrarySearch.NvrtcCandidates"/> for where it
/// is looked for) and called through unmanaged function pointers named after the exported symbols.
/// </summary>
internal sealed unsafe class NvrtcApi
{
    /// <summary>NVRTC 12.0 is the first that compiles for <c>sm_90a</c>.</summary>
    public const int MinimumMajorVersion = 12;

    private static readonly LazyApi<NvrtcApi> Loaded = new(() => Load(SystemLibraryProbe.Instance));

    /// <summary>The loaded NVRTC; throws <see cref="CudaUnavailableException"/> with the reason when there is none.</summary>
    public static NvrtcApi Instance => Loaded.Instance;

    /// <summary>NVRTC, or null with the reason; never throws.</summary>
    public static NvrtcApi? TryGetInstance(out CudaUnavailableException? error) => Loaded.TryGet(out error);

    /// <summary>The library that was loaded and where it lives.</summary>
    public LoadedLibrary Library { get; }

    /// <summary>nvrtcVersion's major number.</summary>
    public int Major { get; }

    /// <summary>nvrtcVersion's minor number.</summary>
    public int Minor { get; }

    /// <summary>"13.0".</summary>
    public string VersionText => $"{Major}.{Minor}";

    /// <summary>Real architectures NVRTC can target (90 for sm_90…), or null when nvrtcGetSupportedArchs is not exported.</summary>
    public IReadOnlyList<int>? SupportedArchs { get; }

    public readonly delegate* unmanaged<int*, int*, int> nvrtcVersion;
    public readonly delegate* unmanaged<int*, int> nvrtcGetNumSupportedArchs;
    public readonly delegate* unmanaged<int*, int> nvrtcGetSupportedArchs;
    public readonly delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int> nvrtcCreateProgram;
    public readonly delegate* unmanaged<nint, int, byte**, int> nvrtcCompileProgram;
    public readonly delegate* unmanaged<nint, nuint*, int> nvrtcGetProgramLogSize;
    public readonly delegate* unmanaged<nint, byte*, int> nvrtcGetProgramLog;
    public readonly delegate* unmanaged<nint, nuint*, int> nvrtcGetCUBINSize;
    public readonly delegate* unmanaged<nint, byte*, int> nvrtcGetCUBIN;
    public readonly delegate* unmanaged<nint, nuint*, int> nvrtcGetPTXSize;
    public readonly delegate* unmanaged<nint, byte*, int> nvrtcGetPTX;
    public readonly delegate* unmanaged<nint, byte*, int> nvrtcAddNameExpression;
    public readonly delegate* unmanaged<nint, byte*, byte**, int> nvrtcGetLoweredName;
    public readonly delegate* unmanaged<nint*, int> nvrtcDestroyProgram;
    public readonly delegate* unmanaged<int, byte*> nvrtcGetErrorString;

    private NvrtcApi(LoadedLibrary library, ExportResolver r)
    {
        Library = library;
        nvrtcVersion = (delegate* unmanaged<int*, int*, int>)r.Required("nvrtcVersion");
        nvrtcCreateProgram = (delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int>)r.Required("nvrtcCreateProgram");
        nvrtcCompileProgram = (delegate* unmanaged<nint, int, byte**, int>)r.Required("nvrtcCompileProgram");
        nvrtcGetProgramLogSize = (delegate* unmanaged<nint, nuint*, int>)r.Required("nvrtcGetProgramLogSize");
        nvrtcGetProgramLog = (delegate* unmanaged<nint, byte*, int>)r.Required("nvrtcGetProgramLog");
        nvrtcGetCUBINSize = (delegate* unmanaged<nint, nuint*, int>)r.Required("nvrtcGetCUBINSize");
        nvrtcGetCUBIN = (delegate* unmanaged<nint, byte*, int>)r.Required("nvrtcGetCUBIN");
        nvrtcGetPTXSize = (delegate* unmanaged<nint, nuint*, int>)r.Required("nvrtcGetPTXSize");
        nvrtcGetPTX = (delegate* unmanaged<nint, byte*, int>)r.Required("nvrtcGetPTX");
        nvrtcAddNameExpression = (delegate* unmanaged<nint, byte*, int>)r.Required("nvrtcAddNameExpression");
        nvrtcGetLoweredName = (delegate* unmanaged<nint, byte*, byte**, int>)r.Required("nvrtcGetLoweredName");
        nvrtcDestroyProgram = (delegate* unmanaged<nint*, int>)r.Required("nvrtcDestroyProgram");
        nvrtcGetErrorString = (delegate* unmanaged<int, byte*>)r.Required("nvrtcGetErrorString");
        // Optional (NVRTC 11.2+): only used to double-check that sm_90 is among the targets.
        nvrtcGetNumSupportedArchs = (delegate* unmanaged<int*, int>)r.Optional("nvrtcGetNumSupportedArchs");
        nvrtcGetSupportedArchs = (delegate* unmanaged<int*, int>)r.Optional("nvrtcGetSupportedArchs");
        if (r.MissingRequired.Count > 0) return;

        int major, minor;
        if (nvrtcVersion(&major, &minor) == 0)
        {
            Major = major;
            Minor = minor;
        }
        if (nvrtcGetNumSupportedArchs != null && nvrtcGetSupportedArchs != null)
        {
            int count;
            if (nvrtcGetNumSupportedArchs(&count) == 0 && count is > 0 and < 1024)
            {
                var list = new int[count];
                fixed (int* p = list)
                    if (nvrtcGetSupportedArchs(p) == 0) SupportedArchs = list;
            }
        }
    }

    /// <summary>The first candidate that loads and can compile for sm_90a (see <see cref="NativeLibraryLoader.LoadFirstUsable"/>); never throws.</summary>
    internal static (NvrtcApi?, CudaUnavailableException?) Load(ILibraryProbe probe)
    {
        var candidates = LibrarySearch.NvrtcCandidates(probe);
        return NativeLibraryLoader.LoadFirstUsable(candidates,
            (library, exports) => new NvrtcApi(library, exports),
            api => api.Major < MinimumMajorVersion ? $"is version {api.VersionText}"
                : api.SupportedArchs is { } archs && !archs.Contains(90) ? $"(version {api.VersionText}) cannot target sm_90 (it supports {string.Join(", ", archs.Select(a => "sm_" + a))})"
                : null,
            (library, problem) => new CudaUnavailableException(CudaUnavailableReason.NvrtcTooOld,
                $"NVRTC at {library.ResolvedPath} {problem}: compiling for sm_90a needs NVRTC 12.0 or newer; install the CUDA toolkit 12.x/13.x or the nvidia-cuda-nvrtc wheel, or set {LibrarySearch.NvrtcVariable}=/path/libnvrtc.so"),
            candidate => new CudaUnavailableException(CudaUnavailableReason.NvrtcNotFound,
                $"NVRTC not found: {LibrarySearch.NvrtcVariable}={candidate.Path} cannot be loaded (missing file, wrong architecture, or missing libnvrtc-builtins next to it); point it at a libnvrtc.so from the CUDA toolkit 12.x/13.x or the nvidia-cuda-nvrtc wheel"),
            () => new CudaUnavailableException(CudaUnavailableReason.NvrtcNotFound,
                $"NVRTC not found: install the CUDA toolkit 12.x/13.x or the nvidia-cuda-nvrtc wheel, or set {LibrarySearch.NvrtcVariable}=/path/libnvrtc.so (searched {candidates.Count} places: {string.Join(", ", candidates.Select(c => c.Path))})"));
    }

    /// <summary>Throws <see cref="CudaException"/> unless <paramref name="result"/> is NVRTC_SUCCESS.</summary>
    public void Check(int result, string call, string? context = null)
    {
        if (result != 0) throw Error(result, call, context);
    }

    /// <summary>The exception <see cref="Check"/> would throw.</summary>
    public CudaException Error(int result, string call, string? context = null)
        => new(CudaApi.Nvrtc, call, result, Name(result), CudaErrorCodes.NvrtcDescription(result), context);

    /// <summary>
    /// The enumerator name. nvrtcGetErrorString returns the enumerator's name (not a description), so it is asked
    /// only for codes newer than the table.
    /// </summary>
    public string Name(int code)
    {
        string name = CudaErrorCodes.NvrtcName(code);
        if (!name.StartsWith("nvrtcResult(", StringComparison.Ordinal) || nvrtcGetErrorString == null) return name;
        byte* text = nvrtcGetErrorString(code);
        return text is not null && Marshal.PtrToStringUTF8((nint)text) is { Length: > 0 } s ? s : name;
    }
}
