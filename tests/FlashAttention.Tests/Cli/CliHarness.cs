using FlashAttention.Cli;

namespace FlashAttention.Tests.Cli;

/// <summary>Runs <c>flashattn</c> in-process with captured output, and gives each test its own temporary folder.</summary>
public sealed class CliHarness : IDisposable
{
    public CliHarness()
    {
        Directory = Path.Combine(Path.GetTempPath(), "flashattn-tests-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(Directory);
    }

    public string Directory { get; }

    public string PathOf(string name) => Path.Combine(Directory, name);

    public CliResult Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Program.Run(args, output, error);
        return new CliResult(code, output.ToString(), error.ToString());
    }

    /// <summary>Files in the folder (temporary leftovers included).</summary>
    public string[] Files() => System.IO.Directory.GetFiles(Directory).Select(Path.GetFileName).ToArray()!;

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}

public sealed record CliResult(int ExitCode, string Out, string Err)
{
    /// <summary>Non-empty lines of standard error.</summary>
    public string[] ErrLines => Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>Asserts a failure reported as exactly one "error: …" line (no stack trace) containing every fragment.</summary>
    public void AssertOneLineError(int exitCode, params string[] fragments)
    {
        Assert.True(ExitCode == exitCode, $"exit code {ExitCode}, expected {exitCode}; stderr: {Err}; stdout: {Out}");
        var errors = ErrLines.Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToArray();
        Assert.True(errors.Length == 1, $"expected one error line; stderr: {Err}");
        Assert.DoesNotContain("   at ", Err);
        Assert.DoesNotContain("Exception", errors[0]);
        foreach (string f in fragments) Assert.Contains(f, errors[0]);
    }
}
