using System.Diagnostics;
using FlashAttention.Tests.Cuda;
using FlashAttention.Tests.Support;

namespace FlashAttention.Tests.Cli;

/// <summary>
/// <c>flashattn warmup</c> with a kernel cache it cannot write fails before compiling anything: exit 1 and one line
/// saying why, nothing on standard output. Run as a child process because the cache folder comes from
/// FLASHATTN_CACHE_DIR, read once per process; no NVRTC is needed, as the folder is checked first.
/// </summary>
public sealed class WarmupCacheTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static (int Code, string Out, string Err) Warmup(string cacheDirectory)
    {
        string cli = Path.Join(AppContext.BaseDirectory, "flashattn.dll");
        var start = new ProcessStartInfo(DotnetHost.Path, ["exec", cli, "warmup", "--filter", "fwd bf16 d64"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["FLASHATTN_CACHE_DIR"] = cacheDirectory;
        return DotnetHost.Run(start);
    }

    private static void AssertFailsInOneLine((int Code, string Out, string Err) r, string reason)
    {
        Assert.True(r.Code == 1, $"exit {r.Code}; stderr: {r.Err}");
        string[] lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length == 1, $"expected one line; stderr: {r.Err}");
        Assert.StartsWith("error: the kernel cache folder ", lines[0]);
        Assert.Contains(reason, lines[0]);
        Assert.Contains("warmup would cache nothing (set FLASHATTN_CACHE_DIR to a writable folder)", lines[0]);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void A_file_in_the_cache_folders_place_fails_warmup_in_one_line()
    {
        string file = Path.Join(_dir.Path, "not-a-folder");
        File.WriteAllText(file, "x");
        AssertFailsInOneLine(Warmup(file), "a file is in the folder's place");
    }

    [Fact]
    public void A_cache_folder_that_cannot_be_created_fails_warmup_in_one_line()
    {
        string file = Path.Join(_dir.Path, "not-a-folder");
        File.WriteAllText(file, "x");
        AssertFailsInOneLine(Warmup(Path.Join(file, "cache")), "the folder cannot be created");
    }

    [UnprivilegedFact]
    public void A_read_only_cache_folder_fails_warmup_in_one_line()
    {
        string folder = Path.Join(_dir.Path, "read-only");
        Directory.CreateDirectory(folder);
        File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            AssertFailsInOneLine(Warmup(folder), "permission denied");
        }
        finally
        {
            File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }
}
