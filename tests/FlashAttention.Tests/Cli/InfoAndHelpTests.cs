using FlashAttention.Cli.Info;

namespace FlashAttention.Tests.Cli;

public class InfoAndHelpTests
{
    [Fact]
    public void FmaPeakMeasuresSomethingPositive()
    {
        var peak = FmaPeak.Measure(TimeSpan.FromMilliseconds(60));
        Assert.True(peak.GflopsPerSecond > 0);
        Assert.Equal(Environment.ProcessorCount, peak.Threads);
        Assert.Contains("GFLOP/s", peak.Describe());
    }

    [Fact]
    public void InfoPrintsTheSections()
    {
        using var h = new CliHarness();
        var result = h.Run("info", "--peak-seconds", "0.05");
        Assert.True(result.ExitCode == 0, result.Err);
        foreach (string s in new[] { "machine", ".NET", "cpu", "logical cores", "fp32 FMA peak", "GFLOP/s" })
            Assert.Contains(s, result.Out);
    }

    [Theory]
    [InlineData("info")]
    [InlineData("bench")]
    [InlineData("run")]
    [InlineData("report")]
    [InlineData("accuracy")]
    [InlineData("verify")]
    [InlineData("warmup")]
    public void EveryVerbHasHelpWithExamples(string verb)
    {
        using var h = new CliHarness();
        var result = h.Run(verb, "--help");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("Examples:", result.Out);
        Assert.Contains("flashattn " + verb, result.Out);
        Assert.Equal("", result.Err);
    }

    [Fact]
    public void UnknownVerbIsAUsageError()
    {
        using var h = new CliHarness();
        var result = h.Run("frobnicate");
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error:", result.Err);
    }
}
