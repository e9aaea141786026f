using FlashAttention.Tests.Support;

namespace FlashAttention.Tests.Cpu;

/// <summary>
/// The CPU engine's results do not depend on the number of cores (AttentionOptions.Deterministic's promise): the same
/// problem in two processes that see 1 and 8 processors (DOTNET_PROCESSOR_COUNT, read once at start-up) gives the same
/// bits for O, LSE, dQ, dK and dV, although the two run dQ in different schemes.
/// </summary>
public class CpuDeterminismTests
{
    [Fact]
    public void One_and_eight_processors_give_the_same_bits()
    {
        string one = CpuGradientDigest.InChildProcess(1);
        string eight = CpuGradientDigest.InChildProcess(8);
        Assert.StartsWith("O ", one);
        Assert.Equal(one, eight);
        Assert.Equal(one, CpuGradientDigest.Compute()); // and this process, with the machine's own core count
    }
}
