using System.Numerics.Tensors;

namespace FlashAttention.Lab.Cpu;

/// <summary>Results of <see cref="PlainAttention"/>, float32, in <see cref="ReferenceForward"/>'s contiguous order.</summary>
/// <param name="Output">Dense: (batch, seqlen_q, heads_q, head_dim); varlen: (total_q, heads_q, head_dim). Values of T.</param>
/// <param name="LogSumExp">Dense: (batch, heads_q, seqlen_q); varlen: (heads_q, total_q). −∞ for rows that see no key.</param>
public sealed record PlainForward(float[] Output, float[] LogSumExp);

/// <summary>Gradients of <see cref="PlainAttention"/>, float32 holding values of T, contiguous, shaped like query, key and value.</summary>
public sealed record PlainGradients(float[] Query, float[] Key, float[] Value);

/// <summary>
/// The yardstick of the tolerance rule (FlashAttention's own): a fast kernel's error against the float64
/// <see cref="ReferenceAttention"/> must be at most twice the error of this plain implementation in the same
/// precision T, plus a small epsilon. "Plain" means the textbook formula with every matrix product rounded to T, as
/// a framework computing attention op by op in T would: per query row,
/// <list type="bullet">
/// <item>forward: <c>s_j = round_T(Σ_c q_c k_c)</c> (float32 sum), then scale, softcap and mask in float32;
///   softmax in float32 with <c>P_j = round_T(exp(s_j − m) / Σ)</c>; <c>o_c = round_T(Σ_j P_j v_jc)</c> (float32 sum);</item>
/// <item>backward: P as in the forward; <c>dP_j = round_T(Σ_c dO_c v_jc)</c>; <c>D = Σ_c dO_c o_c</c> with the
///   forward's (rounded) O; <c>dS_j = round_T(P_j (dP_j − D) · (1 − tanh²)))</c> (the factor only under softcap);
///   <c>dQ = round_T(scale Σ_j dS_j k_j)</c>, <c>dK_j = round_T(scale Σ_i dS_ij q_i)</c>, <c>dV_j = round_T(Σ_i P_ij dO_i)</c>,
///   sums in float32.</item>
/// </list>
/// For T = float every rounding is the identity and this is plain float32 attention. Loops are scalar and simple.
/// </summary>
public static unsafe class PlainAttention
{
    /// <summary>Forward of a dense batch.</summary>
    public static PlainForward Forward<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        AttentionOptions? options = null) where T : unmanaged
    {
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference())
        {
            var lq = TensorSpanLayout.Of("query", query, q);
            var p = AttentionValidation.Forward(lq, TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                ReferenceAttention.ContiguousOutput(lq), null, options);
            return Forward(p, q, k, v);
        }
    }

    /// <summary>Forward of a variable-length batch.</summary>
    public static PlainForward ForwardVarlen<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        ReadOnlySpan<int> cuSeqLensQ, ReadOnlySpan<int> cuSeqLensK, AttentionOptions? options = null) where T : unmanaged
    {
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference())
        {
            var lq = TensorSpanLayout.Of("query", query, q);
            var p = AttentionValidation.ForwardVarlen(lq, TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                ReferenceAttention.ContiguousOutput(lq), null, cuSeqLensQ, cuSeqLensK, options);
            return Forward(p, q, k, v);
        }
    }

    /// <summary>Gradients of a dense batch for the output gradient <paramref name="outputGradient"/>.</summary>
    public static PlainGradients Backward<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        ReadOnlyTensorSpan<T> outputGradient, AttentionOptions? options = null) where T : unmanaged
    {
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference(), dO = &outputGradient.GetPinnableReference())
        {
            var lq = TensorSpanLayout.Of("query", query, q);
            var p = AttentionValidation.Forward(lq, TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                ReferenceAttention.ContiguousOutput(lq), null, options);
            return Backward(p, q, k, v, dO, ReferenceAttention.OutputGradientStrides(lq, TensorSpanLayout.Of("outputGradient", outputGradient, dO), p.IsVarlen));
        }
    }

    /// <summary>Gradients of a variable-length batch.</summary>
    public static PlainGradients BackwardVarlen<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        ReadOnlyTensorSpan<T> outputGradient, ReadOnlySpan<int> cuSeqLensQ, ReadOnlySpan<int> cuSeqLensK, AttentionOptions? options = null) where T : unmanaged
    {
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference(), dO = &outputGradient.GetPinnableReference())
        {
            var lq = TensorSpanLayout.Of("query", query, q);
            var p = AttentionValidation.ForwardVarlen(lq, TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                ReferenceAttention.ContiguousOutput(lq), null, cuSeqLensQ, cuSeqLensK, options);
            return Backward(p, q, k, v, dO, ReferenceAttention.OutputGradientStrides(lq, TensorSpanLayout.Of("outputGradient", outputGradient, dO), p.IsVarlen));
        }
    }

    /// <summary>
    /// How far this implementation's results in <paramref name="type"/> may lie from exact attention on the same
    /// inputs: <c>(8·u + 4·√n·2⁻²⁴) · max(1, m)</c>, where u is the type's unit roundoff (2⁻²⁴ float, 2⁻¹¹ Half, 2⁻⁸
    /// BFloat16), n the longest float32 sum behind a result and m the largest |result|. The tolerance rule allows a fast
    /// kernel twice the plain error; checking the plain error against this bound first keeps a wrong float64 reference
    /// from widening that allowance (a plain error above the bound means the reference, or this code, is wrong).
    /// </summary>
    /// <remarks>
    /// The terms: a result is formed from at most four operands rounded to T (scores, P, dP or dS, the result), and a
    /// softmax turns a score's absolute error into at most twice that relative error of P, so roundings to T cost a few
    /// units of u at the result's scale (8 leaves room for scores up to about 2); float32 sums of n terms err like
    /// √n·2⁻²⁴ in practice (Higham and Mary, "A new approach to probabilistic rounding error analysis", SIAM J. Sci.
    /// Comput. 41(5), 2019), and 4 covers the larger magnitude of the summed terms than of their sum.
    /// </remarks>
    /// <param name="type">Element type the plain implementation ran in.</param>
    /// <param name="longestSum">Longest float32 sum: max(head dim, keys, query rows × GQA group), the last for dK and dV.</param>
    /// <param name="largestMagnitude">Largest |result| of the quantity (finite values only).</param>
    public static double ErrorBound(DataType type, long longestSum, double largestMagnitude)
    {
        double u = type switch
        {
            DataType.Float32 => Math.ScaleB(1, -24),
            DataType.Float16 => Math.ScaleB(1, -11),
            DataType.BFloat16 => Math.ScaleB(1, -8),
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "the plain implementation runs in Float32, Float16 or BFloat16"),
        };
        ArgumentOutOfRangeException.ThrowIfNegative(longestSum);
        return (8 * u + 4 * Math.Sqrt(longestSum) * Math.ScaleB(1, -24)) * Math.Max(1, largestMagnitude);
    }

    /// <summary>
    /// <see cref="ErrorBound(DataType, long, double)"/> for a problem's shape: n = max(head dim, seqlen_k, seqlen_q × group)
    /// (the longest lengths for varlen batches) and m the largest finite |x| of <paramref name="result"/>.
    /// </summary>
    public static double ErrorBound(DataType type, int headDim, int seqLenQ, int seqLenK, int groupSize, ReadOnlySpan<float> result)
    {
        double m = 0;
        foreach (float x in result) if (float.IsFinite(x)) m = Math.Max(m, Math.Abs(x));
        return ErrorBound(type, Math.Max(Math.Max(headDim, seqLenK), (long)seqLenQ * groupSize), m);
    }

    private static float Round<T>(float x) where T : unmanaged => ElementConvert.RoundTo<T>(x);
    private static float Load<T>(T* p, int c) where T : unmanaged => ElementConvert.ToSingle(p[c]);

    /// <summary>Forward on a validated problem; outputs contiguous as documented on <see cref="PlainForward"/>.</summary>
    internal static PlainForward Forward<T>(AttentionProblem p, T* q, T* k, T* v) where T : unmanaged
    {
        int d = p.HeadDim;
        var output = new float[p.TotalQ * p.HeadsQ * d];
        var lse = new float[p.TotalQ * p.HeadsQ];
        // Rows are independent: one task per (batch, head, chunk of rows), so long sequences use every core.
        const int rowsPerTask = 32;
        int chunks = (p.SeqLenQ + rowsPerTask - 1) / rowsPerTask;
        Parallel.For(0, (long)p.Batch * p.HeadsQ * chunks, task =>
        {
            int chunk = (int)(task % chunks), bh = (int)(task / chunks);
            int b = bh / p.HeadsQ, h = bh % p.HeadsQ, hk = h / p.GroupSize;
            int sq = p.SeqLenQOf(b), sk = p.SeqLenKOf(b);
            var mask = p.MaskOf(b);
            var scores = new float[sk];
            var prob = new float[sk];
            var acc = new float[d];
            for (int i = chunk * rowsPerTask; i < Math.Min(sq, (chunk + 1) * rowsPerTask); i++)
            {
                float rowLse = RowProbabilities(p, q, k, b, h, hk, i, mask, scores, prob, null);
                lse[ReferenceAttention.LseIndex(p, b, h, i)] = rowLse;
                Array.Clear(acc);
                for (int j = mask.FirstKey(i); j <= mask.LastKey(i); j++)
                {
                    T* vj = v + p.KeyOffset(p.V, b, j, hk);
                    for (int c = 0; c < d; c++) acc[c] += prob[j] * Load(vj, c);
                }
                long o = (ReferenceAttention.TokenIndexQ(p, b, i) * p.HeadsQ + h) * d;
                for (int c = 0; c < d; c++) output[o + c] = Round<T>(acc[c]);
            }
        });
        return new PlainForward(output, lse);
    }

    /// <summary>
    /// Scores (rounded GEMM output, then scale/softcap in float32) and rounded probabilities of query row i over its
    /// visible keys; returns the row's log-sum-exp (−∞ when it sees no key). <paramref name="tanh"/>, when given,
    /// receives tanh(s·scale/cap) per key.
    /// </summary>
    private static float RowProbabilities<T>(AttentionProblem p, T* q, T* k, int b, int h, int hk, int i, AttentionMask mask,
        float[] scores, float[] prob, float[]? tanh) where T : unmanaged
    {
        int d = p.HeadDim;
        T* qi = q + p.QueryOffset(p.Q, b, i, h);
        float max = float.NegativeInfinity;
        int first = mask.FirstKey(i), last = mask.LastKey(i);
        for (int j = first; j <= last; j++)
        {
            T* kj = k + p.KeyOffset(p.K, b, j, hk);
            float dot = 0;
            for (int c = 0; c < d; c++) dot += Load(qi, c) * Load(kj, c);
            float s = Round<T>(dot) * p.Scale;
            if (p.Softcap > 0)
            {
                float th = MathF.Tanh(s / p.Softcap);
                if (tanh is not null) tanh[j] = th;
                s = p.Softcap * th;
            }
            scores[j] = s;
            max = MathF.Max(max, s);
        }
        if (float.IsNegativeInfinity(max)) return float.NegativeInfinity;
        float sum = 0;
        for (int j = first; j <= last; j++) sum += prob[j] = MathF.Exp(scores[j] - max);
        for (int j = first; j <= last; j++) prob[j] = Round<T>(prob[j] / sum);
        return max + MathF.Log(sum);
    }

    /// <summary>Gradients on a validated problem (forward recomputed in the same precision).</summary>
    /// <remarks>
    /// Blocks of query rows as in <see cref="ReferenceAttention"/>'s backward: the rows of a block in parallel, then
    /// the block's terms of dK and dV in parallel over key rows, each key row summing in the order of one task per
    /// (batch, key head): query heads of the group, then query rows, ascending.
    /// </remarks>
    internal static PlainGradients Backward<T>(AttentionProblem p, T* q, T* k, T* v, T* dO, TokenStrides dOStrides) where T : unmanaged
    {
        int d = p.HeadDim;
        var forward = Forward(p, q, k, v);
        var dq = new float[p.TotalQ * p.HeadsQ * d];
        var dk = new float[p.TotalK * p.HeadsK * d];
        var dv = new float[p.TotalK * p.HeadsK * d];
        const int blockRows = ReferenceAttention.BackwardBlockRows;
        for (int b = 0; b < p.Batch; b++)
        {
            int sq = p.SeqLenQOf(b), sk = p.SeqLenKOf(b);
            var mask = p.MaskOf(b);
            var probBlock = new float[blockRows * sk];  // rounded P of the block's rows (row r at r·sk)
            var dSBlock = new float[blockRows * sk];    // rounded dS of the block's rows
            var first = new int[blockRows];
            var last = new int[blockRows];              // first > last: the row sees no key
            for (int hk = 0; hk < p.HeadsK; hk++)
                for (int h = hk * p.GroupSize; h < (hk + 1) * p.GroupSize; h++)
                    for (int i0 = 0; i0 < sq; i0 += blockRows)
                    {
                        int rows = Math.Min(blockRows, sq - i0);
                        Parallel.For(0, rows, () => (Scores: new float[sk], Prob: new float[sk], Tanh: new float[sk], Acc: new float[d]), (r, _, scratch) =>
                        {
                            int i = i0 + r;
                            first[r] = 0;
                            last[r] = -1;
                            float rowLse = RowProbabilities(p, q, k, b, h, hk, i, mask, scratch.Scores, scratch.Prob, scratch.Tanh);
                            if (float.IsNegativeInfinity(rowLse)) return scratch;
                            T* doi = dO + p.QueryOffset(dOStrides, b, i, h);
                            long qRow = (ReferenceAttention.TokenIndexQ(p, b, i) * p.HeadsQ + h) * d;
                            float rowD = 0;
                            for (int c = 0; c < d; c++) rowD += Load(doi, c) * forward.Output[qRow + c];
                            int jFirst = mask.FirstKey(i), jLast = mask.LastKey(i);
                            var acc = scratch.Acc;
                            Array.Clear(acc);
                            for (int j = jFirst; j <= jLast; j++)
                            {
                                T* vj = v + p.KeyOffset(p.V, b, j, hk);
                                float dot = 0;
                                for (int c = 0; c < d; c++) dot += Load(doi, c) * Load(vj, c);
                                float dS0 = scratch.Prob[j] * (Round<T>(dot) - rowD);
                                if (p.Softcap > 0) dS0 *= 1 - scratch.Tanh[j] * scratch.Tanh[j];
                                float dSj = dSBlock[r * sk + j] = Round<T>(dS0);
                                probBlock[r * sk + j] = scratch.Prob[j];
                                T* kj = k + p.KeyOffset(p.K, b, j, hk);
                                for (int c = 0; c < d; c++) acc[c] += dSj * Load(kj, c);
                            }
                            for (int c = 0; c < d; c++) dq[qRow + c] = Round<T>(p.Scale * acc[c]);
                            first[r] = jFirst;
                            last[r] = jLast;
                            return scratch;
                        }, _ => { });
                        Parallel.For(0, sk, j =>
                        {
                            long kRow = (ReferenceAttention.TokenIndexK(p, b, j) * p.HeadsK + hk) * d;
                            for (int r = 0; r < rows; r++)
                            {
                                if (j < first[r] || j > last[r]) continue;
                                T* doi = dO + p.QueryOffset(dOStrides, b, i0 + r, h);
                                T* qi = q + p.QueryOffset(p.Q, b, i0 + r, h);
                                float pj = probBlock[r * sk + j], dSj = dSBlock[r * sk + j];
                                for (int c = 0; c < d; c++)
                                {
                                    dv[kRow + c] += pj * Load(doi, c);
                                    dk[kRow + c] += p.Scale * dSj * Load(qi, c);
                                }
                            }
                        });
                    }
        }
        for (int i = 0; i < dk.Length; i++) { dk[i] = Round<T>(dk[i]); dv[i] = Round<T>(dv[i]); }
        return new PlainGradients(dq, dk, dv);
    }
}
