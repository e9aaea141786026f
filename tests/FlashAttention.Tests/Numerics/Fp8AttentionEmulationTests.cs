using System.Numerics.Tensors;
using FlashAttention.Cpu;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Numerics;

/// <summary>The FP8 emulation through the CPU engine (these tests need the tiled engine of the cpu-engine branch).</summary>
public class Fp8AttentionEmulationTests
{
    /// <summary>
    /// An independent, naive emulation of the same steps for one small problem whose keys fit in one tile of the engine (so
    /// the running max is the final max and the online rescaling is the identity): S in float64 from the dequantised operands,
    /// P = exp(S − max) in float64, the row sum from the unrounded P, P cast to E4M3, O = Σ P8 V / sum.
    /// </summary>
    private static double[] NaiveFp8(float[] q, float[] k, float[] v, int sq, int hq, int sk, int hk, int d, bool causal,
        Fp8AttentionOptions fp8, bool sumOfRoundedP = false)
    {
        var qc = (float[])q.Clone();
        var kc = (float[])k.Clone();
        if (fp8.IncoherentProcessing)
        {
            var signs = Hadamard.RandomSigns(d, fp8.HadamardSeed);
            Hadamard.Rotate(qc, signs);
            Hadamard.Rotate(kc, signs);
        }
        var qd = BlockQuantizer.Quantize(qc, 1, sq, hq, d, fp8.Granularity, fp8.BlockSize).Dequantize();
        var kd = BlockQuantizer.Quantize(kc, 1, sk, hk, d, fp8.Granularity, fp8.BlockSize).Dequantize();
        var vd = BlockQuantizer.Quantize(v, 1, sk, hk, d, fp8.Granularity, fp8.BlockSize).Dequantize();
        double scale = 1 / Math.Sqrt(d);
        var o = new double[sq * hq * d];
        for (int h = 0; h < hq; h++)
        {
            int g = h / (hq / hk);
            for (int i = 0; i < sq; i++)
            {
                int last = causal ? i + sk - sq : sk - 1;
                var s = new double[sk];
                double max = double.NegativeInfinity;
                for (int j = 0; j <= last; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += (double)qd[(i * hq + h) * d + c] * kd[(j * hk + g) * d + c];
                    s[j] = dot * scale;
                    max = Math.Max(max, s[j]);
                }
                double sum = 0;
                for (int j = 0; j <= last; j++)
                {
                    double p = Math.Exp(s[j] - max);
                    double p8 = Float8E4M3.FromSingle((float)p);
                    sum += sumOfRoundedP ? p8 : p;
                    for (int c = 0; c < d; c++) o[(i * hq + h) * d + c] += p8 * vd[(j * hk + g) * d + c];
                }
                for (int c = 0; c < d; c++) o[(i * hq + h) * d + c] /= sum;
            }
        }
        return o;
    }

    private static float[] Random(int n, Random rng, double scale = 1)
    {
        var x = new float[n];
        Fp8AccuracyStudy.FillOutlierDistribution(x, rng, 0.02, 5);
        for (int i = 0; i < n; i++) x[i] = (float)(x[i] * scale);
        return x;
    }

    [Theory]
    [InlineData(QuantizationGranularity.PerBlock, true, false)]
    [InlineData(QuantizationGranularity.PerBlock, false, true)]
    [InlineData(QuantizationGranularity.PerTensor, true, true)]
    [InlineData(QuantizationGranularity.PerTensor, false, false)]
    public void Emulation_does_the_documented_steps(QuantizationGranularity granularity, bool incoherent, bool causal)
    {
        const int sq = 5, hq = 4, sk = 12, hk = 2, d = 32; // GQA 2:1; 3 key blocks and 2 query blocks of 4 tokens
        var rng = new Random(21);
        float[] q = Random(sq * hq * d, rng, 2.5), k = Random(sk * hk * d, rng, 2.5), v = Random(sk * hk * d, rng);
        var fp8 = new Fp8AttentionOptions { Granularity = granularity, BlockSize = 4, IncoherentProcessing = incoherent, HadamardSeed = 3 };
        var o = new float[q.Length];
        Array.Fill(o, float.NaN);
        var lse = new float[hq * sq];
        Array.Fill(lse, float.NaN);
        Fp8AttentionEmulation.Forward(new ReadOnlyTensorSpan<float>(q, [1, sq, hq, d], default), new ReadOnlyTensorSpan<float>(k, [1, sk, hk, d], default),
            new ReadOnlyTensorSpan<float>(v, [1, sk, hk, d], default), new TensorSpan<float>(o, [1, sq, hq, d], default),
            new TensorSpan<float>(lse, [1, hq, sq], default), fp8, new AttentionOptions { Causal = causal });

        var expected = NaiveFp8(q, k, v, sq, hq, sk, hk, d, causal, fp8);
        var wrong = NaiveFp8(q, k, v, sq, hq, sk, hk, d, causal, fp8, sumOfRoundedP: true);
        double maxError = 0, maxWrong = 0;
        for (int i = 0; i < o.Length; i++)
        {
            Assert.False(float.IsNaN(o[i]), $"output[{i}] not written");
            maxError = Math.Max(maxError, Math.Abs(o[i] - expected[i]));
            maxWrong = Math.Max(maxWrong, Math.Abs(wrong[i] - expected[i]));
        }
        // float32 against float64 on the same dequantised operands: ~1e-6. Taking the row sum from the rounded P instead
        // (a plausible mistake) moves O by ~1e-2, so the tolerance tells the two apart.
        Assert.True(maxError < 2e-5, $"max |O − naive| = {maxError:E2}");
        Assert.True(maxWrong > 50 * 2e-5, $"the naive variant with the wrong row sum differs by only {maxWrong:E2}");
        Assert.All(lse, l => Assert.True(float.IsFinite(l)));
    }

    [Fact]
    public void Emulation_is_close_to_exact_attention_and_deterministic()
    {
        const int s = 200, h = 2, d = 64;
        var rng = new Random(5);
        float[] q = Random(s * h * d, rng), k = Random(s * h * d, rng), v = Random(s * h * d, rng);
        nint[] shape = [1, s, h, d];
        var reference = ReferenceAttention.Forward(new ReadOnlyTensorSpan<float>(q, shape, default),
            new ReadOnlyTensorSpan<float>(k, shape, default), new ReadOnlyTensorSpan<float>(v, shape, default));
        var o1 = new float[q.Length];
        var o2 = new float[q.Length];
        var lse = new float[h * s];
        Fp8AttentionEmulation.Forward(new ReadOnlyTensorSpan<float>(q, shape, default), new ReadOnlyTensorSpan<float>(k, shape, default),
            new ReadOnlyTensorSpan<float>(v, shape, default), new TensorSpan<float>(o1, shape, default), new TensorSpan<float>(lse, [1, h, s], default));
        Fp8AttentionEmulation.Forward(new ReadOnlyTensorSpan<float>(q, shape, default), new ReadOnlyTensorSpan<float>(k, shape, default),
            new ReadOnlyTensorSpan<float>(v, shape, default), new TensorSpan<float>(o2, shape, default));
        Assert.Equal(o1, o2);
        Assert.InRange(Fp8AccuracyStudy.Rmse(o1, reference.Output), 1e-3, 3e-2); // FP8: clearly inexact, clearly attention
        for (int i = 0; i < lse.Length; i++)
        {
            int head = i / s, row = i % s;
            // The FP8 scores are off by up to a few tenths where outliers meet (that is what the study measures).
            Assert.True(Math.Abs(lse[i] - reference.LogSumExp[head * s + row]) < 0.5, $"lse[{i}] = {lse[i]}, reference {reference.LogSumExp[head * s + row]}");
        }
    }

    [Fact]
    public void Strided_views_of_a_packed_qkv_buffer_give_the_same_result_as_contiguous_tensors()
    {
        const int s = 70, h = 2, d = 32;
        var rng = new Random(6);
        var packed = Random(s * 3 * h * d, rng); // (1, s, 3, h, d): q, k, v interleaved per token
        // (A length-1 batch gets stride 0: TensorSpan counts length × stride of every dimension against the buffer.)
        nint[] lengths = [1, s, h, d], strides = [0, 3 * h * d, d, 1];
        ReadOnlyTensorSpan<float> View(int which) => new(packed, which * h * d, lengths, strides);
        float[] Copy(int which)
        {
            var x = new float[s * h * d];
            for (int t = 0; t < s; t++) Array.Copy(packed, t * 3 * h * d + which * h * d, x, t * h * d, h * d);
            return x;
        }
        var strided = new float[s * h * d];
        var contiguous = new float[s * h * d];
        Fp8AttentionEmulation.Forward(View(0), View(1), View(2), new TensorSpan<float>(strided, lengths, default));
        Fp8AttentionEmulation.Forward(new ReadOnlyTensorSpan<float>(Copy(0), lengths, default), new ReadOnlyTensorSpan<float>(Copy(1), lengths, default),
            new ReadOnlyTensorSpan<float>(Copy(2), lengths, default), new TensorSpan<float>(contiguous, lengths, default));
        Assert.Equal(contiguous, strided);
    }

    [Fact]
    public void Bad_arguments_are_refused_before_anything_is_written()
    {
        var q = new float[1 * 8 * 2 * 48];
        var o = new float[q.Length];
        Array.Fill(o, 7f);
        nint[] shape = [1, 8, 2, 48];
        var ex = Assert.Throws<AttentionArgumentException>(() => Fp8AttentionEmulation.Forward(new ReadOnlyTensorSpan<float>(q, shape, default),
            new ReadOnlyTensorSpan<float>(q, shape, default), new ReadOnlyTensorSpan<float>(q, shape, default), new TensorSpan<float>(o, shape, default)));
        Assert.Equal("fp8", ex.ParamName); // head_dim 48 cannot be rotated
        Assert.Contains("48", ex.Message);
        var wrongShape = new float[1 * 8 * 2 * 32];
        Assert.Equal("output", Assert.Throws<AttentionArgumentException>(() => Fp8AttentionEmulation.Forward(new ReadOnlyTensorSpan<float>(q, shape, default),
            new ReadOnlyTensorSpan<float>(q, shape, default), new ReadOnlyTensorSpan<float>(q, shape, default),
            new TensorSpan<float>(wrongShape, [1, 8, 2, 32], default), new Fp8AttentionOptions { IncoherentProcessing = false })).ParamName);
        Assert.Equal("fp8", Assert.Throws<AttentionArgumentException>(() => Fp8AttentionEmulation.Forward(new ReadOnlyTensorSpan<float>(q, shape, default),
            new ReadOnlyTensorSpan<float>(q, shape, default), new ReadOnlyTensorSpan<float>(q, shape, default), new TensorSpan<float>(o, shape, default),
            new Fp8AttentionOptions { IncoherentProcessing = false, BlockSize = 0 })).ParamName);
        Assert.All(o, x => Assert.Equal(7f, x));
    }
}
