namespace FlashAttention.Tests.Oracle;

/// <summary>One sequence of a batch: query rows (seqlen_q, heads_q, head_dim) and key/value rows (seqlen_k, heads_k, head_dim).</summary>
internal sealed record NaiveSequence(double[,,] Q, double[,,] K, double[,,] V)
{
    public int SeqQ => Q.GetLength(0);
    public int SeqK => K.GetLength(0);
    public int HeadsQ => Q.GetLength(1);
    public int HeadsK => K.GetLength(1);
    public int Dim => Q.GetLength(2);
}

/// <summary>Outputs of one sequence: O (seqlen_q, heads_q, head_dim) and the natural-log LSE (heads_q, seqlen_q).</summary>
internal sealed record NaiveOutput(double[,,] O, double[,] Lse);

/// <summary>
/// Attention written from its definition alone, in double with plain loops, sharing no code with the library: its own
/// mask, scale and head mapping, read straight from the documented conventions (FlashAttention's). It is the oracle the
/// float64 reference, the engine and the plain implementation are held to, so that a mistake shared by those three
/// (they share the mask, the default scale and the head grouping) cannot hide.
/// <list type="bullet">
/// <item>score <c>s_ij = scale · Σ_c q_ic k_jc</c>, scale = the option or <c>1/√head_dim</c> (in float32); with softcap
///   c &gt; 0, <c>s = c·tanh(s/c)</c>;</item>
/// <item>query i of a sequence of Sq queries and Sk keys stands at key position <c>p = i + Sk − Sq</c> (bottom-right);
///   it sees key j (0 ≤ j &lt; Sk) unless causal and j &gt; p, or a left window L ≥ 0 and j &lt; p − L, or a right
///   window R ≥ 0 and j &gt; p + R;</item>
/// <item>query head h reads key head <c>h · heads_k / heads_q</c> (consecutive query heads share a key head);</item>
/// <item><c>LSE_i = ln Σ_j exp(s_ij)</c> over the visible keys, <c>O_i = Σ_j exp(s_ij − LSE_i) v_j</c>; a row that sees
///   no key has O = 0 and LSE = −∞.</item>
/// </list>
/// Gradients come from central differences of this forward (<see cref="NumericalGradients"/>), not from any formula.
/// </summary>
internal static class NaiveAttention
{
    public static bool Sees(int i, int j, int seqQ, int seqK, AttentionOptions options)
    {
        int position = i + seqK - seqQ;
        if (j < 0 || j >= seqK) return false;
        if (options.Causal && j > position) return false;
        if (options.WindowLeft >= 0 && j < position - options.WindowLeft) return false;
        if (options.WindowRight >= 0 && j > position + options.WindowRight) return false;
        return true;
    }

    public static NaiveOutput Forward(NaiveSequence x, AttentionOptions options)
    {
        int sq = x.SeqQ, sk = x.SeqK, hq = x.HeadsQ, hk = x.HeadsK, d = x.Dim;
        // The scale is a float32 parameter (SoftmaxScale is a float); by default 1/√d rounded to float32, as FlashAttention
        // passes head_dim ** -0.5 to its kernels.
        double scale = options.SoftmaxScale is { } given ? given : (float)(1.0 / Math.Sqrt(d));
        var o = new double[sq, hq, d];
        var lse = new double[hq, sq];
        var s = new double[sk];
        for (int h = 0; h < hq; h++)
        {
            int kvHead = h * hk / hq;
            for (int i = 0; i < sq; i++)
            {
                double max = double.NegativeInfinity;
                for (int j = 0; j < sk; j++)
                {
                    if (!Sees(i, j, sq, sk, options)) continue;
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += x.Q[i, h, c] * x.K[j, kvHead, c];
                    double score = scale * dot;
                    if (options.Softcap > 0) score = options.Softcap * Math.Tanh(score / options.Softcap);
                    s[j] = score;
                    max = Math.Max(max, score);
                }
                if (double.IsNegativeInfinity(max))
                {
                    lse[h, i] = double.NegativeInfinity;
                    continue;
                }
                double sum = 0;
                for (int j = 0; j < sk; j++)
                    if (Sees(i, j, sq, sk, options)) sum += Math.Exp(s[j] - max);
                double rowLse = max + Math.Log(sum);
                lse[h, i] = rowLse;
                for (int j = 0; j < sk; j++)
                {
                    if (!Sees(i, j, sq, sk, options)) continue;
                    double p = Math.Exp(s[j] - rowLse);
                    for (int c = 0; c < d; c++) o[i, h, c] += p * x.V[j, kvHead, c];
                }
            }
        }
        return new NaiveOutput(o, lse);
    }

    /// <summary>
    /// d(Σ O ∘ G)/d(Q, K, V) by central differences of <see cref="Forward"/> with step <paramref name="step"/>: each
    /// input element moved by ±step in double. The truncation error is O(step²) (about 1e-8 relative at 1e-4 for inputs
    /// of order 1), far below any error the tests look for.
    /// </summary>
    public static (double[,,] dQ, double[,,] dK, double[,,] dV) NumericalGradients(NaiveSequence x, double[,,] outputGradient,
        AttentionOptions options, double step = 1e-4)
    {
        double Loss()
        {
            var o = Forward(x, options).O;
            double loss = 0;
            for (int i = 0; i < o.GetLength(0); i++)
                for (int h = 0; h < o.GetLength(1); h++)
                    for (int c = 0; c < o.GetLength(2); c++) loss += o[i, h, c] * outputGradient[i, h, c];
            return loss;
        }
        double[,,] Differentiate(double[,,] input)
        {
            var g = new double[input.GetLength(0), input.GetLength(1), input.GetLength(2)];
            for (int a = 0; a < input.GetLength(0); a++)
                for (int b = 0; b < input.GetLength(1); b++)
                    for (int c = 0; c < input.GetLength(2); c++)
                    {
                        double keep = input[a, b, c];
                        input[a, b, c] = keep + step;
                        double up = Loss();
                        input[a, b, c] = keep - step;
                        double down = Loss();
                        input[a, b, c] = keep;
                        g[a, b, c] = (up - down) / (2 * step);
                    }
            return g;
        }
        return (Differentiate(x.Q), Differentiate(x.K), Differentiate(x.V));
    }
}
