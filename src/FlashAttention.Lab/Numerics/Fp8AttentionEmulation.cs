using System.Numerics.Tensors;
using FlashAttention.Cpu;

using FlashAttention.Numerics;

namespace FlashAttention.Lab.Numerics;

/// <summary>How <see cref="Fp8AttentionEmulation"/> quantises.</summary>
public sealed record Fp8AttentionOptions
{
    /// <summary>The options FlashAttention-3's FP8 forward is evaluated with in its paper: per-block scales and incoherent processing.</summary>
    public static Fp8AttentionOptions Default { get; } = new();

    /// <summary>One scale per tensor, or one per block of <see cref="BlockSize"/> tokens of one head (the default).</summary>
    public QuantizationGranularity Granularity { get; init; } = QuantizationGranularity.PerBlock;

    /// <summary>Tokens per block for per-block scaling; default 64 (one tile).</summary>
    public int BlockSize { get; init; } = BlockQuantizer.DefaultBlockSize;

    /// <summary>Tokens per block of K and V (null: <see cref="BlockSize"/>); the GPU kernel takes its key block (128).</summary>
    public int? KeyBlockSize { get; init; }

    /// <summary>Rotate Q and K by the same random orthogonal <c>M</c> (Hadamard × random signs) before quantising them (default on).</summary>
    public bool IncoherentProcessing { get; init; } = true;

    /// <summary>Seed of the random signs of <c>M</c> (<see cref="Hadamard.RandomSigns"/>).</summary>
    public int HadamardSeed { get; init; }

    /// <summary>
    /// Multiply P by 2^8 before its cast to E4M3, as FlashAttention-3's code does (<c>Max_offset = 8</c>), instead of casting
    /// P ≤ 1 as the paper describes (the default, false). The factor cancels in the row sum, so only rounding changes: P then
    /// sits in E4M3's normal range instead of flushing values below 2^-10 to zero.
    /// </summary>
    public bool ScaleProbabilities { get; init; }
}

/// <summary>
/// FlashAttention-3's FP8 (E4M3) forward pass, emulated on the CPU step by step, through the same tiled online-softmax
/// engine as <see cref="Attention.Forward{T}(ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, TensorSpan{T}, TensorSpan{float}, AttentionOptions?)"/>:
/// the oracle and accuracy target of the GPU FP8 kernel.
/// </summary>
/// <remarks>
/// <para>The steps, as the kernel does them:</para>
/// <list type="number">
/// <item>optionally rotate Q and K with the same <c>M</c> (<see cref="Hadamard.Rotate(Span{float}, ReadOnlySpan{float})"/>);
///   V is not rotated (the paper rotates only Q and K: a rotation of V would have to be undone on O);</item>
/// <item>quantise Q, K and V to E4M3 per tensor or per block (<see cref="BlockQuantizer"/>);</item>
/// <item><c>S = Q Kᵀ</c> with float32 accumulation, descaled by <c>descale_q · descale_k</c>; online softmax over key tiles
///   (running row max, rescaling of the accumulator when it grows);</item>
/// <item>unnormalised <c>P = exp(S − rowmax)</c>; the row sum is taken from this unrounded P; P is then cast to E4M3
///   (P ≤ 1, no scale — or ×2^8 with <see cref="Fp8AttentionOptions.ScaleProbabilities"/>) for the second GEMM;</item>
/// <item><c>O = (P V) · descale_v / rowsum</c> accumulated in float32.</item>
/// </list>
/// <para>The descale factors are folded into the operands before the float32 engine runs: each E4M3 code is widened and
/// multiplied by its descale (one float32 rounding per element), instead of multiplying the float32 accumulators of an
/// FP8×FP8 GEMM by <c>descale_q·descale_k</c> (for S) or <c>descale_v</c> (for O) afterwards. In exact arithmetic the two
/// are the same number; in float32 they differ by a few float32 ulps of S and O — some 10^-7 relative, four orders of
/// magnitude below the FP8 errors being measured. (With per-block V scales the kernel would scale each key tile's
/// contribution to O by that tile's descale; folding it into V is again the same up to float32 rounding.)</para>
/// <para>Only float32 tensors, dense batches (no varlen) on the CPU. Masks, softcap, scale and GQA work as in
/// <see cref="Attention"/>; the output stays float32 (no rounding of O to a 16-bit type).</para>
/// </remarks>
public static unsafe class Fp8AttentionEmulation
{
    /// <summary>FP8 forward of a dense batch, without the log-sum-exp.</summary>
    public static void Forward(ReadOnlyTensorSpan<float> query, ReadOnlyTensorSpan<float> key, ReadOnlyTensorSpan<float> value,
        TensorSpan<float> output, Fp8AttentionOptions? fp8 = null, AttentionOptions? options = null)
        => Forward(query, key, value, output, default, fp8, options);

    /// <summary>FP8 forward of a dense batch; shapes and options as in <see cref="Attention"/>.</summary>
    /// <param name="query">(batch, seqlen_q, heads_q, head_dim) float32.</param>
    /// <param name="key">(batch, seqlen_k, heads_k, head_dim) float32.</param>
    /// <param name="value">Same shape as <paramref name="key"/>.</param>
    /// <param name="output">(batch, seqlen_q, heads_q, head_dim), written in full.</param>
    /// <param name="logSumExp">(batch, heads_q, seqlen_q), or <c>default</c> (rank 0) for none: natural-log row log-sum-exp of the descaled scores.</param>
    /// <param name="fp8">Quantisation options; null for <see cref="Fp8AttentionOptions.Default"/>.</param>
    /// <param name="options">Attention options; null for the defaults.</param>
    public static void Forward(ReadOnlyTensorSpan<float> query, ReadOnlyTensorSpan<float> key, ReadOnlyTensorSpan<float> value,
        TensorSpan<float> output, TensorSpan<float> logSumExp, Fp8AttentionOptions? fp8 = null, AttentionOptions? options = null)
    {
        fp8 ??= Fp8AttentionOptions.Default;
        bool hasLse = logSumExp.Rank > 0;
        AttentionProblem checkedProblem;
        fixed (float* q = &query.GetPinnableReference(), k = &key.GetPinnableReference(), v = &value.GetPinnableReference())
        fixed (float* o = &output.GetPinnableReference(), lse = &logSumExp.GetPinnableReference())
            checkedProblem = AttentionValidation.Forward(
                TensorSpanLayout.Of("query", query, q), TensorSpanLayout.Of("key", key, k), TensorSpanLayout.Of("value", value, v),
                TensorSpanLayout.Of("output", output, o), hasLse ? TensorSpanLayout.Of("logSumExp", logSumExp, lse) : null, options);
        CheckOptions(fp8, checkedProblem.HeadDim);

        // Contiguous working copies (the caller's tensors may be strided views), then rotate, quantise and dequantise in place.
        var qc = new float[query.FlattenedLength];
        var kc = new float[key.FlattenedLength];
        var vc = new float[value.FlattenedLength];
        query.FlattenTo(qc);
        key.FlattenTo(kc);
        value.FlattenTo(vc);
        int batch = checkedProblem.Batch, d = checkedProblem.HeadDim;
        if (fp8.IncoherentProcessing)
        {
            var signs = Hadamard.RandomSigns(d, fp8.HadamardSeed);
            Hadamard.Rotate(qc, signs);
            Hadamard.Rotate(kc, signs);
        }
        QuantizeInPlace(qc, batch, checkedProblem.SeqLenQ, checkedProblem.HeadsQ, d, fp8, fp8.BlockSize);
        QuantizeInPlace(kc, batch, checkedProblem.SeqLenK, checkedProblem.HeadsK, d, fp8, fp8.KeyBlockSize ?? fp8.BlockSize);
        QuantizeInPlace(vc, batch, checkedProblem.SeqLenK, checkedProblem.HeadsK, d, fp8, fp8.KeyBlockSize ?? fp8.BlockSize);

        if (fp8.ScaleProbabilities)
            RunEngine<float, E4M3Offset8ProbabilityRounding>(qc, kc, vc, query.Lengths, key.Lengths, output, logSumExp, options);
        else
            RunEngine<float, E4M3ProbabilityRounding>(qc, kc, vc, query.Lengths, key.Lengths, output, logSumExp, options);
    }

    private static void CheckOptions(Fp8AttentionOptions fp8, int headDim)
    {
        if (fp8.Granularity == QuantizationGranularity.PerBlock && fp8.BlockSize < 1)
            throw new AttentionArgumentException("fp8", $"fp8.BlockSize: expected at least 1 token per block; got {fp8.BlockSize}");
        if (fp8.Granularity == QuantizationGranularity.PerBlock && fp8.KeyBlockSize < 1)
            throw new AttentionArgumentException("fp8", $"fp8.KeyBlockSize: expected at least 1 token per block; got {fp8.KeyBlockSize}");
        if (!Enum.IsDefined(fp8.Granularity))
            throw new AttentionArgumentException("fp8", $"fp8.Granularity: expected PerTensor or PerBlock; got {fp8.Granularity}");
        if (fp8.IncoherentProcessing && !Hadamard.IsSupportedLength(headDim))
            throw new AttentionArgumentException("fp8", $"fp8.IncoherentProcessing: the Hadamard rotation needs a power-of-two head_dim; got head_dim {headDim}");
    }

    private static void QuantizeInPlace(float[] x, int batch, int seqLen, int heads, int headDim, Fp8AttentionOptions fp8, int blockSize)
        => BlockQuantizer.Quantize(x, batch, seqLen, heads, headDim, fp8.Granularity, blockSize).Dequantize(x);

    /// <summary>
    /// Runs the CPU engine on contiguous operands of element type <typeparamref name="T"/> (already holding the values the
    /// kernel would see), with P rounded by <typeparamref name="TRound"/>, writing the caller's output.
    /// </summary>
    internal static void RunEngine<T, TRound>(T[] q, T[] k, T[] v, ReadOnlySpan<nint> queryShape, ReadOnlySpan<nint> keyShape,
        TensorSpan<T> output, TensorSpan<float> logSumExp, AttentionOptions? options)
        where T : unmanaged where TRound : struct, IProbabilityRounding
    {
        var query = new ReadOnlyTensorSpan<T>(q, queryShape, default);
        var key = new ReadOnlyTensorSpan<T>(k, keyShape, default);
        var value = new ReadOnlyTensorSpan<T>(v, keyShape, default);
        bool hasLse = logSumExp.Rank > 0;
        fixed (T* qp = q, kp = k, vp = v, o = &output.GetPinnableReference())
        fixed (float* lse = &logSumExp.GetPinnableReference())
        {
            var problem = AttentionValidation.Forward(
                TensorSpanLayout.Of("query", query, qp), TensorSpanLayout.Of("key", key, kp), TensorSpanLayout.Of("value", value, vp),
                TensorSpanLayout.Of("output", output, o), hasLse ? TensorSpanLayout.Of("logSumExp", logSumExp, lse) : null, options);
            CpuFlashAttention.Forward<T, TRound>(problem, qp, kp, vp, o, hasLse ? lse : null);
        }
    }
}
