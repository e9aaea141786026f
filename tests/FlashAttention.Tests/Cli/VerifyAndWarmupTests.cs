using FlashAttention.Cli.Terminal;

namespace FlashAttention.Tests.Cli;

public sealed class VerifyAndWarmupTests : IDisposable
{
    private readonly CliHarness _h = new();

    public void Dispose() => _h.Dispose();

    [Fact]
    public void Verify_on_the_cpu_checks_every_quantity_and_passes()
    {
        var result = _h.Run("verify", "--device", "cpu", "--quick", "--seed", "7");
        Assert.True(result.ExitCode == ExitCodes.Ok, result.Out + result.Err);
        Assert.Contains("verify on cpu, seed 7", result.Out);
        Assert.Contains("0 failed", result.Out);
        foreach (string q in new[] { " O ", " LSE ", " dQ ", " dK ", " dV " }) Assert.Contains(q, result.Out);
        Assert.DoesNotContain("FAIL", result.Out);
    }

    [Fact]
    public void Verify_filter_that_matches_nothing_is_invalid_input()
    {
        var result = _h.Run("verify", "--device", "cpu", "--quick", "--filter", "nosuchcase");
        result.AssertOneLineError(ExitCodes.InvalidInput, "--filter 'nosuchcase': matches none of the", "expected text from a case's description");
        Assert.Equal("", result.Out);
    }

    [Fact]
    public void Verify_filter_keeps_the_matching_cases()
    {
        var result = _h.Run("verify", "--device", "cpu", "--quick", "--forward", "--filter", "causal", "--seed", "3");
        Assert.True(result.ExitCode == ExitCodes.Ok, result.Out + result.Err);
        var checks = result.Out.Split('\n').Where(l => l.StartsWith("PASS") || l.StartsWith("FAIL")).ToList();
        Assert.NotEmpty(checks);
        Assert.All(checks, l => Assert.Contains("causal", l));
    }

    [FlashAttention.Tests.Cuda.WithoutGpuFact]
    public void Verify_on_cuda_without_a_gpu_exits_with_three()
    {
        _h.Run("verify", "--device", "cuda").AssertOneLineError(ExitCodes.DeviceUnavailable, "--device cuda: not usable here:");
    }

    [Fact]
    public void Verify_decode_is_a_gpu_check_that_stands_alone()
    {
        _h.Run("verify", "--device", "cpu", "--decode").AssertOneLineError(ExitCodes.InvalidInput, "--decode: the decode family's checks are GPU checks");
        _h.Run("verify", "--device", "cpu", "--decode", "--forward").AssertOneLineError(ExitCodes.InvalidInput, "leave out --forward and --backward");
    }

    [FlashAttention.Tests.Cuda.WithoutNvrtcFact]
    public void Warmup_without_nvrtc_says_what_to_install()
    {
        _h.Run("warmup").AssertOneLineError(ExitCodes.DeviceUnavailable, "NVRTC");
    }
}
