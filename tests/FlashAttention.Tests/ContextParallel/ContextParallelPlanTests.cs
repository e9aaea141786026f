using System.Numerics.Tensors;
using FlashAttention.Cuda.ContextParallel;

namespace FlashAttention.Tests.ContextParallel;

/// <summary>
/// The zigzag layout and the ring/all-gather plans, proved on the CPU: every visible (query, key) pair is computed once
/// with the right mask, and the CPU engine run step by step (merged through the LSE forward, partial gradients summed
/// backward) equals attention over the whole sequence.
/// </summary>
public class ContextParallelPlanTests
{
    [Theory]
    [InlineData(16, 2)]
    [InlineData(19, 2)]
    [InlineData(37, 3)]
    [InlineData(8, 4)]
    public void Chunks_cover_the_sequence_and_differ_by_at_most_one_row(int seqLen, int ranks)
    {
        var chunks = ContextParallelLayout.Chunks(seqLen, ranks);
        Assert.Equal(2 * ranks, chunks.Length);
        Assert.Equal(0, chunks[0].Start);
        for (int c = 1; c < chunks.Length; c++) Assert.Equal(chunks[c - 1].End, chunks[c].Start);
        Assert.Equal(seqLen, chunks[^1].End);
        Assert.True(chunks.Max(c => c.Length) - chunks.Min(c => c.Length) <= 1);
        Assert.Equal(seqLen, Enumerable.Range(0, ranks).Sum(r => ContextParallelLayout.ShardLength(seqLen, ranks, r)));
        Assert.Equal((chunks[1], chunks[2 * ranks - 2]), ContextParallelLayout.Shard(seqLen, ranks, 1));
    }

    [Fact]
    public void Too_short_a_sequence_is_refused_by_name()
    {
        var e = Assert.Throws<AttentionArgumentException>(() => ContextParallelLayout.Chunks(5, 3));
        Assert.Contains("seqLen", e.Message);
        Assert.Contains("at least 6", e.Message);
    }

    [Theory]
    [InlineData(16, 1, true)]
    [InlineData(16, 2, true)]
    [InlineData(19, 2, true)]
    [InlineData(37, 3, true)]
    [InlineData(29, 4, true)]
    [InlineData(21, 3, false)]
    public void Ring_steps_cover_every_visible_pair_once_and_no_other(int seqLen, int ranks, bool causal)
    {
        var seen = new int[seqLen, seqLen];
        for (int r = 0; r < ranks; r++)
        {
            var mine = Positions(seqLen, ranks, r);
            foreach (var step in RingPlan.Steps(seqLen, ranks, r, causal))
            {
                var theirs = Positions(seqLen, ranks, step.Source);
                for (int i = step.Queries.Start; i < step.Queries.End; i++)
                    for (int j = step.Keys.Start; j < step.Keys.End; j++)
                        if (!step.Causal || j <= i) seen[mine[i], theirs[j]]++;  // the causal step is causal in shard order
            }
        }
        for (int q = 0; q < seqLen; q++)
            for (int k = 0; k < seqLen; k++)
                Assert.True(seen[q, k] == (!causal || k <= q ? 1 : 0), $"query {q}, key {k}: computed {seen[q, k]} times");
    }

    [Theory]
    [InlineData(19, 2)]
    [InlineData(29, 4)]
    public void Gathered_keys_under_bottom_right_alignment_are_exactly_the_causal_ones(int seqLen, int ranks)
    {
        foreach (var chunk in ContextParallelLayout.Chunks(seqLen, ranks))
        {
            var keys = RingPlan.GatheredKeys(chunk, seqLen, causal: true);
            for (int i = 0; i < chunk.Length; i++)
            {
                int lastVisible = i + (keys.Length - chunk.Length);  // bottom-right alignment: row i sees keys ≤ i + Sk − Sq
                Assert.Equal(chunk.Start + i, keys.Start + lastVisible);
            }
        }
    }

    [Theory]
    [InlineData(2, true, 4, 4)]
    [InlineData(3, true, 4, 2)]
    [InlineData(4, true, 4, 1)]
    [InlineData(2, false, 2, 2)]
    [InlineData(3, false, 4, 1)]
    public void Cpu_ring_equals_whole_sequence_attention_forward_and_backward(int ranks, bool causal, int headsQ, int headsK)
    {
        const int batch = 2, d = 16;
        int seqLen = 8 * ranks + 3;  // uneven chunks
        var rng = new Random(ranks * 31 + headsK);
        float[] Rand(int heads) => Enumerable.Range(0, batch * seqLen * heads * d).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var (q, k, v, dO) = (Rand(headsQ), Rand(headsK), Rand(headsK), Rand(headsQ));
        var options = new AttentionOptions { Causal = causal };
        var all = Enumerable.Range(0, seqLen).ToArray();
        var (o, lse) = Fwd(q, k, v, batch, seqLen, seqLen, headsQ, headsK, d, options);
        var (dq, dk, dv) = Bwd(q, k, v, o, dO, lse, batch, seqLen, seqLen, headsQ, headsK, d, options);

        var dqSum = new double[dq.Length];
        var dkSum = new double[dk.Length];
        var dvSum = new double[dv.Length];
        for (int r = 0; r < ranks; r++)
        {
            var mine = Positions(seqLen, ranks, r);
            var accO = new double[batch * mine.Length * headsQ * d];
            var accLse = Enumerable.Repeat(double.NegativeInfinity, batch * headsQ * mine.Length).ToArray();
            foreach (var step in RingPlan.Steps(seqLen, ranks, r, causal))
            {
                var qRows = mine[step.Queries.Start..step.Queries.End];
                var kRows = Positions(seqLen, ranks, step.Source)[step.Keys.Start..step.Keys.End];
                var stepOptions = options with { Causal = step.Causal };
                var (qs, ks, vs) = (Take(q, batch, seqLen, headsQ, d, qRows), Take(k, batch, seqLen, headsK, d, kRows), Take(v, batch, seqLen, headsK, d, kRows));
                var (po, plse) = Fwd(qs, ks, vs, batch, qRows.Length, kRows.Length, headsQ, headsK, d, stepOptions);
                Merge(accO, accLse, po, plse, batch, mine.Length, step.Queries.Start, qRows.Length, headsQ, d);

                var (pdq, pdk, pdv) = Bwd(qs, ks, vs, Take(o, batch, seqLen, headsQ, d, qRows), Take(dO, batch, seqLen, headsQ, d, qRows),
                    TakeLse(lse, batch, seqLen, headsQ, qRows), batch, qRows.Length, kRows.Length, headsQ, headsK, d, stepOptions);
                Scatter(dqSum, pdq, batch, seqLen, headsQ, d, qRows);
                Scatter(dkSum, pdk, batch, seqLen, headsK, d, kRows);
                Scatter(dvSum, pdv, batch, seqLen, headsK, d, kRows);
            }
            var expectO = Take(o, batch, seqLen, headsQ, d, mine);
            var expectLse = TakeLse(lse, batch, seqLen, headsQ, mine);
            for (int i = 0; i < expectO.Length; i++) Assert.True(Math.Abs(accO[i] - expectO[i]) < 2e-5, $"rank {r} O[{i}]: {accO[i]} vs {expectO[i]}");
            for (int i = 0; i < expectLse.Length; i++) Assert.True(Math.Abs(accLse[i] - expectLse[i]) < 2e-5, $"rank {r} LSE[{i}]: {accLse[i]} vs {expectLse[i]}");
        }
        AssertClose(dq, dqSum, "dQ");
        AssertClose(dk, dkSum, "dK");
        AssertClose(dv, dvSum, "dV");
    }

    [Theory]
    [InlineData(2, 4, 1)]
    [InlineData(3, 4, 2)]
    public void Cpu_all_gather_chunks_equal_whole_sequence_attention(int ranks, int headsQ, int headsK)
    {
        const int batch = 1, d = 16;
        int seqLen = 6 * ranks + 5;
        var rng = new Random(ranks);
        float[] Rand(int heads) => Enumerable.Range(0, batch * seqLen * heads * d).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var (q, k, v) = (Rand(headsQ), Rand(headsK), Rand(headsK));
        var causal = new AttentionOptions { Causal = true };
        var (o, lse) = Fwd(q, k, v, batch, seqLen, seqLen, headsQ, headsK, d, causal);
        foreach (var chunk in ContextParallelLayout.Chunks(seqLen, ranks))
        {
            var rows = Enumerable.Range(chunk.Start, chunk.Length).ToArray();
            var keys = RingPlan.GatheredKeys(chunk, seqLen, causal: true);
            var keyRows = Enumerable.Range(keys.Start, keys.Length).ToArray();
            var (co, clse) = Fwd(Take(q, batch, seqLen, headsQ, d, rows), Take(k, batch, seqLen, headsK, d, keyRows), Take(v, batch, seqLen, headsK, d, keyRows),
                batch, rows.Length, keyRows.Length, headsQ, headsK, d, causal);
            AssertClose(Take(o, batch, seqLen, headsQ, d, rows), co.Select(x => (double)x).ToArray(), "O");
            AssertClose(TakeLse(lse, batch, seqLen, headsQ, rows), clse.Select(x => (double)x).ToArray(), "LSE");
        }
    }

    /// <summary>Global positions of rank <paramref name="rank"/>'s shard rows.</summary>
    private static int[] Positions(int seqLen, int ranks, int rank)
    {
        var (a, b) = ContextParallelLayout.Shard(seqLen, ranks, rank);
        return [.. Enumerable.Range(a.Start, a.Length), .. Enumerable.Range(b.Start, b.Length)];
    }

    private static (float[] O, float[] Lse) Fwd(float[] q, float[] k, float[] v, int b, int sq, int sk, int hq, int hk, int d, AttentionOptions options)
    {
        var o = new float[b * sq * hq * d];
        var lse = new float[b * hq * sq];
        Attention.Forward(new ReadOnlyTensorSpan<float>(q, [b, sq, hq, d], default), new ReadOnlyTensorSpan<float>(k, [b, sk, hk, d], default),
            new ReadOnlyTensorSpan<float>(v, [b, sk, hk, d], default), new TensorSpan<float>(o, [b, sq, hq, d], default), new TensorSpan<float>(lse, [b, hq, sq], default), options);
        return (o, lse);
    }

    private static (float[] Dq, float[] Dk, float[] Dv) Bwd(float[] q, float[] k, float[] v, float[] o, float[] dO, float[] lse,
        int b, int sq, int sk, int hq, int hk, int d, AttentionOptions options)
    {
        var (dq, dk, dv) = (new float[q.Length], new float[k.Length], new float[v.Length]);
        Attention.Backward(new ReadOnlyTensorSpan<float>(q, [b, sq, hq, d], default), new ReadOnlyTensorSpan<float>(k, [b, sk, hk, d], default),
            new ReadOnlyTensorSpan<float>(v, [b, sk, hk, d], default), new ReadOnlyTensorSpan<float>(o, [b, sq, hq, d], default),
            new ReadOnlyTensorSpan<float>(dO, [b, sq, hq, d], default), new ReadOnlyTensorSpan<float>(lse, [b, hq, sq], default),
            new TensorSpan<float>(dq, [b, sq, hq, d], default), new TensorSpan<float>(dk, [b, sk, hk, d], default), new TensorSpan<float>(dv, [b, sk, hk, d], default), options);
        return (dq, dk, dv);
    }

    private static float[] Take(float[] x, int b, int s, int h, int d, int[] rows)
    {
        var y = new float[b * rows.Length * h * d];
        for (int bi = 0; bi < b; bi++)
            for (int i = 0; i < rows.Length; i++)
                Array.Copy(x, ((long)bi * s + rows[i]) * h * d, y, ((long)bi * rows.Length + i) * h * d, h * d);
        return y;
    }

    private static float[] TakeLse(float[] lse, int b, int s, int h, int[] rows)
    {
        var y = new float[b * h * rows.Length];
        for (int bi = 0; bi < b; bi++)
            for (int hi = 0; hi < h; hi++)
                for (int i = 0; i < rows.Length; i++) y[(bi * h + hi) * rows.Length + i] = lse[(bi * h + hi) * s + rows[i]];
        return y;
    }

    private static void Scatter(double[] sum, float[] part, int b, int s, int h, int d, int[] rows)
    {
        for (int bi = 0; bi < b; bi++)
            for (int i = 0; i < rows.Length; i++)
                for (int c = 0; c < h * d; c++) sum[((long)bi * s + rows[i]) * h * d + c] += part[((long)bi * rows.Length + i) * h * d + c];
    }

    // The merge the cp_merge kernel performs: lse = log(e^a + e^p), O = e^(a−lse)·O_acc + e^(p−lse)·O_part.
    private static void Merge(double[] acc, double[] accLse, float[] part, float[] partLse, int b, int rows, int first, int count, int h, int d)
    {
        for (int bi = 0; bi < b; bi++)
            for (int hi = 0; hi < h; hi++)
                for (int i = 0; i < count; i++)
                {
                    int li = (bi * h + hi) * rows + first + i;
                    double a = accLse[li], p = partLse[(bi * h + hi) * count + i], m = Math.Max(a, p);
                    double lse = m + Math.Log(Math.Exp(a - m) + Math.Exp(p - m));
                    double wa = Math.Exp(a - lse), wp = Math.Exp(p - lse);
                    for (int c = 0; c < d; c++)
                    {
                        long ai = (((long)bi * rows + first + i) * h + hi) * d + c;
                        acc[ai] = wa * acc[ai] + wp * part[(((long)bi * count + i) * h + hi) * d + c];
                    }
                    accLse[li] = lse;
                }
    }

    private static void AssertClose(float[] expected, double[] actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) < 5e-5 * (1 + Math.Abs(expected[i])), $"{what}[{i}]: {actual[i]} vs {expected[i]}");
    }
}
