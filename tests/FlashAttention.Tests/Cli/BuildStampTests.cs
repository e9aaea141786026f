using System.Diagnostics;
using System.Text.RegularExpressions;
using FlashAttention.Cli.Bench;

namespace FlashAttention.Tests.Cli;

/// <summary>
/// The commit and version are stamped into the binary at build time (Directory.Build.targets), so <c>info</c> and bench
/// JSON name the binary's commit wherever it runs, not the git HEAD of the current folder.
/// </summary>
public sealed class BuildStampTests : IDisposable
{
    private readonly CliHarness _h = new();

    public void Dispose() => _h.Dispose();

    [Fact]
    public void The_stamp_is_the_short_head_of_the_tree_that_was_built()
    {
        Assert.Matches(@"^\d+\.\d+\.\d+", GitCommit.Version);
        string? repository = RepositoryRoot();
        if (repository is null || Git(repository, "rev-parse --short HEAD") is not { } head) return; // built without git: "unknown" is right
        Assert.Matches("^[0-9a-f]{7,}(-dirty)?$", GitCommit.Stamped);
        Assert.Equal(head, GitCommit.Stamped.Replace("-dirty", ""));
    }

    [Fact]
    public void Info_run_inside_another_repository_reports_the_binarys_commit()
    {
        if (Environment.GetEnvironmentVariable("FLASHATTN_COMMIT") is { Length: > 0 }) return; // the override wins, by design
        if (Git(_h.Directory, "init -q") is null) return; // no git here
        File.WriteAllText(_h.PathOf("file.txt"), "another project");
        Git(_h.Directory, "add file.txt");
        Assert.NotNull(Git(_h.Directory, "-c user.name=t -c user.email=t@t -c commit.gpgsign=false commit -q -m other"));
        string other = Git(_h.Directory, "rev-parse --short HEAD")!;

        var result = DotnetProcess.RunIn(_h.Directory, TimeSpan.FromSeconds(60), typeof(FlashAttention.Cli.Program).Assembly.Location, "info", "--peak-seconds", "0");
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Matches($@"commit\s+{Regex.Escape(GitCommit.Stamped)}\n", result.Out.Replace("\r", ""));
        Assert.DoesNotContain(other, result.Out);
        Assert.Matches($@"flashattn\s+{Regex.Escape(GitCommit.Version)}\n", result.Out.Replace("\r", ""));
    }

    [Fact]
    public void Bench_rows_carry_the_stamp()
    {
        if (Environment.GetEnvironmentVariable("FLASHATTN_COMMIT") is { Length: > 0 }) return;
        string json = _h.PathOf("cpu.json");
        var result = _h.Run("bench", "--device", "cpu", "--seqlen", "16", "--hdim", "8", "--heads", "1", "--forward", "--warmup", "0",
            "--repeats", "1", "--peak-gflops", "100", "--json", json);
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Equal(GitCommit.Stamped, BenchJson.Load(json).Rows.Single().Commit);
    }

    private static string? RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Path.Exists(Path.Combine(dir.FullName, ".git"))) return dir.FullName;
        return null;
    }

    private static string? Git(string directory, string arguments)
    {
        try
        {
            var info = new ProcessStartInfo("git", arguments) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
            using var process = Process.Start(info)!;
            string output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return process.ExitCode == 0 ? output.Trim() : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
