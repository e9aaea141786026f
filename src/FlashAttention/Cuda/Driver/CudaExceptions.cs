namespace FlashAttention.Cuda;

/// <summary>Which native library returned an error code.</summary>
public enum CudaApi
{
    /// <summary>The CUDA driver API (<c>libcuda.so.1</c>), codes are <c>CUresult</c>.</summary>
    Driver,
    /// <summary>The NVRTC run-time compiler (<c>libnvrtc.so</c>), codes are <c>nvrtcResult</c>.</summary>
    Nvrtc,
    /// <summary>NCCL (<c>libnccl.so.2</c>), codes are <c>ncclResult_t</c>.</summary>
    Nccl,
}

/// <summary>
/// A CUDA driver, NVRTC or NCCL call returned an error. The message names the call, the error code's enumerator name and
/// description, and what was being done, e.g.
/// <c>cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory) allocating 1073741824 bytes</c>.
/// </summary>
public class CudaException : Exception
{
    /// <summary>Creates the exception for a failed call; <paramref name="context"/> (may be empty) says what was being done.</summary>
    public CudaException(CudaApi api, string call, int errorCode, string errorName, string errorDescription, string? context = null)
        : base(Format(api, call, errorCode, errorName, errorDescription, context))
    {
        Api = api;
        Call = call;
        ErrorCode = errorCode;
        ErrorName = errorName;
        ErrorDescription = errorDescription;
    }

    /// <summary>The library that failed.</summary>
    public CudaApi Api { get; }

    /// <summary>The exported function that failed, e.g. <c>cuMemAlloc_v2</c>.</summary>
    public string Call { get; }

    /// <summary>The raw <c>CUresult</c> or <c>nvrtcResult</c> value.</summary>
    public int ErrorCode { get; }

    /// <summary>The enumerator name, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</summary>
    public string ErrorName { get; }

    /// <summary>The library's description of the code, e.g. <c>out of memory</c>.</summary>
    public string ErrorDescription { get; }

    /// <summary>
    /// True when the error leaves the CUDA context unusable for the rest of the process (an illegal address or a
    /// failed launch, for instance): retrying is pointless, the process must restart.
    /// </summary>
    public bool IsSticky => Api == CudaApi.Driver && CudaErrorCodes.IsSticky(ErrorCode);

    private static string Format(CudaApi api, string call, int code, string name, string description, string? context)
    {
        string text = $"{call} failed: {name} ({description})";
        if (!string.IsNullOrEmpty(context)) text += " " + context;
        if (api == CudaApi.Driver && CudaErrorCodes.IsSticky(code))
            text += "; this error corrupts the CUDA context, so every later CUDA call in this process will fail: restart the process";
        return text;
    }
}

/// <summary>NVRTC rejected a kernel source. <see cref="Log"/> holds the compiler's full output.</summary>
public sealed class KernelCompilationException : CudaException
{
    /// <summary>Creates the exception; the first error lines of <paramref name="log"/> are quoted in the message.</summary>
    public KernelCompilationException(string sourceName, string log, IReadOnlyList<string> options, int errorCode)
        : base(CudaApi.Nvrtc, "nvrtcCompileProgram", errorCode, CudaErrorCodes.NvrtcName(errorCode), CudaErrorCodes.NvrtcDescription(errorCode),
            $"compiling {sourceName} with [{string.Join(' ', options)}]: {FirstErrors(log)}")
    {
        SourceName = sourceName;
        Log = log;
        Options = options;
    }

    /// <summary>The kernel source file that failed to compile.</summary>
    public string SourceName { get; }

    /// <summary>NVRTC's complete log.</summary>
    public string Log { get; }

    /// <summary>The options the compiler was given.</summary>
    public IReadOnlyList<string> Options { get; }

    private static string FirstErrors(string log)
    {
        var lines = log.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var errors = lines.Where(l => l.Contains("error", StringComparison.OrdinalIgnoreCase)).Take(3).ToArray();
        if (errors.Length == 0) errors = lines.Take(3).ToArray();
        return errors.Length == 0 ? "(empty log)" : string.Join(" | ", errors);
    }
}

/// <summary>Why the GPU backend cannot run on this machine.</summary>
public enum CudaUnavailableReason
{
    /// <summary><c>libcuda.so.1</c> could not be loaded (no NVIDIA driver), or it is the toolkit's stub.</summary>
    DriverNotFound,
    /// <summary>The driver is too old for the functions the library needs (CUDA 12.0 or newer).</summary>
    DriverTooOld,
    /// <summary><c>cuInit</c> failed for a reason other than "no device".</summary>
    DriverInitFailed,
    /// <summary>No NVRTC library was found (or the one named by <c>FLASHATTN_NVRTC</c> could not be loaded).</summary>
    NvrtcNotFound,
    /// <summary>The NVRTC found cannot compile for <c>sm_90a</c> (needs 12.0 or newer).</summary>
    NvrtcTooOld,
    /// <summary>The driver is installed but sees no GPU.</summary>
    NoDevice,
    /// <summary>The GPU is not compute capability 9.0 (Hopper).</summary>
    UnsupportedDevice,
    /// <summary>No NCCL library was found (or the one named by <c>FLASHATTN_NCCL</c> could not be loaded); only multi-GPU calls need it.</summary>
    NcclNotFound,
    /// <summary>The NCCL found is older than the library needs (see <c>NcclApi.MinimumVersion</c>) or lacks a function.</summary>
    NcclTooOld,
}

/// <summary>
/// The GPU backend cannot run here: the one-line message says what is missing and what to install, or which GPU is
/// needed. Thrown before any work starts; nothing has been written when it is.
/// </summary>
public sealed class CudaUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CudaUnavailableException(CudaUnavailableReason reason, string message, Exception? inner = null) : base(message, inner)
    {
        Reason = reason;
    }

    /// <summary>What is missing.</summary>
    public CudaUnavailableReason Reason { get; }
}
