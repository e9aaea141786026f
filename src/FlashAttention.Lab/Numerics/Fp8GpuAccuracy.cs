using System.Diagnostics;
using System.Numerics.Tensors;
using FlashAttention.Cuda.Variants;

namespace FlashAttention.Lab.Numerics;

/// <summary>
/// The FlashAttention-3 paper's FP8 accuracy study (Table 3) through the GPU kernels, each beside the CPU emulation of the
/// same quantisation: outlier inputs <c>N(0,1) + N(0,100)·Bernoulli(0.001)</c> rounded to bf16 (the GPU path's input
/// type), RMSE of O against float64 attention of those inputs. Per-tensor (one descale for each tensor, no rotation)
/// goes through CudaAttention.ForwardFp8 with CPU-quantised codes; per-block and per-block + incoherent through
/// CudaAttention.Forward with Precision = Fp8 (the GPU quantiser: blocks of 64 query and 128 key tokens).
/// </summary>
public static class Fp8GpuAccuracy
{
    public static AccuracyStudyResult Run(AccuracyStudyOptions options, CudaDevice device, Action<string>? log = null)
    {
        var total = Stopwatch.StartNew();
        int b = options.Batch, s = options.SeqLen, h = options.Heads, d = options.HeadDim;
        var (q, k, v) = Fp8AccuracyStudy.OutlierInputs(options);
        long count = q.Length;
        var (q16, k16, v16) = (ToBf16(q), ToBf16(k), ToBf16(v));
        (q, k, v) = (Widen(q16), Widen(k16), Widen(v16));
        nint[] shape = [b, s, h, d];
        long[] shapeL = [b, s, h, d];
        var (reference, referenceSeconds) = Fp8AccuracyStudy.Reference(q, k, v, shape, log);

        var rows = new List<AccuracyStudyRow>();
        void Add(string method, double? paper, string label, Func<float[]> run)
        {
            var w = Stopwatch.StartNew();
            double rmse = Fp8AccuracyStudy.Rmse(run(), reference);
            rows.Add(new AccuracyStudyRow(method, rmse, paper, label, w.Elapsed.TotalSeconds));
            log?.Invoke($"{method}: RMSE {rmse:E3}");
        }
        float[] Emulate(QuantizationGranularity granularity, bool incoherent)
        {
            var o = new float[count];
            Fp8AttentionEmulation.Forward(new ReadOnlyTensorSpan<float>(q, shape, default), new ReadOnlyTensorSpan<float>(k, shape, default),
                new ReadOnlyTensorSpan<float>(v, shape, default), new TensorSpan<float>(o, shape, default), new Fp8AttentionOptions
                {
                    Granularity = granularity, IncoherentProcessing = incoherent, ScaleProbabilities = true,
                    BlockSize = Fp8Variants.QueryBlock, KeyBlockSize = Fp8Variants.KeyBlock,
                });
            return o;
        }

        using var dq = CudaTensor<BFloat16>.FromHost(q16, shapeL, device);
        using var dk = CudaTensor<BFloat16>.FromHost(k16, shapeL, device);
        using var dv = CudaTensor<BFloat16>.FromHost(v16, shapeL, device);
        using var dOut = new CudaTensor<BFloat16>(device, DataType.BFloat16, shapeL);
        float[] Gpu(AttentionOptions opts)
        {
            dOut.Buffer.Fill(0xFF);
            CudaAttention.Forward(dq, dk, dv, dOut, null, opts, device: device);
            device.Synchronize();
            return Widen(dOut.ToArray());
        }
        float[] GpuPerTensor()
        {
            var (cq, sq) = UploadPerTensor(q, shapeL, device);
            var (ck, sk) = UploadPerTensor(k, shapeL, device);
            var (cv, sv) = UploadPerTensor(v, shapeL, device);
            using (cq) using (sq) using (ck) using (sk) using (cv) using (sv)
            {
                dOut.Buffer.Fill(0xFF);
                CudaAttention.ForwardFp8(new Fp8Tensor(cq, sq, Math.Max(s, 1)), new Fp8Tensor(ck, sk, Math.Max(s, 1)), new Fp8Tensor(cv, sv, Math.Max(s, 1)),
                    dOut, null, null, device: device);
                device.Synchronize();
                return Widen(dOut.ToArray());
            }
        }

        Add("GPU FP8 per-tensor", 2.4e-2, "Baseline FP8", GpuPerTensor);
        Add("CPU FP8 per-tensor (emulation)", null, "", () => Emulate(QuantizationGranularity.PerTensor, incoherent: false));
        Add("GPU FP8 per-block", 2.4e-2, "No incoherent processing", () => Gpu(new AttentionOptions { Precision = AttentionPrecision.Fp8, IncoherentProcessing = false }));
        Add("CPU FP8 per-block (emulation)", null, "", () => Emulate(QuantizationGranularity.PerBlock, incoherent: false));
        Add("GPU FP8 per-block + incoherent", 9.1e-3, "FlashAttention-3 FP8", () => Gpu(new AttentionOptions { Precision = AttentionPrecision.Fp8 }));
        Add("CPU FP8 per-block + incoherent (emulation)", null, "", () => Emulate(QuantizationGranularity.PerBlock, incoherent: true));
        Add("GPU BF16", null, "", () => Gpu(new AttentionOptions()));
        return new AccuracyStudyResult(options, rows, referenceSeconds, total.Elapsed.TotalSeconds);
    }

    // One descale for the whole tensor, written for every (batch, head) as the kernel's per-head descale.
    private static (CudaTensor<Float8E4M3> Codes, CudaTensor<float> Descales) UploadPerTensor(float[] x, long[] shape, CudaDevice device)
    {
        int b = (int)shape[0], s = (int)shape[1], h = (int)shape[2], d = (int)shape[3];
        var t = BlockQuantizer.Quantize(x, b, s, h, d, QuantizationGranularity.PerTensor);
        var descales = Enumerable.Repeat(t.Descale[0], b * h).ToArray();
        return (CudaTensor<Float8E4M3>.FromHost(t.Data, shape, device), CudaTensor<float>.FromHost(descales, [b, h, 1], device));
    }

    private static BFloat16[] ToBf16(float[] x)
    {
        var r = new BFloat16[x.Length];
        for (int i = 0; i < x.Length; i++) r[i] = BFloat16.FromBits(BFloat16.RoundToBits(x[i]));
        return r;
    }

    private static float[] Widen(BFloat16[] x)
    {
        var r = new float[x.Length];
        for (int i = 0; i < x.Length; i++) r[i] = BFloat16.ToSingle(x[i].Bits);
        return r;
    }
}
