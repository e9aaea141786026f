using System.Numerics.Tensors;
using FlashAttention.Cpu;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Cpu;

/// <summary>
/// A strided view into a backing array: the tensors the tests hand to the API. Lengths of 1 get stride 0 because
/// System.Numerics.Tensors 10.0 rejects a non-zero stride on a length-1 dimension ("would allow you to access
/// elements outside the provided memory"), whatever the buffer size.
/// </summary>
internal sealed class StridedBuffer<T>(T[] data, int offset, long[] lengths, long[] strides) where T : unmanaged
{
    public T[] Data { get; } = data;
    public int Offset { get; } = offset;
    public long[] Lengths { get; } = lengths;
    public long[] Strides { get; } = strides.Select((s, i) => lengths[i] == 1 ? 0 : s).ToArray();

    public long Count => Lengths.Aggregate(1L, (a, b) => a * b);

    public TensorSpan<T> Span => new(Data.AsSpan(Offset), Lengths.Select(l => (nint)l).ToArray(), Strides.Select(s => (nint)s).ToArray());
    public ReadOnlyTensorSpan<T> ReadOnly => Span;

    /// <summary>Offsets of every logical element, in row-major logical order.</summary>
    public IEnumerable<long> Offsets()
    {
        var index = new long[Lengths.Length];
        for (long n = 0; n < Count; n++)
        {
            long off = Offset;
            for (int i = 0; i < index.Length; i++) off += index[i] * Strides[i];
            yield return off;
            for (int i = index.Length - 1; i >= 0; i--)
            {
                if (++index[i] < Lengths[i]) break;
                index[i] = 0;
            }
        }
    }

    /// <summary>The logical elements as doubles, row-major (the order of the reference's outputs).</summary>
    public double[] ToDoubles() => Offsets().Select(o => (double)ElementConvert.ToSingle(Data[o])).ToArray();
}

/// <summary>Random inputs, poisoned outputs and the layouts the tests use.</summary>
internal static class TestTensors
{
    /// <summary>Contiguous row-major strides of <paramref name="lengths"/>.</summary>
    public static long[] RowMajor(params long[] lengths)
    {
        var s = new long[lengths.Length];
        long acc = 1;
        for (int i = lengths.Length - 1; i >= 0; i--) { s[i] = acc; acc *= lengths[i]; }
        return s;
    }

    public static StridedBuffer<T> Contiguous<T>(params long[] lengths) where T : unmanaged
        => new(new T[Math.Max(1, lengths.Aggregate(1L, (a, b) => a * b))], 0, lengths, RowMajor(lengths));

    /// <summary>
    /// A (batch, seq, heads, dim) tensor stored heads-major, (batch, heads, seq, dim) in memory, with padding after
    /// every row, head and batch: no stride is a product of the others, rows are not 64-byte aligned.
    /// </summary>
    public static StridedBuffer<T> HeadsMajorPadded<T>(long batch, long seq, long heads, long dim) where T : unmanaged
    {
        long sRow = dim + 3, sHead = seq * sRow + 5, sBatch = heads * sHead + 7;
        return new(new T[batch * sBatch + 11], 2, [batch, seq, heads, dim], [sBatch, sRow, sHead, 1]);
    }

    /// <summary>Packed varlen tokens (tokens, heads, dim) with a padded token stride.</summary>
    public static StridedBuffer<T> PackedPadded<T>(long tokens, long heads, long dim) where T : unmanaged
    {
        long sTok = heads * dim + 9;
        return new(new T[Math.Max(1, tokens * sTok + 4)], 1, [tokens, heads, dim], [sTok, dim, 1]);
    }

    /// <summary>
    /// Q, K and V as slices of one packed (batch, seq, heads_q + 2·heads_k, dim) buffer, the layout of a fused QKV
    /// projection: query heads first, then key heads, then value heads.
    /// </summary>
    public static (StridedBuffer<T> Q, StridedBuffer<T> K, StridedBuffer<T> V) PackedQkv<T>(long batch, long seq, long headsQ, long headsK, long dim) where T : unmanaged
    {
        long h = headsQ + 2 * headsK;
        var data = new T[batch * seq * h * dim];
        long[] strides = [seq * h * dim, h * dim, dim, 1];
        return (new(data, 0, [batch, seq, headsQ, dim], strides),
            new(data, checked((int)(headsQ * dim)), [batch, seq, headsK, dim], strides),
            new(data, checked((int)((headsQ + headsK) * dim)), [batch, seq, headsK, dim], strides));
    }

    /// <summary>Fills the logical elements with ±U(0.05, 2) (never zero), as T.</summary>
    public static void FillRandom<T>(StridedBuffer<T> t, Random rng) where T : unmanaged
    {
        foreach (long o in t.Offsets())
        {
            double m = 0.05 + 1.95 * rng.NextDouble();
            t.Data[o] = ElementConvert.FromSingle<T>((float)(rng.Next(2) == 0 ? -m : m));
        }
    }

    /// <summary>Fills the whole backing array, gaps included, with NaN.</summary>
    public static void Poison<T>(StridedBuffer<T> t) where T : unmanaged
    {
        T nan = ElementConvert.FromSingle<T>(float.NaN);
        Array.Fill(t.Data, nan);
    }

    /// <summary>Asserts every logical element was written (not NaN) and every gap element still holds the poison.</summary>
    public static void AssertFullyWritten<T>(StridedBuffer<T> t, string name) where T : unmanaged
    {
        var logical = new HashSet<long>(t.Offsets());
        for (long i = 0; i < t.Data.Length; i++)
        {
            bool isNaN = float.IsNaN(ElementConvert.ToSingle(t.Data[i]));
            if (logical.Contains(i))
                Assert.False(isNaN, $"{name}: element at offset {i} was not written (still NaN)");
            else
                Assert.True(isNaN, $"{name}: gap element at offset {i} was overwritten");
        }
    }

    public static T[] Copy<T>(StridedBuffer<T> t) where T : unmanaged => (T[])t.Data.Clone();

    /// <summary>Max |a − b| over finite pairs; infinities must match exactly (returns +∞ otherwise), NaN anywhere fails.</summary>
    public static double MaxError(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double e = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double a = actual[i], x = expected[i];
            if (double.IsNaN(a) || double.IsNaN(x)) return double.PositiveInfinity;
            if (double.IsInfinity(x) || double.IsInfinity(a))
            {
                if (a != x) return double.PositiveInfinity;
                continue;
            }
            e = Math.Max(e, Math.Abs(a - x));
        }
        return e;
    }

    public static double MaxAbs(ReadOnlySpan<double> x)
    {
        double m = 0;
        foreach (double v in x) if (double.IsFinite(v)) m = Math.Max(m, Math.Abs(v));
        return m;
    }

    public static double[] ToDoubles(float[] x) => x.Select(v => (double)v).ToArray();

    /// <summary>
    /// The tolerance rule: the fast result's error against float64 ≤ 2 × the plain same-precision implementation's
    /// error + epsilon, where epsilon is <paramref name="epsilon"/> × max(1, max |reference|). The plain error must itself
    /// stay within <paramref name="plainBound"/> (<see cref="PlainAttention.ErrorBound(DataType, long, double)"/>), so a
    /// wrong reference fails here instead of widening the allowance.
    /// </summary>
    public static void AssertWithinRule(string what, double[] fast, double[] plain, double[] reference, double epsilon, double plainBound)
    {
        double errFast = MaxError(fast, reference);
        double errPlain = MaxError(plain, reference);
        double bound = 2 * errPlain + epsilon * Math.Max(1, MaxAbs(reference));
        if (Environment.GetEnvironmentVariable("FA_TEST_LOG") is { } log)
            File.AppendAllText(log, $"{what}\t{errFast:E2}\t{errPlain:E2}\t{plainBound:E2}\t{errPlain / plainBound:F3}\t{errFast / bound:F3}\n");
        Assert.True(errPlain <= plainBound,
            $"{what}: the plain implementation's error {errPlain:E3} against the float64 reference exceeds its bound {plainBound:E3}: the reference (or the plain code) is wrong");
        Assert.True(errFast <= bound,
            $"{what}: error {errFast:E3} against float64 exceeds 2 × plain error {errPlain:E3} + ε·max(1,|ref|) = {bound:E3}");
    }

    /// <summary>
    /// Epsilon of the rule per element type, as a fraction of max(1, max |reference|).
    /// <list type="bullet">
    /// <item>float outputs (O, LSE): 1e-6 (~8 ulp at 1): the engine and the plain float32 code both err by a few ulp,
    ///   through different summation orders and exp implementations.</item>
    /// <item>float gradients: 1e-5. The backward forms dS = P∘(dP − D) with D = dO·O from the stored output: in rows
    ///   that see a single key (or few), dP and D are equal dot products and cancel completely. The plain code
    ///   computes both in the same order and gets exactly 0; a tiled kernel (FlashAttention's on the GPU too) gets a
    ///   few ulp of |dO||V| of noise, which sums over the query rows into dK. Measured: 2.8e-6 on a varlen case with
    ///   a one-key sequence, where the plain error is 1.4e-7; elsewhere the engine's error is about the plain one.</item>
    /// <item>Half: 1e-3 and bfloat16: 8e-3, about one ulp of the type at 1: both round their results to T last, so
    ///   on small problems where the plain error is itself only that final rounding, a different rounding direction
    ///   must not fail the test.</item>
    /// </list>
    /// </summary>
    public static double Epsilon<T>(bool gradient = false) =>
        typeof(T) == typeof(float) ? (gradient ? 1e-5 : 1e-6)
        : typeof(T) == typeof(Half) ? 1e-3
        : typeof(T) == typeof(BFloat16) ? 8e-3
        : throw new NotSupportedException();
}
