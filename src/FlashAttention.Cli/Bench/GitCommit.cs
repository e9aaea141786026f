using System.Reflection;

namespace FlashAttention.Cli.Bench;

/// <summary>
/// The commit results are recorded against: <c>FLASHATTN_COMMIT</c> when set (scripts/device-check.sh sets it from the
/// COMMIT file published beside the binary), else the commit stamped into this binary when it was built
/// (Directory.Build.targets: <c>git rev-parse --short HEAD</c>, <c>-dirty</c> when src/ differed from it), else "unknown".
/// Never the git HEAD of the current folder: the binary may run inside another repository.
/// </summary>
public static class GitCommit
{
    private static string? _cached;

    public static string Current() => _cached ??= Resolve();

    /// <summary>The commit stamped at build time ("unknown" when the build had no git).</summary>
    public static string Stamped { get; } =
        typeof(GitCommit).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == "SourceCommit")?.Value is { Length: > 0 } c
            ? c : "unknown";

    /// <summary>The package version this binary was built as (the informational version without its "+commit").</summary>
    public static string Version { get; } =
        typeof(GitCommit).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "unknown";

    private static string Resolve()
    {
        string? env = Environment.GetEnvironmentVariable("FLASHATTN_COMMIT");
        return string.IsNullOrWhiteSpace(env) ? Stamped : env.Trim();
    }
}
