using System.Diagnostics;

namespace FlashAttention.Cli.Bench;

/// <summary>
/// The commit results are recorded against: <c>FLASHATTN_COMMIT</c> when set (the GPU machine has a copy of the tree,
/// not the repository), else <c>git rev-parse --short HEAD</c> in the current directory (with <c>-dirty</c> when tracked
/// files have changes), else "unknown".
/// </summary>
public static class GitCommit
{
    private static string? _cached;

    public static string Current() => _cached ??= Resolve();

    private static string Resolve()
    {
        string? env = Environment.GetEnvironmentVariable("FLASHATTN_COMMIT");
        if (!string.IsNullOrWhiteSpace(env)) return env.Trim();
        string? head = Git("rev-parse --short HEAD");
        if (string.IsNullOrEmpty(head)) return "unknown";
        string? status = Git("status --porcelain --untracked-files=no");
        return string.IsNullOrEmpty(status) ? head : head + "-dirty";
    }

    private static string? Git(string arguments)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo("git", arguments)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            });
            if (process is null) return null;
            var output = process.StandardOutput.ReadToEndAsync();
            if (!process.WaitForExit(3000)) { try { process.Kill(); } catch (InvalidOperationException) { } return null; }
            return process.ExitCode == 0 ? output.Result.Trim() : null;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
        {
            return null; // no git on this machine
        }
    }
}
