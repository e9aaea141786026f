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
    public void Verify_filter_that_matches_nothing_runs_nothing()
    {
        var result = _h.Run("verify", "--device", "cpu", "--quick", "--filter", "no such case");
        Assert.Equal(ExitCodes.Ok, result.ExitCode);
        Assert.Contains("0 passed, 0 failed", result.Out);
    }

    [Fact]
    public void Verify_on_cuda_without_a_gpu_exits_with_three()
    {
        if (FlashAttention.Cuda.CudaEnvironment.Probe().IsUsable) return; // a GPU machine: the check would run
        _h.Run("verify", "--device", "cuda").AssertOneLineError(ExitCodes.DeviceUnavailable, "--device cuda: not usable here:");
    }

    [Fact]
    public void Verify_decode_is_a_gpu_check_that_stands_alone()
    {
        _h.Run("verify", "--device", "cpu", "--decode").AssertOneLineError(ExitCodes.InvalidInput, "--decode: the decode family's checks are GPU checks");
        _h.Run("verify", "--device", "cpu", "--decode", "--forward").AssertOneLineError(ExitCodes.InvalidInput, "leave out --forward and --backward");
    }

    [Fact]
    public void Warmup_without_nvrtc_says_what_to_install()
    {
        if (FlashAttention.Cuda.CudaEnvironment.Probe().NvrtcFound) return; // NVRTC present: warmup would compile
        _h.Run("warmup").AssertOneLineError(ExitCodes.DeviceUnavailable, "NVRTC");
    }
}
