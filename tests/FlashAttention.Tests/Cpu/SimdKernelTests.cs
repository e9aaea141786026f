using FlashAttention.Cpu;

namespace FlashAttention.Tests.Cpu;

/// <summary>The engine's building blocks at every vector width: exp2, tanh, the GEMM micro-kernels.</summary>
public unsafe class SimdKernelTests
{
    public static TheoryData<int> Widths() => [512, 256, 128];

    private static void ForWidth(int width, Action<Func<float[], float[]>, Func<float[], float[]>> body)
    {
        switch (width)
        {
            case 512: body(Map<Simd512>(SimdMath.Exp2), Map<Simd512>(SimdMath.Tanh)); break;
            case 256: body(Map<Simd256>(SimdMath.Exp2), Map<Simd256>(SimdMath.Tanh)); break;
            default: body(Map<Simd128>(SimdMath.Exp2), Map<Simd128>(SimdMath.Tanh)); break;
        }
    }

    private static Func<float[], float[]> Map<TV>(Func<TV, TV> f) where TV : unmanaged, ISimd<TV> => input =>
    {
        int w = TV.Count, n = (input.Length + w - 1) / w * w;
        var src = new float[n];
        var dst = new float[n];
        input.CopyTo(src, 0);
        fixed (float* s = src, d = dst)
            for (int i = 0; i < n; i += w) TV.Store(d + i, f(TV.Load(s + i)));
        return dst[..input.Length];
    };

    [Theory]
    [MemberData(nameof(Widths))]
    public void Exp2_is_accurate_and_handles_the_edges(int width) => ForWidth(width, (exp2, _) =>
    {
        var xs = new List<float>();
        for (double x = -125.9; x <= 10; x += 0.00731) xs.Add((float)x);
        float[] y = exp2([.. xs]);
        for (int i = 0; i < xs.Count; i++)
        {
            double expected = Math.Pow(2, xs[i]);
            Assert.True(Math.Abs(y[i] - expected) <= 2.5e-7 * expected, $"exp2({xs[i]:R}) = {y[i]:R}, expected {expected:R}");
        }
        float[] edges = exp2([float.NegativeInfinity, -126.5f, -1000f, 0f, float.NaN, -0f]);
        Assert.Equal(0f, edges[0]);
        Assert.Equal(0f, edges[1]);
        Assert.Equal(0f, edges[2]);
        Assert.Equal(1f, edges[3]);
        Assert.True(float.IsNaN(edges[4]));
        Assert.Equal(1f, edges[5]);
    });

    [Theory]
    [MemberData(nameof(Widths))]
    public void Tanh_is_accurate(int width) => ForWidth(width, (_, tanh) =>
    {
        var xs = new List<float>();
        for (double x = -12; x <= 12; x += 0.000917) xs.Add((float)x);
        xs.AddRange([1e-6f, -3e-5f, 0f, 4e-4f, 100f, -100f]);
        float[] y = tanh([.. xs]);
        for (int i = 0; i < xs.Count; i++)
        {
            double expected = Math.Tanh(xs[i]);
            // A few float32 ulps, relative (so the softcapped score cap·tanh(s/cap) keeps float32 accuracy even for small s).
            Assert.True(Math.Abs(y[i] - expected) <= 4e-7 * Math.Abs(expected) + 1e-30, $"tanh({xs[i]:R}) = {y[i]:R}, expected {expected:R}");
        }
    });

    public static TheoryData<int, int, int, int, bool, bool> GemmShapes() => new()
    {
        { 512, 1, 16, 1, false, false },
        { 512, 13, 80, 37, true, true },
        { 512, 6, 64, 128, false, false },
        { 512, 7, 112, 5, true, false },
        { 256, 11, 40, 9, true, true },
        { 256, 64, 128, 64, false, false },
        { 128, 5, 28, 3, true, true },
    };

    /// <summary>C = A·B and C = diag(s)·C + A·B against a double-precision loop, A strided both ways, any M and depth.</summary>
    [Theory]
    [MemberData(nameof(GemmShapes))]
    public void Gemm_matches_naive_product(int width, int m, int n, int k, bool accumulate, bool rowScale)
    {
        var rng = new Random(m * 1000 + n * 10 + k);
        nint aRow = 3, aK = 3 * m + 1, ldb = n + 5, ldc = n + 2;
        var a = new float[aK * k + aRow * m + 1];
        var b = new float[ldb * k + 1];
        var c = new float[ldc * m + 1];
        var s = new float[m];
        foreach (var arr in new[] { a, b, c, s })
            for (int i = 0; i < arr.Length; i++) arr[i] = (float)(rng.NextDouble() * 2 - 1);
        var expected = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double acc = accumulate ? c[i * ldc + j] * (rowScale ? (double)s[i] : 1) : 0;
                for (int x = 0; x < k; x++) acc += (double)a[i * aRow + x * aK] * b[x * ldb + j];
                expected[i * n + j] = acc;
            }
        float sentinel = c[^1];
        fixed (float* pa = a, pb = b, pc = c, ps = s)
        {
            float* scale = rowScale ? ps : null;
            switch (width)
            {
                case 512: GemmKernels.Run<Simd512>(m, n, k, pa, aRow, aK, pb, ldb, pc, ldc, accumulate, scale); break;
                case 256: GemmKernels.Run<Simd256>(m, n, k, pa, aRow, aK, pb, ldb, pc, ldc, accumulate, scale); break;
                default: GemmKernels.Run<Simd128>(m, n, k, pa, aRow, aK, pb, ldb, pc, ldc, accumulate, scale); break;
            }
        }
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                Assert.True(Math.Abs(c[i * ldc + j] - expected[i * n + j]) <= 1e-5 * (k + 1), $"C[{i},{j}] = {c[i * ldc + j]}, expected {expected[i * n + j]}");
        Assert.Equal(sentinel, c[^1]);
    }
}

/// <summary>The tile conversions, on every 16-bit pattern.</summary>
public unsafe class TileConvertTests
{
    [Fact]
    public void Half_to_single_is_exact_for_all_65536_values()
    {
        var bits = new ushort[65536 + 7]; // odd length: the vector loop and the scalar tail both run
        for (int i = 0; i < bits.Length; i++) bits[i] = (ushort)i;
        var result = new float[bits.Length];
        fixed (ushort* s = bits)
        fixed (float* d = result)
            TileConvert.ToSingle((Half*)s, d, bits.Length, bits.Length);
        for (int i = 0; i < bits.Length; i++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf(bits[i]);
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(result[i]), $"half 0x{bits[i]:X4}");
            else Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(result[i]),
                $"half 0x{bits[i]:X4}: {result[i]:R}, expected {expected:R}");
        }
    }

    [Fact]
    public void BFloat16_to_single_is_exact_and_pads_with_zeros()
    {
        var bits = new ushort[65536 + 5];
        for (int i = 0; i < bits.Length; i++) bits[i] = (ushort)i;
        var result = new float[bits.Length + 3];
        Array.Fill(result, float.NaN);
        fixed (ushort* s = bits)
        fixed (float* d = result)
            TileConvert.ToSingle((FlashAttention.Numerics.BFloat16*)s, d, bits.Length, result.Length);
        for (int i = 0; i < bits.Length; i++)
            Assert.Equal(BitConverter.SingleToInt32Bits(FlashAttention.Numerics.BFloat16.ToSingle(bits[i])), BitConverter.SingleToInt32Bits(result[i]));
        Assert.Equal([0f, 0f, 0f], result[^3..]);
    }
}
