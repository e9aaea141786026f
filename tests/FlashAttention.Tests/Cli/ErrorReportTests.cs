using FlashAttention.Cli.Terminal;
using FlashAttention.Cuda;

namespace FlashAttention.Tests.Cli;

/// <summary>How a verb's failure becomes one error line and an exit code (<see cref="CommandActions.Report"/>).</summary>
public sealed class ErrorReportTests
{
    private static (int Code, string Err) Report(Exception e)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = CommandActions.Report(CliContext.For(output, error), e);
        return (code, error.ToString());
    }

    [Fact]
    public void A_missing_cuda_piece_is_device_unavailable_with_its_own_message()
    {
        var (code, err) = Report(new CudaUnavailableException(CudaUnavailableReason.NvrtcNotFound, "NVRTC 12.4 cannot load its builtins library"));
        Assert.Equal(ExitCodes.DeviceUnavailable, code);
        Assert.Equal("error: NVRTC 12.4 cannot load its builtins library", err.Trim());
    }

    [Fact]
    public void A_failure_inside_a_parallel_loop_is_reported_as_the_failure_itself()
    {
        // Parallel.For wraps what its body throws; the user should read the real error, not "AggregateException".
        var wrapped = new AggregateException(new AggregateException(new CudaUnavailableException(CudaUnavailableReason.NvrtcNotFound, "no builtins")));
        var (code, err) = Report(wrapped);
        Assert.Equal(ExitCodes.DeviceUnavailable, code);
        Assert.Equal("error: no builtins", err.Trim());

        (code, err) = Report(new AggregateException(new ArgumentException("--jobs: expected 1 or more")));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.DoesNotContain("Aggregate", err);
    }

    [Fact]
    public void A_bad_override_met_in_a_static_initializer_is_reported_as_itself()
    {
        var inner = new ArgumentException("FLASHATTN_FWD_CONFIG: '128:n96,s3,q2,xt' needs 247880 bytes of shared memory");
        var (code, err) = Report(new TypeInitializationException("FlashAttention.Cuda.Launchers.KernelCatalog", inner));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Equal("error: " + inner.Message, err.Trim());
    }
}
