using FlashAttention.Cuda.Launchers;
using FlashAttention.Numerics;

using FlashAttention.Cuda;
using FlashAttention.Lab.Probes;

namespace FlashAttention.Lab.Verification;

/// <summary>
/// Checks the state the launchers keep per stream (the forward's tile counters, the backward's workspace): work
/// queued on two streams at once, neither waited for before the other is queued, must give bit for bit what the
/// default stream gives (shared scratch memory would be a race), each stream must get its own state, and disposing
/// a stream must free it.
/// </summary>
internal static class StreamChecks
{
    public static List<ProbeResult> RunAll(CudaDevice device, int seed)
    {
        // Causal with ragged lengths: the forward's dynamic (counter-based) schedule; deterministic: gradients comparable bit for bit.
        const int batch = 2, seqLen = 1000, headsQ = 4, headsK = 2, headDim = 128;
        var options = new AttentionOptions { Causal = true, Deterministic = true };
        long[] qShape = [batch, seqLen, headsQ, headDim], kShape = [batch, seqLen, headsK, headDim], lseShape = [batch, headsQ, seqLen];
        var rng = new Random(seed);
        var q = GpuAttentionVerifier.RandomNormal<BFloat16>(qShape, rng);
        var k = GpuAttentionVerifier.RandomNormal<BFloat16>(kShape, rng);
        var v = GpuAttentionVerifier.RandomNormal<BFloat16>(kShape, rng);
        var dO = GpuAttentionVerifier.RandomNormal<BFloat16>(qShape, rng);
        using var tq = CudaTensor<BFloat16>.FromHost(q, qShape, device);
        using var tk = CudaTensor<BFloat16>.FromHost(k, kShape, device);
        using var tv = CudaTensor<BFloat16>.FromHost(v, kShape, device);
        using var tdO = CudaTensor<BFloat16>.FromHost(dO, qShape, device);

        // One set of outputs per run, poisoned (NaN) so an element left unwritten cannot pass.
        CudaTensor<BFloat16>[] Outputs() =>
        [
            new(device, null, qShape), new(device, null, qShape), new(device, null, kShape), new(device, null, kShape),
        ];
        void Queue(CudaTensor<BFloat16>[] o, CudaTensor<float> lse, CudaStream? stream)
        {
            // On the stream: a plain fill goes to the legacy stream, which non-blocking streams do not wait for.
            foreach (var t in o) t.Buffer.Fill(0xFF, stream);
            lse.Buffer.Fill(0xFF, stream);
            CudaAttention.Forward(tq, tk, tv, o[0], lse, options, stream, device);
            CudaAttention.Backward(tq, tk, tv, o[0], tdO, lse, o[1], o[2], o[3], options, stream, device);
        }
        static byte[][] Bits(CudaTensor<BFloat16>[] o) => [.. o.Select(t => GpuAttentionVerifier.Bits(t.ToArray()))];
        static int Differing(byte[][] a, byte[][] b)
        {
            int n = 0;
            for (int i = 0; i < a.Length; i++)
                for (int j = 0; j < a[i].Length; j += 2)
                    if (a[i][j] != b[i][j] || a[i][j + 1] != b[i][j + 1]) n++;
            return n;
        }

        var results = new List<ProbeResult>();
        var reference = Outputs();
        using var referenceLse = new CudaTensor<float>(device, null, lseShape);
        Queue(reference, referenceLse, null);
        device.Synchronize();
        var expected = Bits(reference);
        int nanOutputs = expected.Sum(a => CountNaN(a));
        results.Add(new("streams default-stream run", "the check's own reference: forward + deterministic backward on the legacy stream wrote every element",
            nanOutputs, 0, nanOutputs == 0));

        int workspacesBefore = FlashBackwardLauncher.Workspace.Workspaces.Count(device);
        int countersBefore = TileCounters.Counters.Count(device);
        var outputs = new[] { Outputs(), Outputs() };
        var lses = new[] { new CudaTensor<float>(device, null, lseShape), new CudaTensor<float>(device, null, lseShape) };
        var streams = new[] { new CudaStream(device), new CudaStream(device) };
        try
        {
            Queue(outputs[0], lses[0], streams[0]);
            Queue(outputs[1], lses[1], streams[1]);
            foreach (var s in streams) s.Synchronize();
            for (int i = 0; i < 2; i++)
            {
                int differing = Differing(expected, Bits(outputs[i]));
                results.Add(new($"streams concurrent run {i + 1} of 2", "two streams at once give the default stream's O, dQ, dK, dV bit for bit (their scratch memory is not shared)",
                    differing, 0, differing == 0));
            }
            int workspacesAdded = FlashBackwardLauncher.Workspace.Workspaces.Count(device) - workspacesBefore;
            int countersAdded = TileCounters.Counters.Count(device) - countersBefore;
            bool dynamic = countersAdded > 0;  // the lab can force the fixed-stride schedule (FLASHATTN_FWD_SCHEDULE, TuningPolicy)
            results.Add(new("streams state per stream", "each new stream got its own backward workspace (and tile counters, under the dynamic schedule)",
                Math.Abs(workspacesAdded - 2) + (dynamic ? Math.Abs(countersAdded - 2) : 0), 0, workspacesAdded == 2 && (!dynamic || countersAdded == 2)));
        }
        finally
        {
            foreach (var s in streams) s.Dispose();
            foreach (var o in outputs) foreach (var t in o) t.Dispose();
            foreach (var l in lses) l.Dispose();
            foreach (var t in reference) t.Dispose();
        }
        int workspacesLeft = FlashBackwardLauncher.Workspace.Workspaces.Count(device) - workspacesBefore;
        int countersLeft = TileCounters.Counters.Count(device) - countersBefore;
        results.Add(new("streams state freed on dispose", "disposing a stream released its workspace and tile counters",
            workspacesLeft + countersLeft, 0, workspacesLeft == 0 && countersLeft == 0));
        return results;
    }

    private static int CountNaN(byte[] bf16)
    {
        int n = 0;
        for (int j = 0; j < bf16.Length; j += 2)
        {
            ushort bits = (ushort)(bf16[j] | bf16[j + 1] << 8);
            if ((bits & 0x7F80) == 0x7F80 && (bits & 0x7F) != 0) n++;
        }
        return n;
    }
}
