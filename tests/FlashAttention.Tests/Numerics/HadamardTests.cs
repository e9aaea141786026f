using System.Numerics;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Numerics;

public class HadamardTests
{
    public static TheoryData<int> Sizes => new() { 1, 2, 4, 8, 16, 32, 64, 128, 256 };

    /// <summary>H built column by column from the transform of unit vectors, in float64.</summary>
    private static double[,] MatrixOf(int d)
    {
        var h = new double[d, d];
        for (int j = 0; j < d; j++)
        {
            var e = new double[d];
            e[j] = 1;
            Hadamard.Transform(e);
            for (int i = 0; i < d; i++) h[i, j] = e[i];
        }
        return h;
    }

    [Theory, MemberData(nameof(Sizes))]
    public void Transform_is_the_normalised_Sylvester_matrix_and_orthogonal(int d)
    {
        var h = MatrixOf(d);
        double norm = 1 / Math.Sqrt(d);
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                double sylvester = (BitOperations.PopCount((uint)(i & j)) % 2 == 0 ? 1 : -1) * norm;
                Assert.True(Math.Abs(h[i, j] - sylvester) <= 1e-15, $"H[{i},{j}] = {h[i, j]}, expected {sylvester}");
                double dot = 0;
                for (int c = 0; c < d; c++) dot += h[i, c] * h[j, c];
                Assert.True(Math.Abs(dot - (i == j ? 1 : 0)) <= 1e-12, $"(H Hᵀ)[{i},{j}] = {dot}");
            }
    }

    [Fact]
    public void Float_transform_matches_float64_and_is_an_involution()
    {
        var rng = new Random(1);
        var x = Enumerable.Range(0, 128).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var xd = x.Select(v => (double)v).ToArray();
        var y = (float[])x.Clone();
        Hadamard.Transform(y);
        Hadamard.Transform(xd);
        for (int i = 0; i < x.Length; i++) Assert.True(Math.Abs(y[i] - xd[i]) <= 1e-6, $"{i}: {y[i]} vs {xd[i]}");
        Hadamard.Transform(y); // H is symmetric and orthogonal: H H = I
        for (int i = 0; i < x.Length; i++) Assert.True(Math.Abs(y[i] - x[i]) <= 1e-6);
    }

    [Fact]
    public void Rotation_preserves_every_inner_product_of_Q_and_K()
    {
        const int n = 40, d = 128;
        var rng = new Random(2);
        var signs = Hadamard.RandomSigns(d, seed: 5);
        var q = new float[n * d];
        var k = new float[n * d];
        Fp8AccuracyStudy.FillOutlierDistribution(q, rng, 0.01);
        Fp8AccuracyStudy.FillOutlierDistribution(k, rng, 0.01);
        var qd = q.Select(v => (double)v).ToArray();
        var kd = k.Select(v => (double)v).ToArray();
        var qm = (float[])q.Clone();
        var km = (float[])k.Clone();
        Hadamard.Rotate(qm, signs);
        Hadamard.Rotate(km, signs);
        var signsD = signs.Select(v => (double)v).ToArray();
        var qmd = (double[])qd.Clone();
        var kmd = (double[])kd.Clone();
        Hadamard.Rotate(qmd, signsD);
        Hadamard.Rotate(kmd, signsD);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double exact = 0, rotated = 0, rotatedD = 0, bound = 0;
                for (int c = 0; c < d; c++)
                {
                    exact += qd[i * d + c] * kd[j * d + c];
                    rotated += (double)qm[i * d + c] * km[j * d + c];
                    rotatedD += qmd[i * d + c] * kmd[j * d + c];
                    bound += Math.Abs(qd[i * d + c] * kd[j * d + c]);
                }
                // float32 rotation: a few float32 roundings per element over log2(d) stages; float64: to 1e-12 relative.
                Assert.True(Math.Abs(rotated - exact) <= 1e-5 * Math.Sqrt(Sum(qd, i, d) * Sum(kd, j, d)), $"({i},{j}): {rotated} vs {exact}");
                Assert.True(Math.Abs(rotatedD - exact) <= 1e-12 * Math.Max(bound, 1), $"({i},{j}) float64: {rotatedD} vs {exact}");
            }

        static double Sum(double[] x, int row, int d)
        {
            double s = 0;
            for (int c = 0; c < d; c++) s += x[row * d + c] * x[row * d + c];
            return s;
        }
    }

    [Fact]
    public void Rotation_spreads_an_outlier_over_every_coordinate()
    {
        var x = new float[64];
        x[17] = 32;
        Hadamard.Rotate(x, Hadamard.RandomSigns(64, 9));
        foreach (float v in x) Assert.Equal(4f, MathF.Abs(v)); // 32 / sqrt(64)
    }

    [Fact]
    public void Random_signs_are_reproducible_balanced_and_plus_or_minus_one()
    {
        var a = Hadamard.RandomSigns(4096, 11);
        Assert.Equal(a, Hadamard.RandomSigns(4096, 11));
        Assert.NotEqual(a, Hadamard.RandomSigns(4096, 12));
        Assert.All(a, s => Assert.True(s is 1f or -1f));
        Assert.InRange(a.Count(s => s > 0), 1900, 2200);
        Assert.Throws<ArgumentOutOfRangeException>(() => Hadamard.RandomSigns(0, 1));
    }

    [Fact]
    public void Lengths_that_are_not_powers_of_two_are_refused_by_name()
    {
        var ex = Assert.Throws<ArgumentException>(() => Hadamard.Transform(new float[96]));
        Assert.Equal("x", ex.ParamName);
        Assert.Contains("96", ex.Message);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => Hadamard.Transform(Span<double>.Empty)).ParamName);
        Assert.Equal("signs", Assert.Throws<ArgumentException>(() => Hadamard.Rotate(new float[80], new float[80])).ParamName);
        Assert.Equal("rows", Assert.Throws<ArgumentException>(() => Hadamard.Rotate(new float[100], new float[64])).ParamName);
        Assert.Equal("rowLength", Assert.Throws<ArgumentException>(() => Hadamard.TransformRows(new float[120], 12)).ParamName);
    }

    [Fact]
    public void TransformRows_transforms_each_row()
    {
        var rows = Enumerable.Range(0, 3 * 32).Select(i => (float)Math.Sin(i)).ToArray();
        var expected = (float[])rows.Clone();
        for (int r = 0; r < 3; r++) Hadamard.Transform(expected.AsSpan(r * 32, 32));
        Hadamard.TransformRows(rows, 32);
        Assert.Equal(expected, rows);
    }
}
