using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FlashAttention.Numerics;

/// <summary>
/// The fast Walsh–Hadamard transform and FlashAttention-3's "incoherent processing" rotation.
/// </summary>
/// <remarks>
/// <para><b>The transform.</b> <c>H</c> is the Sylvester–Hadamard matrix of order <c>d</c> (a power of two),
/// <c>H[i, j] = (−1)^popcount(i AND j) / √d</c>: normalised, so it is symmetric and orthogonal (<c>H Hᵀ = I</c>) and its own
/// inverse. <see cref="Transform(Span{float})"/> computes <c>x ← H x</c> in place in <c>d·log₂d</c> additions (the butterfly),
/// vectorised for the stages whose stride is at least a vector wide.</para>
/// <para><b>The rotation.</b> FlashAttention-3 multiplies Q and K by the same random orthogonal matrix built from a Hadamard
/// matrix and a random ±1 diagonal <c>D = diag(signs)</c>. Here every row <c>r</c> (one token of one head, length <c>d</c>)
/// becomes <c>H D r</c>: the signs are flipped first, then the row is transformed. In the row-vector notation of the paper this
/// is <c>Q ← Q M</c> with <c>M = D H</c> (<c>= (H D)ᵀ</c>, H being symmetric); <c>M</c> is orthogonal, so
/// <c>(Q M)(K M)ᵀ = Q M Mᵀ Kᵀ = Q Kᵀ</c> exactly in real arithmetic. Flipping the signs before the transform is what makes the
/// rotation random: an outlier in one coordinate is spread over all <c>d</c> outputs with magnitude <c>|x|/√d</c> whatever
/// the signs are, and the signs decorrelate that spreading from any structure the inputs have.</para>
/// <para>Only powers of two are accepted: a Sylvester matrix exists only for those, and head dimensions that matter
/// (64, 128, 256) are powers of two. Other lengths raise an <see cref="ArgumentException"/> naming the argument.</para>
/// </remarks>
public static class Hadamard
{
    /// <summary>True when <paramref name="d"/> is a positive power of two (a length the transform accepts).</summary>
    public static bool IsSupportedLength(int d) => d > 0 && BitOperations.IsPow2(d);

    /// <summary>In place, <c>x ← H x</c> with the normalised (orthogonal) Hadamard matrix of order <c>x.Length</c>.</summary>
    /// <exception cref="ArgumentException"><paramref name="x"/>'s length is not a power of two.</exception>
    public static void Transform(Span<float> x)
    {
        CheckLength(x.Length, nameof(x));
        Butterflies(x);
        Scale(x, (float)(1.0 / Math.Sqrt(x.Length)));
    }

    /// <summary>In place, <c>x ← H x</c> in float64.</summary>
    /// <exception cref="ArgumentException"><paramref name="x"/>'s length is not a power of two.</exception>
    public static void Transform(Span<double> x)
    {
        CheckLength(x.Length, nameof(x));
        Butterflies(x);
        Scale(x, 1.0 / Math.Sqrt(x.Length));
    }

    /// <summary>Transforms every row of a row-major block of rows, each <paramref name="rowLength"/> long.</summary>
    /// <exception cref="ArgumentException"><paramref name="rowLength"/> is not a power of two, or <paramref name="rows"/> is not a whole number of rows.</exception>
    public static void TransformRows(Span<float> rows, int rowLength)
    {
        CheckLength(rowLength, nameof(rowLength));
        CheckRows(rows.Length, rowLength);
        float scale = (float)(1.0 / Math.Sqrt(rowLength));
        for (int start = 0; start < rows.Length; start += rowLength)
        {
            var row = rows.Slice(start, rowLength);
            Butterflies(row);
            Scale(row, scale);
        }
    }

    /// <summary>
    /// <paramref name="d"/> random signs (each +1 or −1 with probability ½), reproducible from <paramref name="seed"/>
    /// (<see cref="Random(int)"/>'s seeded generator, whose sequence .NET keeps stable).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="d"/> is not positive.</exception>
    public static float[] RandomSigns(int d, int seed)
    {
        if (d < 1) throw new ArgumentOutOfRangeException(nameof(d), d, $"d: expected a positive length; got {d}");
        var rng = new Random(seed);
        var signs = new float[d];
        for (int i = 0; i < d; i++) signs[i] = rng.Next(2) == 0 ? 1f : -1f;
        return signs;
    }

    /// <summary>
    /// The incoherent-processing rotation, in place: every row <c>r</c> (rows are <c>signs.Length</c> long, row-major, e.g. a
    /// contiguous (batch, seqlen, heads, head_dim) tensor) becomes <c>H·diag(signs)·r</c>; see the remarks on the type.
    /// Apply it with the same signs to Q and K.
    /// </summary>
    /// <exception cref="ArgumentException">The length of <paramref name="signs"/> is not a power of two, or <paramref name="rows"/> is not a whole number of rows.</exception>
    public static void Rotate(Span<float> rows, ReadOnlySpan<float> signs)
    {
        int d = signs.Length;
        CheckLength(d, nameof(signs));
        CheckRows(rows.Length, d);
        float scale = (float)(1.0 / Math.Sqrt(d));
        for (int start = 0; start < rows.Length; start += d)
        {
            var row = rows.Slice(start, d);
            Multiply(row, signs);
            Butterflies(row);
            Scale(row, scale);
        }
    }

    /// <summary>The rotation of <see cref="Rotate(Span{float}, ReadOnlySpan{float})"/> in float64.</summary>
    public static void Rotate(Span<double> rows, ReadOnlySpan<double> signs)
    {
        int d = signs.Length;
        CheckLength(d, nameof(signs));
        CheckRows(rows.Length, d);
        double scale = 1.0 / Math.Sqrt(d);
        for (int start = 0; start < rows.Length; start += d)
        {
            var row = rows.Slice(start, d);
            Multiply(row, signs);
            Butterflies(row);
            Scale(row, scale);
        }
    }

    private static void CheckLength(int d, string name)
    {
        if (!IsSupportedLength(d))
            throw new ArgumentException($"{name}: the Walsh–Hadamard transform needs a power-of-two length (e.g. 64, 128, 256); got {d}", name);
    }

    private static void CheckRows(int total, int rowLength)
    {
        if (total % rowLength != 0)
            throw new ArgumentException($"rows: expected a whole number of rows of {rowLength} elements; got {total} elements", "rows");
    }

    /// <summary>Unnormalised butterflies: after stage h, each block of 2h holds (a + b, a − b) of its halves.</summary>
    private static void Butterflies<T>(Span<T> x) where T : unmanaged, INumber<T>
    {
        int n = x.Length, width = Vector<T>.Count;
        ref T start = ref MemoryMarshal.GetReference(x);
        for (int h = 1; h < n; h *= 2)
        {
            for (int i = 0; i < n; i += 2 * h)
            {
                ref T lo = ref Unsafe.Add(ref start, i);
                ref T hi = ref Unsafe.Add(ref start, i + h);
                int j = 0;
                if (h >= width && Vector.IsHardwareAccelerated)
                    for (; j <= h - width; j += width)
                    {
                        var a = Vector.LoadUnsafe(ref lo, (nuint)j);
                        var b = Vector.LoadUnsafe(ref hi, (nuint)j);
                        (a + b).StoreUnsafe(ref lo, (nuint)j);
                        (a - b).StoreUnsafe(ref hi, (nuint)j);
                    }
                for (; j < h; j++)
                {
                    T a = Unsafe.Add(ref lo, j), b = Unsafe.Add(ref hi, j);
                    Unsafe.Add(ref lo, j) = a + b;
                    Unsafe.Add(ref hi, j) = a - b;
                }
            }
        }
    }

    private static void Scale<T>(Span<T> x, T factor) where T : unmanaged, INumber<T>
    {
        int j = 0, width = Vector<T>.Count;
        ref T start = ref MemoryMarshal.GetReference(x);
        if (Vector.IsHardwareAccelerated)
            for (; j <= x.Length - width; j += width)
                (Vector.LoadUnsafe(ref start, (nuint)j) * factor).StoreUnsafe(ref start, (nuint)j);
        for (; j < x.Length; j++) Unsafe.Add(ref start, j) *= factor;
    }

    private static void Multiply<T>(Span<T> x, ReadOnlySpan<T> y) where T : unmanaged, INumber<T>
    {
        int j = 0, width = Vector<T>.Count;
        ref T start = ref MemoryMarshal.GetReference(x);
        ref T other = ref MemoryMarshal.GetReference(y);
        if (Vector.IsHardwareAccelerated)
            for (; j <= x.Length - width; j += width)
                (Vector.LoadUnsafe(ref start, (nuint)j) * Vector.LoadUnsafe(ref other, (nuint)j)).StoreUnsafe(ref start, (nuint)j);
        for (; j < x.Length; j++) Unsafe.Add(ref start, j) *= Unsafe.Add(ref other, j);
    }
}
