using FlashAttention.Tests.Cli;

namespace FlashAttention.Tests.Examples;

/// <summary>The README's CPU example (examples/CpuAttention) runs as a program of its own and its figures hold.</summary>
public class ExampleTests
{
    [Fact]
    public void The_cpu_example_runs_and_matches_the_float64_reference()
    {
        string example = Path.Combine(AppContext.BaseDirectory, "CpuAttention.dll");
        var result = DotnetProcess.Run(TimeSpan.FromSeconds(120), example);
        Assert.True(result.ExitCode == 0, $"exit {result.ExitCode}\n{result.Out}\n{result.Err}");
        Assert.Contains("causal GQA attention on the CPU, b2 s512 h8/2 d64, fp32", result.Out);
        string[] lines = result.Out.Split('\n', StringSplitOptions.TrimEntries);
        foreach (string quantity in new[] { "O", "LSE", "dQ", "dK", "dV" })
            Assert.Contains(lines, l => l.StartsWith(quantity + " ", StringComparison.Ordinal) && l.Contains("max |float32 − float64| = "));
        Assert.Equal("", result.Err);
    }
}
