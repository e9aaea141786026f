using FlashAttention.Numerics;

namespace FlashAttention.Tests.Numerics;

public class BlockQuantizerTests
{
    private const int B = 2, S = 150, H = 3, D = 16, N = 64; // 3 blocks per (b, h), the last one 22 tokens long

    private static long Index(int b, int s, int h, int c) => (((long)b * S + s) * H + h) * D + c;

    /// <summary>Values in (−1, 1), then each (b, h, block) gets its own known amax planted in one element.</summary>
    private static (float[] X, float[,,] Amax) Planted(bool zeroBlock = false)
    {
        var rng = new Random(4);
        var x = new float[B * S * H * D];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 1.8 - 0.9);
        var amax = new float[B, H, 3];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int j = 0; j < 3; j++)
                {
                    float a = 1 + b * 10 + h * 3 + j * 0.7f;
                    int s = Math.Min(S - 1, j * N + rng.Next(N));
                    x[Index(b, s, h, rng.Next(D))] = rng.Next(2) == 0 ? a : -a;
                    amax[b, h, j] = a;
                }
        if (zeroBlock)
        {
            for (int s = N; s < 2 * N; s++)
                for (int c = 0; c < D; c++) x[Index(1, s, 2, c)] = 0;
            amax[1, 2, 1] = 0;
        }
        return (x, amax);
    }

    [Fact]
    public void Per_block_scales_are_computed_per_block_in_the_documented_layout()
    {
        var (x, amax) = Planted();
        var q = BlockQuantizer.Quantize(x, B, S, H, D, QuantizationGranularity.PerBlock);
        Assert.Equal(3, q.BlockCount);
        Assert.Equal(B * H * 3, q.Descale.Length);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int j = 0; j < 3; j++)
                {
                    Assert.Equal(amax[b, h, j] / 448f, q.Descale[(b * H + h) * 3 + j]);
                    for (int s = j * N; s < Math.Min(S, (j + 1) * N); s++) Assert.Equal(amax[b, h, j] / 448f, q.DescaleOf(b, s, h));
                }
        // The element holding a block's amax lands on ±448 exactly; everything else within half an E4M3 ulp after dequantising:
        // 2^-4 relative for normals, half the subnormal step 2^-10 (times the descale) below 2^-6.
        var back = q.Dequantize();
        for (int i = 0; i < x.Length; i++)
        {
            int s = (int)(i / (H * D) % S), h = (int)(i / D % H), b = (int)(i / (S * H * D));
            Assert.True(Math.Abs(back[i] - x[i]) <= Math.Abs(x[i]) / 16 + MathF.ScaleB(1, -10) * q.DescaleOf(b, s, h) * 1.0001,
                $"x[{i}] = {x[i]}, dequantised {back[i]}");
            if (MathF.Abs(q.Data[i]) == 448f) Assert.Equal(x[i], back[i], 1e-5f);
        }
    }

    [Fact]
    public void Per_tensor_scale_is_the_global_amax()
    {
        var (x, _) = Planted();
        float amax = x.Max(MathF.Abs);
        var q = BlockQuantizer.Quantize(x, B, S, H, D, QuantizationGranularity.PerTensor);
        Assert.Single(q.Descale);
        Assert.Equal(amax / 448f, q.Descale[0]);
        Assert.Equal(1, q.BlockCount);
        Assert.Equal(amax / 448f, q.DescaleOf(1, 149, 2));
        int at = Array.FindIndex(x, v => MathF.Abs(v) == amax);
        Assert.Equal(448f, MathF.Abs(q.Data[at]));
        var back = q.Dequantize();
        for (int i = 0; i < x.Length; i++)
            Assert.True(Math.Abs(back[i] - x[i]) <= Math.Abs(x[i]) / 16 + MathF.ScaleB(1, -10) * q.Descale[0] * 1.0001, $"x[{i}] = {x[i]}, dequantised {back[i]}");
    }

    [Fact]
    public void All_zero_block_gets_descale_one_and_zero_codes()
    {
        var (x, amax) = Planted(zeroBlock: true);
        var q = BlockQuantizer.Quantize(x, B, S, H, D, QuantizationGranularity.PerBlock);
        Assert.Equal(1f, q.Descale[(1 * H + 2) * 3 + 1]);
        for (int s = N; s < 2 * N; s++)
            for (int c = 0; c < D; c++) Assert.Equal(0, q.Data[Index(1, s, 2, c)].Bits & 0x7F);
        Assert.Equal(amax[1, 2, 0] / 448f, q.Descale[(1 * H + 2) * 3]); // neighbours unaffected
        var zeros = BlockQuantizer.Quantize(new float[64], 1, 4, 1, 16, QuantizationGranularity.PerTensor);
        Assert.Equal(1f, zeros.Descale[0]);
        Assert.All(zeros.Dequantize(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void Tiny_amax_keeps_the_scale_finite()
    {
        var x = new float[16];
        x[3] = 1e-40f; // subnormal float32
        x[5] = -3e-41f;
        var q = BlockQuantizer.Quantize(x, 1, 1, 1, 16, QuantizationGranularity.PerTensor);
        Assert.Equal(BlockQuantizer.MinDescale, q.Descale[0]);
        Assert.All(q.Dequantize(), v => Assert.True(float.IsFinite(v)));
        Assert.True(q.Dequantize()[3] > 0);
    }

    [Fact]
    public void E5M2_quantisation_uses_57344()
    {
        var (x, amax) = Planted();
        var q = BlockQuantizer.Quantize<Float8E5M2>(x, B, S, H, D, QuantizationGranularity.PerBlock, blockSize: 64);
        Assert.Equal(amax[0, 1, 2] / 57344f, q.Descale[(0 * H + 1) * 3 + 2]);
        var back = q.Dequantize();
        for (int i = 0; i < x.Length; i++) Assert.True(Math.Abs(back[i] - x[i]) <= Math.Abs(x[i]) / 8 + MathF.ScaleB(1, -17) * 60 / 57344f);
    }

    [Fact]
    public void Block_size_is_configurable()
    {
        var (x, _) = Planted();
        var q = BlockQuantizer.Quantize(x, B, S, H, D, QuantizationGranularity.PerBlock, blockSize: 7);
        Assert.Equal((S + 6) / 7, q.BlockCount);
        for (int s = 0; s < S; s++)
        {
            float amax = 0;
            for (int t = s / 7 * 7; t < Math.Min(S, s / 7 * 7 + 7); t++)
                for (int c = 0; c < D; c++) amax = MathF.Max(amax, MathF.Abs(x[Index(1, t, 1, c)]));
            Assert.Equal(amax / 448f, q.DescaleOf(1, s, 1));
        }
    }

    [Fact]
    public void Bad_arguments_are_refused_by_name()
    {
        var x = new float[2 * 3 * 4 * 8];
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(x, 2, 3, 4, 7, QuantizationGranularity.PerTensor)).ParamName);
        Assert.Equal("blockSize", Assert.Throws<ArgumentOutOfRangeException>(() => BlockQuantizer.Quantize(x, 2, 3, 4, 8, QuantizationGranularity.PerBlock, 0)).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentOutOfRangeException>(() => BlockQuantizer.Quantize(x, 2, 3, -4, 8, QuantizationGranularity.PerBlock)).ParamName);
        x[37] = float.PositiveInfinity;
        var ex = Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(x, 2, 3, 4, 8, QuantizationGranularity.PerBlock));
        Assert.Equal("x", ex.ParamName);
        Assert.Contains("x[37]", ex.Message);
        x[37] = float.NaN;
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(x, 2, 3, 4, 8, QuantizationGranularity.PerTensor)).ParamName);
    }
}
