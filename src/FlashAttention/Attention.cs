using System.Numerics.Tensors;
using FlashAttention.Cpu;

namespace FlashAttention;

/// <summary>
/// Exact softmax attention on the CPU, <c>O = softmax(scale · Q Kᵀ + mask) V</c>, FlashAttention's algorithm
/// (tiled, online softmax, no Sq×Sk memory), vectorised and parallel over all cores.
/// Tensors use FlashAttention's layout: (batch, seqlen, heads, head_dim) with any strides whose last is 1,
/// so slices of a packed QKV buffer pass without copies. Element types: float, Half, BFloat16; accumulation
/// is float32. Every argument is checked before anything is written; a bad one raises
/// <see cref="AttentionArgumentException"/> naming it. GPU calls live in <c>FlashAttention.Cuda.CudaAttention</c>.
/// </summary>
public static unsafe class Attention
{
    /// <summary>Forward pass over a dense batch.</summary>
    /// <param name="query">(batch, seqlen_q, heads_q, head_dim).</param>
    /// <param name="key">(batch, seqlen_k, heads_k, head_dim); heads_k divides heads_q (GQA/MQA).</param>
    /// <param name="value">Same shape as <paramref name="key"/>.</param>
    /// <param name="output">(batch, seqlen_q, heads_q, head_dim), written in full.</param>
    /// <param name="logSumExp">(batch, heads_q, seqlen_q) float32: natural-log row log-sum-exp of the scaled scores, −∞ for a row that sees no key, NaN (with NaN O) for a row that sees a NaN score.</param>
    /// <param name="options">Scale, mask, softcap; null for the defaults.</param>
    public static void Forward<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        TensorSpan<T> output, TensorSpan<float> logSumExp, AttentionOptions? options = null) where T : unmanaged
    {
        AttentionValidation.ExpectDefaultPrecision(options, "the CPU engine");
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference(), o = &output.GetPinnableReference())
        fixed (float* lse = &logSumExp.GetPinnableReference())
        {
            var problem = AttentionValidation.Forward(
                TensorSpanLayout.Of("query", query, q), TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                TensorSpanLayout.Of("output", output, o), TensorSpanLayout.Of("logSumExp", logSumExp, lse), options);
            CpuFlashAttention.Forward(problem, q, k, v, o, lse);
        }
    }

    /// <summary>Forward pass over a dense batch, without the log-sum-exp.</summary>
    public static void Forward<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        TensorSpan<T> output, AttentionOptions? options = null) where T : unmanaged
    {
        AttentionValidation.ExpectDefaultPrecision(options, "the CPU engine");
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference(), o = &output.GetPinnableReference())
        {
            var problem = AttentionValidation.Forward(
                TensorSpanLayout.Of("query", query, q), TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                TensorSpanLayout.Of("output", output, o), null, options);
            CpuFlashAttention.Forward(problem, q, k, v, o, null);
        }
    }

    /// <summary>
    /// Forward pass over a variable-length batch packed as (total_tokens, heads, head_dim): sequence <c>b</c> owns query
    /// rows <c>cuSeqLensQ[b] … cuSeqLensQ[b+1]−1</c> and key rows <c>cuSeqLensK[b] … cuSeqLensK[b+1]−1</c>.
    /// </summary>
    /// <param name="logSumExp">(heads_q, total_q) float32.</param>
    public static void ForwardVarlen<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        ReadOnlySpan<int> cuSeqLensQ, ReadOnlySpan<int> cuSeqLensK, TensorSpan<T> output, TensorSpan<float> logSumExp,
        AttentionOptions? options = null) where T : unmanaged
    {
        AttentionValidation.ExpectDefaultPrecision(options, "the CPU engine");
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference(), o = &output.GetPinnableReference())
        fixed (float* lse = &logSumExp.GetPinnableReference())
        {
            var problem = AttentionValidation.ForwardVarlen(
                TensorSpanLayout.Of("query", query, q), TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                TensorSpanLayout.Of("output", output, o), TensorSpanLayout.Of("logSumExp", logSumExp, lse), cuSeqLensQ, cuSeqLensK, options);
            CpuFlashAttention.Forward(problem, q, k, v, o, lse);
        }
    }

    /// <summary>
    /// Backward pass: from the forward's inputs, its output and log-sum-exp, and the output gradient, the gradients of
    /// query, key and value. With GQA, key/value gradients sum over the query heads that share a key head.
    /// </summary>
    public static void Backward<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        ReadOnlyTensorSpan<T> output, ReadOnlyTensorSpan<T> outputGradient, ReadOnlyTensorSpan<float> logSumExp,
        TensorSpan<T> queryGradient, TensorSpan<T> keyGradient, TensorSpan<T> valueGradient, AttentionOptions? options = null) where T : unmanaged
        => Backward(query, key, value, output, outputGradient, logSumExp, queryGradient, keyGradient, valueGradient, options, varlen: false, default, default);

    /// <summary>Backward pass over a variable-length batch; see <see cref="ForwardVarlen{T}"/> for the layout.</summary>
    public static void BackwardVarlen<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        ReadOnlyTensorSpan<T> output, ReadOnlyTensorSpan<T> outputGradient, ReadOnlyTensorSpan<float> logSumExp,
        ReadOnlySpan<int> cuSeqLensQ, ReadOnlySpan<int> cuSeqLensK,
        TensorSpan<T> queryGradient, TensorSpan<T> keyGradient, TensorSpan<T> valueGradient, AttentionOptions? options = null) where T : unmanaged
        => Backward(query, key, value, output, outputGradient, logSumExp, queryGradient, keyGradient, valueGradient, options, varlen: true, cuSeqLensQ, cuSeqLensK);

    private static void Backward<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value,
        ReadOnlyTensorSpan<T> output, ReadOnlyTensorSpan<T> outputGradient, ReadOnlyTensorSpan<float> logSumExp,
        TensorSpan<T> queryGradient, TensorSpan<T> keyGradient, TensorSpan<T> valueGradient, AttentionOptions? options,
        bool varlen, ReadOnlySpan<int> cuSeqLensQ, ReadOnlySpan<int> cuSeqLensK) where T : unmanaged
    {
        AttentionValidation.ExpectDefaultPrecision(options, "the CPU engine");
        fixed (T* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference())
        fixed (T* o = &output.GetPinnableReference(), dO = &outputGradient.GetPinnableReference())
        fixed (T* dq = &queryGradient.GetPinnableReference(), dk = &keyGradient.GetPinnableReference(), dv = &valueGradient.GetPinnableReference())
        fixed (float* lse = &logSumExp.GetPinnableReference())
        {
            var (lq, lk, lv) = (TensorSpanLayout.Of("query", query, q), TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v));
            var (lo, ldO, lLse) = (TensorSpanLayout.Of("output", output, o), TensorSpanLayout.Of("outputGradient", outputGradient, dO), TensorSpanLayout.Of("logSumExp", logSumExp, lse));
            var (ldq, ldk, ldv) = (TensorSpanLayout.Of("queryGradient", queryGradient, dq), TensorSpanLayout.Of("keyGradient", keyGradient, dk), TensorSpanLayout.Of("valueGradient", valueGradient, dv));
            var problem = varlen
                ? AttentionValidation.BackwardVarlen(lq, lk, lv, lo, ldO, lLse, ldq, ldk, ldv, cuSeqLensQ, cuSeqLensK, options)
                : AttentionValidation.Backward(lq, lk, lv, lo, ldO, lLse, ldq, ldk, ldv, options);
            CpuFlashAttention.Backward(problem, q, k, v, o, dO, lse, dq, dk, dv);
        }
    }
}
