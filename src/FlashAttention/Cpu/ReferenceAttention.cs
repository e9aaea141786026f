using System.Numerics.Tensors;

namespace FlashAttention.Cpu;

/// <summary>Float64 results of <see cref="ReferenceAttention"/>, in contiguous logical order.</summary>
/// <param name="Output">Dense: (batch, seqlen_q, heads_q, head_dim); varlen: (total_q, heads_q, head_dim).</param>
/// <param name="LogSumExp">Dense: (batch, heads_q, seqlen_q); varlen: (heads_q, total_q). −∞ for rows that see no key.</param>
public sealed record ReferenceForward(double[] Output, double[] LogSumExp);

/// <summary>Float64 gradients of <see cref="ReferenceAttention"/>, contiguous, shaped like query, key and value.</summary>
public sealed record ReferenceGradients(double[] Query, double[] Key, double[] Value);

/// <summary>
/// The oracle: attention in float64 with plain loops and the textbook formula, forward and backward.
/// Every test and every GPU verification compares against it. It is written to be read, not to be fast:
/// scores of one query row at a time, <c>P = exp(s − logsumexp)</c>, <c>O = P V</c>; the backward takes the
/// analytic gradient of exactly that. Masking and softcap follow <see cref="AttentionOptions"/>.
/// </summary>
public static unsafe class ReferenceAttention
{
    /// <summary>Forward pass of a dense batch.</summary>
    public static ReferenceForward Forward<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        AttentionOptions? options = null) where T : unmanaged
    {
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference())
        {
            var lq = TensorSpanLayout.Of("query", query, q);
            var p = AttentionValidation.Forward(lq, TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                ContiguousOutput(lq), null, options);
            return Forward(p, q, k, v);
        }
    }

    /// <summary>Forward pass of a variable-length batch.</summary>
    public static ReferenceForward ForwardVarlen<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        ReadOnlySpan<int> cuSeqLensQ, ReadOnlySpan<int> cuSeqLensK, AttentionOptions? options = null) where T : unmanaged
    {
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference())
        {
            var lq = TensorSpanLayout.Of("query", query, q);
            var p = AttentionValidation.ForwardVarlen(lq, TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                ContiguousOutput(lq), null, cuSeqLensQ, cuSeqLensK, options);
            return Forward(p, q, k, v);
        }
    }

    /// <summary>Gradients of a dense batch for the output gradient <paramref name="outputGradient"/>.</summary>
    public static ReferenceGradients Backward<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        ReadOnlyTensorSpan<T> outputGradient, AttentionOptions? options = null) where T : unmanaged
    {
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference(), dO = &outputGradient.GetPinnableReference())
        {
            var lq = TensorSpanLayout.Of("query", query, q);
            var p = AttentionValidation.Forward(lq, TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                ContiguousOutput(lq), null, options);
            return Backward(p, q, k, v, dO, OutputGradientStrides(lq, TensorSpanLayout.Of("outputGradient", outputGradient, dO), p.IsVarlen));
        }
    }

    /// <summary>Gradients of a variable-length batch.</summary>
    public static ReferenceGradients BackwardVarlen<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        ReadOnlyTensorSpan<T> outputGradient, ReadOnlySpan<int> cuSeqLensQ, ReadOnlySpan<int> cuSeqLensK, AttentionOptions? options = null) where T : unmanaged
    {
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference(), dO = &outputGradient.GetPinnableReference())
        {
            var lq = TensorSpanLayout.Of("query", query, q);
            var p = AttentionValidation.ForwardVarlen(lq, TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                ContiguousOutput(lq), null, cuSeqLensQ, cuSeqLensK, options);
            return Backward(p, q, k, v, dO, OutputGradientStrides(lq, TensorSpanLayout.Of("outputGradient", outputGradient, dO), p.IsVarlen));
        }
    }

    // The CPU oracles (this one and PlainAttention) allocate their own outputs; validation still wants an output
    // layout, so it gets a contiguous one at address 0 (no host tensor lives there, so no false aliasing).
    internal static TensorLayout ContiguousOutput(in TensorLayout q)
    {
        var strides = new long[q.Rank];
        long s = 1;
        for (int i = q.Rank - 1; i >= 0; i--) { strides[i] = s; s *= q.Lengths[i]; }
        return new TensorLayout("output", q.Type, q.Lengths, strides, 0);
    }

    // The output gradient of an oracle's backward: shaped and typed like the query.
    internal static TokenStrides OutputGradientStrides(in TensorLayout q, in TensorLayout dO, bool varlen)
    {
        if (!dO.Lengths.AsSpan().SequenceEqual(q.Lengths))
            throw new AttentionArgumentException("outputGradient", $"outputGradient: expected shape {q.ShapeText} (that of query); got {dO.ShapeText}");
        if (dO.Type != q.Type)
            throw new AttentionArgumentException("outputGradient", $"outputGradient: expected element type {q.Type} (the type of query); got {dO.Type}");
        return varlen ? new TokenStrides(0, dO.Strides[0], dO.Strides[1]) : new TokenStrides(dO.Strides[0], dO.Strides[1], dO.Strides[2]);
    }

    /// <summary>Contiguous index of (batch b, query token s) in the packed token order of the outputs.</summary>
    internal static long TokenIndexQ(AttentionProblem p, int b, int s) => p.IsVarlen ? p.CuSeqLensQ![b] + (long)s : (long)b * p.SeqLenQ + s;
    internal static long TokenIndexK(AttentionProblem p, int b, int s) => p.IsVarlen ? p.CuSeqLensK![b] + (long)s : (long)b * p.SeqLenK + s;
    internal static long LseIndex(AttentionProblem p, int b, int h, int s)
        => p.IsVarlen ? h * p.TotalQ + p.CuSeqLensQ![b] + s : ((long)b * p.HeadsQ + h) * p.SeqLenQ + s;

    /// <summary>Forward on a validated problem; outputs contiguous as documented on <see cref="ReferenceForward"/>.</summary>
    internal static ReferenceForward Forward<T>(AttentionProblem p, T* q, T* k, T* v) where T : unmanaged
    {
        int d = p.HeadDim;
        var output = new double[p.TotalQ * p.HeadsQ * d];
        var lse = new double[p.TotalQ * p.HeadsQ];
        // Rows are independent: one task per (batch, head, chunk of rows), so long sequences use every core.
        const int rowsPerTask = 32;
        int chunks = (p.SeqLenQ + rowsPerTask - 1) / rowsPerTask;
        Parallel.For(0, (long)p.Batch * p.HeadsQ * chunks, task =>
        {
            int chunk = (int)(task % chunks), bh = (int)(task / chunks);
            int b = bh / p.HeadsQ, h = bh % p.HeadsQ, hk = h / p.GroupSize;
            int sq = p.SeqLenQOf(b), sk = p.SeqLenKOf(b);
            var mask = p.MaskOf(b);
            var scores = new double[sk];
            for (int i = chunk * rowsPerTask; i < Math.Min(sq, (chunk + 1) * rowsPerTask); i++)
            {
                double rowLse = RowScores(p, q, k, b, h, hk, i, mask, scores, out _);
                lse[LseIndex(p, b, h, i)] = rowLse;
                long o = (TokenIndexQ(p, b, i) * p.HeadsQ + h) * d;
                for (int j = 0; j < sk; j++)
                {
                    if (!mask.IsVisible(i, j)) continue;
                    double prob = Math.Exp(scores[j] - rowLse);
                    T* vj = v + p.KeyOffset(p.V, b, j, hk);
                    for (int c = 0; c < d; c++) output[o + c] += prob * ElementConvert.ToSingle(vj[c]);
                }
            }
        });
        return new ReferenceForward(output, lse);
    }

    /// <summary>
    /// Scores of query row i against every key (after scale and softcap; masked ones untouched) and their log-sum-exp,
    /// −∞ when no key is visible. <paramref name="tanh"/> receives tanh(s/cap) per key when softcap is on.
    /// </summary>
    private static double RowScores<T>(AttentionProblem p, T* q, T* k, int b, int h, int hk, int i, AttentionMask mask,
        double[] scores, out double[]? tanh) where T : unmanaged
    {
        int d = p.HeadDim;
        tanh = p.Softcap > 0 ? new double[scores.Length] : null;
        T* qi = q + p.QueryOffset(p.Q, b, i, h);
        double max = double.NegativeInfinity;
        for (int j = mask.FirstKey(i); j <= mask.LastKey(i); j++)
        {
            T* kj = k + p.KeyOffset(p.K, b, j, hk);
            double dot = 0;
            for (int c = 0; c < d; c++) dot += (double)ElementConvert.ToSingle(qi[c]) * ElementConvert.ToSingle(kj[c]);
            double s = (double)p.Scale * dot;
            if (tanh is not null)
            {
                tanh[j] = Math.Tanh(s / p.Softcap);
                s = p.Softcap * tanh[j];
            }
            scores[j] = s;
            max = Math.Max(max, s);
        }
        if (double.IsNegativeInfinity(max)) return double.NegativeInfinity;
        double sum = 0;
        for (int j = mask.FirstKey(i); j <= mask.LastKey(i); j++) sum += Math.Exp(scores[j] - max);
        return max + Math.Log(sum);
    }

    /// <summary>Query rows per block of the backward passes (<see cref="Backward{T}(AttentionProblem, T*, T*, T*, T*, TokenStrides)"/>).</summary>
    internal const int BackwardBlockRows = 64;

    /// <summary>Analytic gradients on a validated problem, recomputing the forward in float64.</summary>
    /// <remarks>
    /// Query rows go in blocks so that every core has work even with one or two heads (the GPU's verify cases of
    /// 4096 tokens have two to four): first the rows of a block in parallel (P and dS of each row, and its dQ), then
    /// the block's terms of dK and dV in parallel over key rows. Each key row still adds its terms over the query
    /// heads of its GQA group, then over the query rows, in ascending order, so the sums do not depend on the
    /// number of cores.
    /// </remarks>
    internal static ReferenceGradients Backward<T>(AttentionProblem p, T* q, T* k, T* v, T* dO, TokenStrides dOStrides) where T : unmanaged
    {
        int d = p.HeadDim;
        var dq = new double[p.TotalQ * p.HeadsQ * d];
        var dk = new double[p.TotalK * p.HeadsK * d];
        var dv = new double[p.TotalK * p.HeadsK * d];
        const int blockRows = BackwardBlockRows;
        for (int b = 0; b < p.Batch; b++)
        {
            int sq = p.SeqLenQOf(b), sk = p.SeqLenKOf(b);
            var mask = p.MaskOf(b);
            var prob = new double[blockRows * sk];  // P of the block's rows (row r at r·sk)
            var dDot = new double[blockRows * sk];  // d loss / d (q·k) of the block's rows
            var first = new int[blockRows];
            var last = new int[blockRows];          // first > last: the row sees no key (no gradient flows)
            for (int hk = 0; hk < p.HeadsK; hk++)
                for (int h = hk * p.GroupSize; h < (hk + 1) * p.GroupSize; h++)
                    for (int i0 = 0; i0 < sq; i0 += blockRows)
                    {
                        int rows = Math.Min(blockRows, sq - i0);
                        Parallel.For(0, rows, () => (Scores: new double[sk], DProb: new double[sk]), (r, _, scratch) =>
                        {
                            int i = i0 + r;
                            first[r] = 0;
                            last[r] = -1;
                            double rowLse = RowScores(p, q, k, b, h, hk, i, mask, scratch.Scores, out double[]? tanh);
                            if (double.IsNegativeInfinity(rowLse)) return scratch;
                            T* doi = dO + p.QueryOffset(dOStrides, b, i, h);
                            int jFirst = mask.FirstKey(i), jLast = mask.LastKey(i);
                            double rowD = 0; // D_i = Σ_j P_ij dP_ij = dO_i · O_i
                            for (int j = jFirst; j <= jLast; j++)
                            {
                                double pj = prob[r * sk + j] = Math.Exp(scratch.Scores[j] - rowLse);
                                T* vj = v + p.KeyOffset(p.V, b, j, hk);
                                double dot = 0;
                                for (int c = 0; c < d; c++) dot += (double)ElementConvert.ToSingle(doi[c]) * ElementConvert.ToSingle(vj[c]);
                                scratch.DProb[j] = dot;
                                rowD += pj * dot;
                            }
                            long qRow = (TokenIndexQ(p, b, i) * p.HeadsQ + h) * d;
                            for (int j = jFirst; j <= jLast; j++)
                            {
                                double dScore = prob[r * sk + j] * (scratch.DProb[j] - rowD);  // d loss / d (capped score)
                                if (tanh is not null) dScore *= 1 - tanh[j] * tanh[j];         // d cap·tanh(s/cap) / ds
                                double dd = dDot[r * sk + j] = dScore * p.Scale;               // d loss / d (q·k)
                                T* kj = k + p.KeyOffset(p.K, b, j, hk);
                                for (int c = 0; c < d; c++) dq[qRow + c] += dd * ElementConvert.ToSingle(kj[c]);
                            }
                            first[r] = jFirst;
                            last[r] = jLast;
                            return scratch;
                        }, _ => { });
                        Parallel.For(0, sk, j =>
                        {
                            long kRow = (TokenIndexK(p, b, j) * p.HeadsK + hk) * d;
                            for (int r = 0; r < rows; r++)
                            {
                                if (j < first[r] || j > last[r]) continue;
                                T* doi = dO + p.QueryOffset(dOStrides, b, i0 + r, h);
                                T* qi = q + p.QueryOffset(p.Q, b, i0 + r, h);
                                double pj = prob[r * sk + j], dd = dDot[r * sk + j];
                                for (int c = 0; c < d; c++)
                                {
                                    dv[kRow + c] += pj * ElementConvert.ToSingle(doi[c]);
                                    dk[kRow + c] += dd * ElementConvert.ToSingle(qi[c]);
                                }
                            }
                        });
                    }
        }
        return new ReferenceGradients(dq, dk, dv);
    }
}
