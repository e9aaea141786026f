using System.Runtime.InteropServices;

namespace FlashAttention.Cuda;

/// <summary>
/// The process's native environment (libc's <c>getenv</c>/<c>setenv</c>). .NET's Environment.SetEnvironmentVariable
/// changes only the managed copy on Unix, and native libraries such as NCCL read the native one.
/// </summary>
internal static unsafe class NativeEnvironment
{
    private static readonly Lazy<(nint Get, nint Set)> Functions = new(() =>
    {
        if (OperatingSystem.IsWindows() || !NativeLibrary.TryLoad(OperatingSystem.IsMacOS() ? "libc.dylib" : "libc.so.6", out nint libc)) return (0, 0);
        NativeLibrary.TryGetExport(libc, "getenv", out nint get);
        NativeLibrary.TryGetExport(libc, "setenv", out nint set);
        return (get, set);
    });

    /// <summary>The native value, or null when unset (or on Windows, where the managed copy is the process's).</summary>
    public static string? Get(string name)
    {
        if (Functions.Value.Get == 0) return Environment.GetEnvironmentVariable(name);
        nint utf8 = Marshal.StringToCoTaskMemUTF8(name);
        try
        {
            byte* value = ((delegate* unmanaged<nint, byte*>)Functions.Value.Get)(utf8);
            return value == null ? null : Marshal.PtrToStringUTF8((nint)value);
        }
        finally { Marshal.FreeCoTaskMem(utf8); }
    }

    /// <summary>Sets <paramref name="name"/> unless it is already set (in the native or the managed environment); true when it was set here.</summary>
    public static bool SetIfUnset(string name, string value)
    {
        if (Get(name) is not null || Environment.GetEnvironmentVariable(name) is not null) return false;
        Environment.SetEnvironmentVariable(name, value);
        if (Functions.Value.Set == 0) return true;
        nint n = Marshal.StringToCoTaskMemUTF8(name), v = Marshal.StringToCoTaskMemUTF8(value);
        try { return ((delegate* unmanaged<nint, nint, int, int>)Functions.Value.Set)(n, v, 0) == 0; }
        finally
        {
            Marshal.FreeCoTaskMem(n);
            Marshal.FreeCoTaskMem(v);
        }
    }
}
