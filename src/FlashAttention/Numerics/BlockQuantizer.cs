using System.Numerics.Tensors;

namespace FlashAttention.Numerics;

/// <summary>How many values share one FP8 scale.</summary>
public enum QuantizationGranularity
{
    /// <summary>One scale for the whole tensor (FP8 "baseline" in the FlashAttention-3 paper).</summary>
    PerTensor,
    /// <summary>One scale per block of <c>n</c> consecutive tokens of one head (all head_dim values of those tokens).</summary>
    PerBlock,
}

/// <summary>
/// An FP8 tensor and the float32 factors that turn its codes back into values: element <c>(b, s, h, c)</c> stands for
/// <c>ToSingle(Data[i]) · DescaleOf(b, s, h)</c>.
/// </summary>
/// <typeparam name="T"><see cref="Float8E4M3"/> or <see cref="Float8E5M2"/>.</typeparam>
/// <remarks>
/// <para><see cref="Data"/> has the layout of the tensor that was quantised: contiguous (batch, seqlen, heads, head_dim).</para>
/// <para><see cref="Descale"/> layout: <see cref="QuantizationGranularity.PerTensor"/> — one element;
/// <see cref="QuantizationGranularity.PerBlock"/> — contiguous (batch, heads, blocks) with
/// <c>blocks = ceil(seqlen / BlockSize)</c>: entry <c>(b, h, j)</c> covers tokens <c>j·BlockSize … min(seqlen, (j+1)·BlockSize) − 1</c>
/// of head <c>h</c> of sequence <c>b</c> (the last block may be short). That is the order a kernel walking one (batch, head)
/// tile by tile reads them in.</para>
/// </remarks>
public sealed class QuantizedTensor<T> where T : unmanaged, IFloat8<T>
{
    internal QuantizedTensor(T[] data, float[] descale, int batch, int seqLen, int heads, int headDim,
        QuantizationGranularity granularity, int blockSize)
    {
        Data = data;
        Descale = descale;
        Batch = batch;
        SeqLen = seqLen;
        Heads = heads;
        HeadDim = headDim;
        Granularity = granularity;
        BlockSize = blockSize;
    }

    /// <summary>The FP8 codes, contiguous (batch, seqlen, heads, head_dim).</summary>
    public T[] Data { get; }
    /// <summary>Descale factors (amax / max finite of the format); see the remarks on the type for the layout.</summary>
    public float[] Descale { get; }
    public int Batch { get; }
    public int SeqLen { get; }
    public int Heads { get; }
    public int HeadDim { get; }
    public QuantizationGranularity Granularity { get; }
    /// <summary>Tokens per block (for <see cref="QuantizationGranularity.PerTensor"/>: the sequence length).</summary>
    public int BlockSize { get; }
    /// <summary>Blocks per (batch, head): <c>ceil(seqlen / BlockSize)</c>; 1 for per-tensor scaling.</summary>
    public int BlockCount => Granularity == QuantizationGranularity.PerTensor ? 1 : (SeqLen + BlockSize - 1) / BlockSize;

    /// <summary>The factor that multiplies the codes of token <paramref name="s"/> of head <paramref name="h"/> of sequence <paramref name="b"/>.</summary>
    public float DescaleOf(int b, int s, int h)
        => Granularity == QuantizationGranularity.PerTensor ? Descale[0] : Descale[((long)b * Heads + h) * BlockCount + s / BlockSize];

    /// <summary>The values the codes stand for, <c>code value · descale</c> in float32, contiguous (batch, seqlen, heads, head_dim).</summary>
    public float[] Dequantize()
    {
        var values = new float[Data.Length];
        Dequantize(values);
        return values;
    }

    /// <summary>Writes the values the codes stand for into <paramref name="destination"/> (at least <c>Data.Length</c> long).</summary>
    public void Dequantize(Span<float> destination)
    {
        if (destination.Length < Data.Length)
            throw new ArgumentException($"destination: expected at least {Data.Length} elements; got {destination.Length}", nameof(destination));
        if (Granularity == QuantizationGranularity.PerTensor)
        {
            T.ConvertToSingle(Data, destination);
            TensorPrimitives.Multiply(destination[..Data.Length], Descale[0], destination);
            return;
        }
        int d = HeadDim;
        for (int b = 0; b < Batch; b++)
            for (int s = 0; s < SeqLen; s++)
                for (int h = 0; h < Heads; h++)
                {
                    long offset = (((long)b * SeqLen + s) * Heads + h) * d;
                    var row = destination.Slice((int)offset, d);
                    T.ConvertToSingle(Data.AsSpan((int)offset, d), row);
                    TensorPrimitives.Multiply(row, DescaleOf(b, s, h), row);
                }
    }
}

/// <summary>
/// Scales float32 tensors into FP8 the way FlashAttention-3's FP8 path expects them: per tensor, or per block of
/// <c>n</c> consecutive tokens of one head (default 64, one query/key tile), with <c>descale = amax / max finite</c>
/// (448 for E4M3) so the largest magnitude of each block lands on the largest FP8 value.
/// </summary>
/// <remarks>
/// <para>Each value is multiplied by <c>scale = 1 / descale</c> in float32 and converted with the saturating
/// round-to-nearest-even conversion (<c>cvt.rn.satfinite</c>): the product can exceed the format's maximum by an ulp of
/// float32, and must then clamp rather than become NaN.</para>
/// <para><b>amax = 0</b> (an all-zero block or tensor): the descale is 1 — every code is then ±0 and 1 is the harmless factor
/// to multiply them back by (any factor would do; 1 never produces an Inf or NaN downstream). <b>Tiny amax</b>: the descale is
/// never below 2^-126 (the smallest normal float32), so <c>scale</c> stays finite; a block whose amax is below
/// 448·2^-126 ≈ 5e-36 is therefore scaled less than fully (its values still convert, some into FP8 subnormals or zero).
/// <b>NaN or ±∞</b> in the input has no meaningful scale: an <see cref="ArgumentException"/> names the argument and the
/// first offending index.</para>
/// <para>Inputs are contiguous (batch, seqlen, heads, head_dim) float32 tensors.</para>
/// </remarks>
public static class BlockQuantizer
{
    /// <summary>Default tokens per block: one 64-row query/key tile.</summary>
    public const int DefaultBlockSize = 64;

    /// <summary>The smallest descale factor handed out, 2^-126 (see the remarks on the type).</summary>
    public static float MinDescale => BitConverter.UInt32BitsToSingle(0x0080_0000u);

    /// <summary>The descale factor for a block whose largest magnitude is <paramref name="amax"/> (see the remarks on the type).</summary>
    public static float DescaleFor<T>(float amax) where T : unmanaged, IFloat8<T>
    {
        if (!float.IsFinite(amax) || amax < 0)
            throw new ArgumentOutOfRangeException(nameof(amax), amax, $"amax: expected a finite value ≥ 0; got {amax}");
        return amax == 0 ? 1f : MathF.Max(amax / T.MaxFinite, MinDescale);
    }

    /// <summary>Quantises a contiguous (batch, seqlen, heads, head_dim) float32 tensor into E4M3.</summary>
    public static QuantizedTensor<Float8E4M3> Quantize(ReadOnlySpan<float> x, int batch, int seqLen, int heads, int headDim,
        QuantizationGranularity granularity, int blockSize = DefaultBlockSize)
        => Quantize<Float8E4M3>(x, batch, seqLen, heads, headDim, granularity, blockSize);

    /// <summary>Quantises a contiguous (batch, seqlen, heads, head_dim) float32 tensor into the FP8 format <typeparamref name="T"/>.</summary>
    /// <param name="x">The values, <c>batch·seqLen·heads·headDim</c> of them, finite.</param>
    /// <param name="blockSize">Tokens per block for <see cref="QuantizationGranularity.PerBlock"/> (ignored per tensor); ≥ 1.</param>
    /// <exception cref="ArgumentException">A size is negative, <paramref name="x"/> has the wrong length or holds NaN/±∞, or <paramref name="blockSize"/> &lt; 1.</exception>
    public static QuantizedTensor<T> Quantize<T>(ReadOnlySpan<float> x, int batch, int seqLen, int heads, int headDim,
        QuantizationGranularity granularity, int blockSize = DefaultBlockSize) where T : unmanaged, IFloat8<T>
    {
        CheckSize(batch, nameof(batch));
        CheckSize(seqLen, nameof(seqLen));
        CheckSize(heads, nameof(heads));
        CheckSize(headDim, nameof(headDim));
        long count = (long)batch * seqLen * heads * headDim;
        if (x.Length != count)
            throw new ArgumentException($"x: expected batch·seqLen·heads·headDim = {batch}·{seqLen}·{heads}·{headDim} = {count} elements; got {x.Length}", nameof(x));
        if (granularity == QuantizationGranularity.PerBlock && blockSize < 1)
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, $"blockSize: expected at least 1 token per block; got {blockSize}");
        if (!Enum.IsDefined(granularity))
            throw new ArgumentOutOfRangeException(nameof(granularity), granularity, $"granularity: expected PerTensor or PerBlock; got {granularity}");

        var data = new T[count];
        if (granularity == QuantizationGranularity.PerTensor)
        {
            float amax = count == 0 ? 0 : MathF.Abs(TensorPrimitives.MaxMagnitude(x));
            if (!float.IsFinite(amax)) throw NonFinite(x);
            float descale = DescaleFor<T>(amax);
            T.ConvertFromSingleSaturating(x, data, 1f / descale);
            return new QuantizedTensor<T>(data, [descale], batch, seqLen, heads, headDim, granularity, Math.Max(seqLen, 1));
        }

        int blocks = (seqLen + blockSize - 1) / blockSize;
        var descales = new float[(long)batch * heads * blocks];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int j = 0; j < blocks; j++)
                {
                    int first = j * blockSize, last = Math.Min(seqLen, first + blockSize);
                    float amax = 0;
                    for (int s = first; s < last; s++)
                        amax = MathF.Max(amax, MathF.Abs(TensorPrimitives.MaxMagnitude(x.Slice(RowOffset(b, s, h, seqLen, heads, headDim), headDim))));
                    if (!float.IsFinite(amax)) throw NonFinite(x);
                    float descale = DescaleFor<T>(amax);
                    descales[((long)b * heads + h) * blocks + j] = descale;
                    float scale = 1f / descale;
                    for (int s = first; s < last; s++)
                    {
                        int offset = RowOffset(b, s, h, seqLen, heads, headDim);
                        T.ConvertFromSingleSaturating(x.Slice(offset, headDim), data.AsSpan(offset, headDim), scale);
                    }
                }
        return new QuantizedTensor<T>(data, descales, batch, seqLen, heads, headDim, granularity, blockSize);
    }

    private static int RowOffset(int b, int s, int h, int seqLen, int heads, int headDim)
        => checked((int)((((long)b * seqLen + s) * heads + h) * headDim));

    private static void CheckSize(int value, string name)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(name, value, $"{name}: expected a size ≥ 0; got {value}");
    }

    private static ArgumentException NonFinite(ReadOnlySpan<float> x)
    {
        int i = 0;
        while (i < x.Length && float.IsFinite(x[i])) i++;
        return new ArgumentException($"x: FP8 scaling needs finite values; x[{i}] = {(i < x.Length ? x[i] : float.NaN)}", nameof(x));
    }
}
