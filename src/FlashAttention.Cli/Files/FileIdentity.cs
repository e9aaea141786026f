using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace FlashAttention.Cli.Files;

/// <summary>
/// Whether two paths name the same file: the same (device, inode) on Linux and macOS, the same (volume, file index) on
/// Windows, so relative paths, symbolic links (of the file or of a folder above it), hard links and case-insensitive
/// names are all caught. Where the operating system cannot be asked, the paths are compared after resolving them.
/// </summary>
internal static partial class FileIdentity
{
    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> are one file (for paths that do not exist yet: the same path).</summary>
    public static bool Same(string a, string b)
    {
        if (File.Exists(a) && File.Exists(b) && TryGet(a, out var ia) && TryGet(b, out var ib)) return ia == ib;
        return string.Equals(Resolve(a), Resolve(b), OperatingSystem.IsLinux() ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The full path with a symbolic link in its last component followed (the fallback identity).</summary>
    private static string Resolve(string path)
    {
        string full = Path.GetFullPath(path);
        try
        {
            if (File.ResolveLinkTarget(full, returnFinalTarget: true) is { } target) return Path.GetFullPath(target.FullName);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return full;
    }

    private static bool TryGet(string path, out (ulong Device, ulong File) id)
    {
        id = default;
        try
        {
            if (OperatingSystem.IsLinux()) return LinuxStatx(path, out id);
            if (OperatingSystem.IsMacOS()) return MacStat(path, out id);
            if (OperatingSystem.IsWindows()) return WindowsFileId(path, out id);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or IOException or UnauthorizedAccessException) { }
        return false;
    }

    // struct statx has one layout on every Linux architecture: stx_ino at 0x20, stx_dev_major/minor at 0x88/0x8C.
    private static unsafe bool LinuxStatx(string path, out (ulong, ulong) id)
    {
        const int AtFdCwd = -100, StatxIno = 0x100;
        byte* buffer = stackalloc byte[256];
        id = default;
        if (Statx(AtFdCwd, path, 0, StatxIno, buffer) != 0) return false;
        id = (((ulong)*(uint*)(buffer + 0x88) << 32) | *(uint*)(buffer + 0x8C), *(ulong*)(buffer + 0x20));
        return true;
    }

    // Darwin's 64-bit-inode struct stat: st_dev (int32) at 0, st_ino (uint64) at 8; x86-64 names it stat$INODE64.
    private static unsafe bool MacStat(string path, out (ulong, ulong) id)
    {
        byte* buffer = stackalloc byte[256];
        id = default;
        int rc = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? StatInode64(path, buffer) : Stat(path, buffer);
        if (rc != 0) return false;
        id = ((uint)*(int*)buffer, *(ulong*)(buffer + 8));
        return true;
    }

    private static unsafe bool WindowsFileId(string path, out (ulong, ulong) id)
    {
        id = default;
        using SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        // BY_HANDLE_FILE_INFORMATION: dwVolumeSerialNumber at 28, nFileIndexHigh at 44, nFileIndexLow at 48.
        byte* info = stackalloc byte[52];
        if (!GetFileInformationByHandle(handle, info)) return false;
        id = (*(uint*)(info + 28), ((ulong)*(uint*)(info + 44) << 32) | *(uint*)(info + 48));
        return true;
    }

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Stat(string path, byte* buffer);

    [LibraryImport("libc", EntryPoint = "stat$INODE64", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatInode64(string path, byte* buffer);

    [LibraryImport("kernel32.dll", SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static unsafe partial bool GetFileInformationByHandle(SafeFileHandle file, byte* information);
}
