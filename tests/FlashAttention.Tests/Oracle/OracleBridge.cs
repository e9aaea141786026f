using FlashAttention.Tests.Cpu;

namespace FlashAttention.Tests.Oracle;

/// <summary>
/// Moves a test case's tensors into the oracle's per-sequence arrays and the oracle's results back into the contiguous
/// logical order the library's oracles use (<see cref="FlashAttention.Cpu.ReferenceForward"/>): O and gradients token
/// by token, LSE (batch, heads, seqlen_q) dense or (heads, total_q) varlen.
/// </summary>
internal static class OracleBridge
{
    /// <summary>First token and length of each sequence, for queries and for keys.</summary>
    private static (int Start, int Length)[] Spans(AttentionCase c, bool keys)
    {
        if (c.IsVarlen)
        {
            int[] cu = keys ? c.CuK! : c.CuQ!;
            return [.. Enumerable.Range(0, cu.Length - 1).Select(b => (cu[b], cu[b + 1] - cu[b]))];
        }
        int length = keys ? c.SeqK : c.SeqQ;
        return [.. Enumerable.Range(0, c.Batch).Select(b => (b * length, length))];
    }

    private static double[,,] Slice(double[] tokens, int heads, int dim, (int Start, int Length) span)
    {
        var x = new double[span.Length, heads, dim];
        for (int s = 0; s < span.Length; s++)
            for (int h = 0; h < heads; h++)
                for (int c = 0; c < dim; c++) x[s, h, c] = tokens[((long)(span.Start + s) * heads + h) * dim + c];
        return x;
    }

    /// <summary>The case's sequences, from the tensors' logical elements (any strides).</summary>
    public static NaiveSequence[] Sequences<T>(CaseTensors<T> t) where T : unmanaged
    {
        var c = t.Case;
        double[] q = t.Q.ToDoubles(), k = t.K.ToDoubles(), v = t.V.ToDoubles();
        var qs = Spans(c, keys: false);
        var ks = Spans(c, keys: true);
        return [.. qs.Select((span, b) => new NaiveSequence(Slice(q, c.HeadsQ, c.Dim, span), Slice(k, c.HeadsK, c.Dim, ks[b]), Slice(v, c.HeadsK, c.Dim, ks[b])))];
    }

    /// <summary>The output gradient of each sequence.</summary>
    public static double[][,,] OutputGradients<T>(CaseTensors<T> t) where T : unmanaged
    {
        double[] g = t.DO.ToDoubles();
        return [.. Spans(t.Case, keys: false).Select(span => Slice(g, t.Case.HeadsQ, t.Case.Dim, span))];
    }

    /// <summary>Per-sequence (tokens, heads, dim) arrays concatenated in token order.</summary>
    public static double[] Tokens(IEnumerable<double[,,]> perSequence) =>
        [.. perSequence.SelectMany(x => x.Cast<double>())];

    /// <summary>The oracle's O and LSE in the library's contiguous order for this case.</summary>
    public static (double[] O, double[] Lse) Flatten(AttentionCase c, NaiveOutput[] outputs)
    {
        double[] o = Tokens(outputs.Select(x => x.O));
        var lse = new List<double>();
        if (c.IsVarlen)
        {
            for (int h = 0; h < c.HeadsQ; h++)
                foreach (var x in outputs)
                    for (int i = 0; i < x.Lse.GetLength(1); i++) lse.Add(x.Lse[h, i]);
        }
        else
        {
            foreach (var x in outputs)
                for (int h = 0; h < c.HeadsQ; h++)
                    for (int i = 0; i < x.Lse.GetLength(1); i++) lse.Add(x.Lse[h, i]);
        }
        return (o, [.. lse]);
    }

    /// <summary>
    /// Largest |actual − expected| over the elements, relative to max(1, max |expected|); infinities must match exactly
    /// (−∞ for rows that see no key) and NaN fails.
    /// </summary>
    public static void AssertClose(string what, ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, double relativeTolerance)
    {
        Assert.True(actual.Length == expected.Length, $"{what}: {actual.Length} elements, the oracle has {expected.Length}");
        double scale = Math.Max(1, TestTensors.MaxAbs(expected)), worst = 0;
        int at = -1;
        for (int i = 0; i < actual.Length; i++)
        {
            double a = actual[i], e = expected[i];
            Assert.False(double.IsNaN(a), $"{what}[{i}] is NaN");
            if (double.IsInfinity(e) || double.IsInfinity(a))
            {
                Assert.True(a == e, $"{what}[{i}]: {a} where the oracle has {e}");
                continue;
            }
            double err = Math.Abs(a - e);
            if (err > worst) { worst = err; at = i; }
        }
        Assert.True(worst <= relativeTolerance * scale,
            $"{what}: largest difference {worst:E3} at [{at}] ({(at >= 0 ? actual[at] : 0):R} vs the oracle's {(at >= 0 ? expected[at] : 0):R}) exceeds {relativeTolerance:E1} × {scale:G4}");
    }
}
