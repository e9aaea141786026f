using System.Diagnostics;

namespace FlashAttention.Tests.Cli;

/// <summary>Starts a built .NET program (flashattn.dll, an example) as a process of its own, through the dotnet host running the tests.</summary>
public static class DotnetProcess
{
    /// <summary>The dotnet host: the one <c>dotnet test</c> names, else this process's when it is dotnet, else dotnet on the PATH.</summary>
    public static string Host =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host
        : Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath! : "dotnet";

    /// <summary>Starts <paramref name="assembly"/> with <paramref name="args"/>, output captured.</summary>
    public static Process Start(string assembly, params string[] args) => StartIn(null, assembly, args);

    /// <summary>Starts <paramref name="assembly"/> in <paramref name="workingDirectory"/> (null: this process's), output captured.</summary>
    public static Process StartIn(string? workingDirectory, string assembly, params string[] args)
    {
        var info = new ProcessStartInfo(Host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (workingDirectory is not null) info.WorkingDirectory = workingDirectory;
        info.ArgumentList.Add("exec");
        info.ArgumentList.Add(assembly);
        foreach (string a in args) info.ArgumentList.Add(a);
        info.Environment["NO_COLOR"] = "1";
        return Process.Start(info) ?? throw new InvalidOperationException($"could not start {Host} exec {assembly}");
    }

    /// <summary>Runs to the end (at most <paramref name="timeout"/>); returns the exit code and both outputs.</summary>
    public static CliResult Run(TimeSpan timeout, string assembly, params string[] args) => RunIn(null, timeout, assembly, args);

    /// <summary>As <see cref="Run"/>, in <paramref name="workingDirectory"/> (null: this process's).</summary>
    public static CliResult RunIn(string? workingDirectory, TimeSpan timeout, string assembly, params string[] args)
    {
        using var process = StartIn(workingDirectory, assembly, args);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{assembly} {string.Join(' ', args)} ran past {timeout.TotalSeconds} s");
        }
        return new CliResult(process.ExitCode, stdout.Result, stderr.Result);
    }
}
