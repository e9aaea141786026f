using FlashAttention.Cuda.Launchers;

namespace FlashAttention.Tests.Cuda;

/// <summary>
/// The attention kernels against the float64 CPU reference, on a GPU machine (skipped elsewhere with the reason):
/// the device primitives first, then the quick forward and backward grids of <c>flashattn verify</c>, and the state
/// kept per stream.
/// </summary>
public class GpuAttentionTests
{
    [HopperFact]
    public void Device_primitives_match_the_cpu()
    {
        foreach (var r in PrimitiveProbes.RunAll(GpuAvailability.Device, seed: 20261125))
            Assert.True(r.Passed, $"{r.Name}: error {r.Error} > {r.Tolerance} ({r.Proves})");
    }

    [HopperFact]
    public void Forward_and_backward_match_the_reference_on_the_quick_grid()
    {
        int seed = 20261125;
        foreach (var c in VerifyGrids.Forward(quick: true).Concat(VerifyGrids.Backward(quick: true)))
            foreach (var r in GpuAttentionVerifier.Run(c, GpuAvailability.Device, seed++))
                Assert.True(r.Passed, $"{c} {r.Quantity}: error {r.Error} > tolerance {r.Tolerance} {r.Note}");
    }

    [HopperFact]
    public void Decode_primitives_match_the_cpu()
    {
        foreach (var r in DecodeProbes.RunAll(GpuAvailability.Device, seed: 20261205))
            Assert.True(r.Passed, $"{r.Name}: error {r.Error} > {r.Tolerance} ({r.Proves})");
    }

    [HopperFact]
    public void Kv_cache_attention_matches_the_oracle_on_the_quick_grid()
    {
        int seed = 20261205;
        foreach (var c in KvCacheGrids.Cases(quick: true))
            foreach (var r in GpuKvCacheVerifier.Run(c, GpuAvailability.Device, seed++))
                Assert.True(r.Passed, $"{c} {r.Quantity}: error {r.Error} > tolerance {r.Tolerance} {r.Note}");
    }

    [HopperFact]
    public void Streams_get_their_own_scratch_memory_and_free_it_when_disposed()
    {
        foreach (var r in StreamChecks.RunAll(GpuAvailability.Device, seed: 20261201))
            Assert.True(r.Passed, $"{r.Name}: {r.Error} ({r.Proves})");
    }
}
