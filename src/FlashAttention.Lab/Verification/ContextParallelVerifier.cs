using FlashAttention.Cuda;
using FlashAttention.Cuda.ContextParallel;
using FlashAttention.Numerics;

namespace FlashAttention.Lab.Verification;

/// <summary>One context-parallel check: ranks, mask, shape, strategy.</summary>
public sealed record ContextParallelCase(int Ranks, bool Causal, int SeqLen, int HeadsQ, int HeadsK, int HeadDim, ContextParallelStrategy Strategy)
{
    public override string ToString() => $"cp{Ranks} {Strategy} {(Causal ? "causal" : "full")} S={SeqLen} h{HeadsQ}/{HeadsK} d{HeadDim}";
}

/// <summary>
/// Context-parallel attention (forward O/LSE, backward dQ/dK/dV) against the same problem on one GPU, bf16, on fresh
/// random inputs. Simulated: N virtual ranks on device 0 exchanging by device copies (the whole schedule without NCCL);
/// otherwise N GPUs of this process over NCCL. Bound: the single-GPU result's own bf16 rounding, twice over (O: 2⁻⁷
/// of its largest value; gradients: 2⁻⁶; LSE: 10⁻³ absolute, float32 merges with approximate exp).
/// </summary>
public static class ContextParallelVerifier
{
    public static IEnumerable<ContextParallelCase> Grid(int ranks, bool quick)
    {
        foreach (var strategy in new[] { ContextParallelStrategy.Ring, ContextParallelStrategy.AllGather })
            foreach (bool causal in new[] { true, false })
            {
                yield return new(ranks, causal, 1024 * ranks + 77, 8, 2, 128, strategy);  // GQA, uneven chunks
                if (quick) continue;
                yield return new(ranks, causal, 512 * ranks, 4, 4, 64, strategy);
                yield return new(ranks, causal, 768 * ranks + 5, 4, 1, 256, strategy);
            }
    }

    /// <summary>Runs one case; returns a line per checked output and whether all passed.</summary>
    public static (bool Passed, List<string> Lines) Run(ContextParallelCase c, bool simulated, int seed)
    {
        var rng = new Random(seed);
        int s = c.SeqLen, n = c.Ranks;
        BFloat16[] Rand(int heads) => Enumerable.Range(0, s * heads * c.HeadDim).Select(_ => (BFloat16)(float)(rng.NextDouble() * 2 - 1)).ToArray();
        var (q, k, v, dO) = (Rand(c.HeadsQ), Rand(c.HeadsK), Rand(c.HeadsK), Rand(c.HeadsQ));
        var options = new AttentionOptions { Causal = c.Causal };
        var dev0 = CudaDevice.Get(0);

        // The single-GPU answer.
        using var gq = CudaTensor<BFloat16>.FromHost(q, [1, s, c.HeadsQ, c.HeadDim], dev0);
        using var gk = CudaTensor<BFloat16>.FromHost(k, [1, s, c.HeadsK, c.HeadDim], dev0);
        using var gv = CudaTensor<BFloat16>.FromHost(v, [1, s, c.HeadsK, c.HeadDim], dev0);
        using var gdo = CudaTensor<BFloat16>.FromHost(dO, [1, s, c.HeadsQ, c.HeadDim], dev0);
        using var go = new CudaTensor<BFloat16>(dev0, null, 1, s, c.HeadsQ, c.HeadDim);
        using var glse = new CudaTensor<float>(dev0, null, 1, c.HeadsQ, s);
        using var gdq = new CudaTensor<BFloat16>(dev0, null, 1, s, c.HeadsQ, c.HeadDim);
        using var gdk = new CudaTensor<BFloat16>(dev0, null, 1, s, c.HeadsK, c.HeadDim);
        using var gdv = new CudaTensor<BFloat16>(dev0, null, 1, s, c.HeadsK, c.HeadDim);
        CudaAttention.Forward(gq, gk, gv, go, glse, options);
        CudaAttention.Backward(gq, gk, gv, go, gdo, glse, gdq, gdk, gdv, options);
        var (refO, refLse, refDq, refDk, refDv) = (go.ToArray(), glse.ToArray(), gdq.ToArray(), gdk.ToArray(), gdv.ToArray());

        var communicators = simulated ? [] : NcclCommunicator.CreateAll(Enumerable.Range(0, n).Select(CudaDevice.Get).ToArray());
        using var group = simulated ? ContextParallelGroup.Simulated(dev0, n) : ContextParallelGroup.Create(communicators);
        var owned = new List<IDisposable>();
        try
        {
            var shards = new List<ContextParallelShard>();
            var grads = new List<ContextParallelGradients>();
            var rows = new List<int[]>();
            foreach (int r in group.LocalRanks)
            {
                var dev = group.DeviceOf(r);
                var (a, b) = ContextParallelLayout.Shard(s, n, r);
                int[] mine = [.. Enumerable.Range(a.Start, a.Length), .. Enumerable.Range(b.Start, b.Length)];
                rows.Add(mine);
                CudaTensor<T> Up<T>(T[] x, int heads) where T : unmanaged => Own(CudaTensor<T>.FromHost(Take(x, s, heads * c.HeadDim, mine), [1, mine.Length, heads, c.HeadDim], dev));
                CudaTensor<T> New<T>(params long[] lengths) where T : unmanaged => Own(new CudaTensor<T>(dev, null, lengths));
                var stream = Own(new CudaStream(dev));
                shards.Add(new ContextParallelShard(r, Up(q, c.HeadsQ), Up(k, c.HeadsK), Up(v, c.HeadsK), New<BFloat16>(1, mine.Length, c.HeadsQ, c.HeadDim),
                    New<float>(1, c.HeadsQ, mine.Length), stream));
                grads.Add(new ContextParallelGradients(Up(dO, c.HeadsQ), New<BFloat16>(1, mine.Length, c.HeadsQ, c.HeadDim),
                    New<BFloat16>(1, mine.Length, c.HeadsK, c.HeadDim), New<BFloat16>(1, mine.Length, c.HeadsK, c.HeadDim)));
            }
            ContextParallelAttention.Forward(group, shards, s, options, c.Strategy);
            ContextParallelAttention.Backward(group, shards, grads, s, options, c.Strategy);
            foreach (var sh in shards) sh.Stream.Synchronize();

            double eO = 0, eLse = 0, eDq = 0, eDk = 0, eDv = 0;
            for (int i = 0; i < shards.Count; i++)
            {
                var mine = rows[i];
                var dev = shards[i].Stream.Device;
                eO = Math.Max(eO, MaxDiff(Download<BFloat16>(shards[i].Output, dev), Take(refO, s, c.HeadsQ * c.HeadDim, mine)));
                eLse = Math.Max(eLse, MaxDiff(Download<float>(shards[i].LogSumExp, dev), TakeLse(refLse, s, c.HeadsQ, mine)));
                eDq = Math.Max(eDq, MaxDiff(Download<BFloat16>(grads[i].QueryGradient, dev), Take(refDq, s, c.HeadsQ * c.HeadDim, mine)));
                eDk = Math.Max(eDk, MaxDiff(Download<BFloat16>(grads[i].KeyGradient, dev), Take(refDk, s, c.HeadsK * c.HeadDim, mine)));
                eDv = Math.Max(eDv, MaxDiff(Download<BFloat16>(grads[i].ValueGradient, dev), Take(refDv, s, c.HeadsK * c.HeadDim, mine)));
            }
            var checks = new (string Name, double Err, double Bound)[]
            {
                ("O", eO, Math.ScaleB(MaxAbs(refO), -7)), ("LSE", eLse, 1e-3),
                ("dQ", eDq, Math.ScaleB(MaxAbs(refDq), -6)), ("dK", eDk, Math.ScaleB(MaxAbs(refDk), -6)), ("dV", eDv, Math.ScaleB(MaxAbs(refDv), -6)),
            };
            var lines = checks.Select(x => $"{c} {x.Name}: max |cp − one GPU| {x.Err:g3} (bound {x.Bound:g3}) {(x.Err <= x.Bound ? "ok" : "FAIL")}").ToList();
            return (checks.All(x => x.Err <= x.Bound), lines);
        }
        finally
        {
            foreach (var d in owned) d.Dispose();
            foreach (var comm in communicators) comm.Dispose();
        }

        T Own<T>(T x) where T : IDisposable { owned.Add(x); return x; }
    }

    private static T[] Download<T>(DeviceTensor t, CudaDevice device) where T : unmanaged
    {
        var bytes = new byte[t.ElementCount * DataTypes.SizeOf(t.Type)];
        DeviceBuffer.CopyToHost(device, t.Pointer, bytes);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(bytes).ToArray();
    }

    private static T[] Take<T>(T[] x, int s, int rowSize, int[] rows)
    {
        var y = new T[rows.Length * rowSize];
        for (int i = 0; i < rows.Length; i++) Array.Copy(x, (long)rows[i] * rowSize, y, (long)i * rowSize, rowSize);
        return y;
    }

    private static float[] TakeLse(float[] lse, int s, int heads, int[] rows)
    {
        var y = new float[heads * rows.Length];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < rows.Length; i++) y[h * rows.Length + i] = lse[h * s + rows[i]];
        return y;
    }

    private static double MaxDiff(BFloat16[] a, BFloat16[] b) => a.Zip(b).Max(p => Math.Abs((double)(float)p.First - (float)p.Second));
    private static double MaxDiff(float[] a, float[] b) => a.Zip(b).Max(p => Math.Abs((double)p.First - p.Second));
    private static double MaxAbs(BFloat16[] a) => a.Max(x => Math.Abs((double)(float)x));
}
