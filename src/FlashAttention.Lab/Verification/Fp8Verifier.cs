using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;

namespace FlashAttention.Lab.Verification;

/// <summary>
/// Checks the FP8 forward against the CPU on the same quantised inputs. The CPU quantises the random bf16 inputs as the
/// quantiser does (the Hadamard rotation of Q and K, then E4M3 codes per block of 64 query / 128 key tokens, or per head),
/// and three results are compared on the dequantised values: the float64 reference (exact attention of the quantised
/// inputs), the CPU engine with P cast to E4M3 after ×2⁸ as the kernel casts it (the FP8 emulation), and the GPU. The
/// rule is the BF16 one with the emulation (its O rounded to the output type) as the plain implementation: the GPU's
/// largest error against the reference is at most twice the emulation's plus the output type's rounding step at 0.3 (O),
/// or 0.01 (LSE: the FP8 products' rounding of the scores).
/// Inputs quantised on the GPU are also compared code for code with the CPU's (the arithmetic is the same).
/// </summary>
public static class Fp8Verifier
{
    public static List<VerifyRow> Run(VerifyCase c, CudaDevice device, int seed)
    {
        if (c.Type == DataType.Float16) return Run<Half>(c, device, seed);
        return Run<BFloat16>(c, device, seed);
    }

    private static List<VerifyRow> Run<T>(VerifyCase c, CudaDevice device, int seed) where T : unmanaged
    {
        var rng = new Random(seed);
        long[] qShape = [c.Batch, c.SeqLenQ, c.HeadsQ, c.HeadDim], kShape = [c.Batch, c.SeqLenK, c.HeadsK, c.HeadDim];
        long[] lseShape = [c.Batch, c.HeadsQ, c.SeqLenQ];
        var q = GpuAttentionVerifier.RandomNormal<T>(qShape, rng);
        var k = GpuAttentionVerifier.RandomNormal<T>(kShape, rng);
        var v = GpuAttentionVerifier.RandomNormal<T>(kShape, rng);
        int hadamardSeed = seed & 0xFFFF;
        bool rotate = c.Fp8 == Fp8Path.Incoherent;
        bool perHead = c.Fp8 == Fp8Path.PerHead;
        int qBlock = perHead ? Math.Max(c.SeqLenQ, 1) : Fp8Variants.QueryBlock;
        int kvBlock = perHead ? Math.Max(c.SeqLenK, 1) : Fp8Variants.KeyBlock;

        // The CPU's quantisation of the same inputs: codes and descales, and the values they stand for.
        float[] qf = ToFloat(q), kf = ToFloat(k), vf = ToFloat(v);
        if (rotate)
        {
            var signs = Hadamard.RandomSigns(c.HeadDim, hadamardSeed);
            Hadamard.Rotate(qf, signs);
            Hadamard.Rotate(kf, signs);
        }
        var q8 = BlockQuantizer.Quantize(qf, c.Batch, c.SeqLenQ, c.HeadsQ, c.HeadDim, QuantizationGranularity.PerBlock, qBlock);
        var k8 = BlockQuantizer.Quantize(kf, c.Batch, c.SeqLenK, c.HeadsK, c.HeadDim, QuantizationGranularity.PerBlock, kvBlock);
        var v8 = BlockQuantizer.Quantize(vf, c.Batch, c.SeqLenK, c.HeadsK, c.HeadDim, QuantizationGranularity.PerBlock, kvBlock);
        float[] qd = q8.Dequantize(), kd = k8.Dequantize(), vd = v8.Dequantize();

        var options = c.Options with { Precision = AttentionPrecision.Fp8, IncoherentProcessing = rotate, HadamardSeed = hadamardSeed };
        var reference = ReferenceAttention.Forward(Span(qd, qShape), Span(kd, kShape), Span(vd, kShape), c.Options);
        var emulated = new float[qd.Length];
        var emulatedLse = new float[c.Batch * c.HeadsQ * c.SeqLenQ];
        Fp8AttentionEmulation.RunEngine<float, E4M3Offset8ProbabilityRounding>(qd, kd, vd, Lengths(qShape), Lengths(kShape),
            new TensorSpan<float>(emulated, Lengths(qShape), default), new TensorSpan<float>(emulatedLse, Lengths(lseShape), default), c.Options);
        // O leaves the kernel in the input's 16-bit type (bf16 from pre-quantised codes): the emulation's O is rounded alike.
        var outputType = c.Fp8 is Fp8Path.Incoherent or Fp8Path.Plain ? c.Type : DataType.BFloat16;
        for (int i = 0; i < emulated.Length; i++)
            emulated[i] = outputType == DataType.Float16 ? (float)(Half)emulated[i] : BFloat16.ToSingle(BFloat16.RoundToBits(emulated[i]));

        // The GPU, its outputs poisoned first.
        using var dOut = new CudaTensor<BFloat16>(device, DataType.BFloat16, qShape);
        using var dLse = new CudaTensor<float>(device, null, lseShape);
        var rows = new List<VerifyRow>();
        if (c.Fp8 is Fp8Path.Incoherent or Fp8Path.Plain)
        {
            using var dq = CudaTensor<T>.FromHost(q, qShape, device);
            using var dk = CudaTensor<T>.FromHost(k, kShape, device);
            using var dv = CudaTensor<T>.FromHost(v, kShape, device);
            using var dOut16 = new CudaTensor<T>(device, null, qShape);
            dOut16.Buffer.Fill(0xFF);
            dLse.Buffer.Fill(0xFF);
            CudaAttention.Forward(dq, dk, dv, dOut16, dLse, options, device: device);
            device.Synchronize();
            rows.Add(Compare(c, "O", GpuAttentionVerifier.ToDouble(dOut16.ToArray()), reference.Output, emulated, GpuAttentionVerifier.Epsilon(c.Type)));
            if (c.SeqLenK > 0) rows.Add(CompareCodes(c, device, q8, k8, v8));
        }
        else
        {
            using var cq = Upload(q8, device);
            using var ck = Upload(k8, device);
            using var cv = Upload(v8, device);
            using var sq = CudaTensor<float>.FromHost(q8.Descale, [c.Batch, c.HeadsQ, q8.BlockCount], device);
            using var sk = CudaTensor<float>.FromHost(k8.Descale, [c.Batch, c.HeadsK, k8.BlockCount], device);
            using var sv = CudaTensor<float>.FromHost(v8.Descale, [c.Batch, c.HeadsK, v8.BlockCount], device);
            dOut.Buffer.Fill(0xFF);
            dLse.Buffer.Fill(0xFF);
            CudaAttention.ForwardFp8(new Fp8Tensor(cq, sq, qBlock), new Fp8Tensor(ck, sk, kvBlock), new Fp8Tensor(cv, sv, kvBlock),
                dOut, dLse, c.Options, device: device);
            device.Synchronize();
            rows.Add(Compare(c, "O", GpuAttentionVerifier.ToDouble(dOut.ToArray()), reference.Output, emulated, GpuAttentionVerifier.Epsilon(DataType.BFloat16)));
        }
        rows.Add(Compare(c, "LSE", dLse.ToArray().Select(x => (double)x).ToArray(), reference.LogSumExp, emulatedLse, 1e-2));
        return rows;
    }

    /// <summary>The quantiser's codes and descales, read from the stream's workspace, against the CPU's: equal bit for bit.</summary>
    private static VerifyRow CompareCodes(VerifyCase c, CudaDevice device, QuantizedTensor<Float8E4M3> q8, QuantizedTensor<Float8E4M3> k8,
        QuantizedTensor<Float8E4M3> v8)
    {
        var ws = Fp8ForwardLauncher.Workspace.Workspaces.For(device, null, () => throw new InvalidOperationException("no FP8 workspace on the default stream"));
        int d = c.HeadDim, keysPadded = Math.Max(16, (c.SeqLenK + 15) / 16 * 16);
        byte[] Read(nint address, long count)
        {
            var bytes = new byte[count];
            DeviceBuffer.CopyToHost(device, address, bytes);
            return bytes;
        }
        float[] ReadFloats(nint address, int count) => MemoryMarshal.Cast<byte, float>(Read(address, 4L * count)).ToArray();
        int wrong = 0;
        wrong += Differing(Read(ws.Q, q8.Data.Length), Bytes(q8));
        wrong += Differing(Read(ws.K, k8.Data.Length), Bytes(k8));
        var vt = Read(ws.Vt, (long)c.Batch * c.HeadsK * d * keysPadded);
        var vCodes = Bytes(v8);
        for (int b = 0; b < c.Batch; b++)
            for (int s = 0; s < c.SeqLenK; s++)
                for (int h = 0; h < c.HeadsK; h++)
                    for (int x = 0; x < d; x++)
                        if (vt[(((long)b * c.HeadsK + h) * d + x) * keysPadded + PrimitiveProbes.VtPosition(s)] != vCodes[(((long)b * c.SeqLenK + s) * c.HeadsK + h) * d + x])
                            wrong++;
        int descales = 0;
        descales += Differing(ReadFloats(ws.QDescale, q8.Descale.Length), q8.Descale);
        descales += Differing(ReadFloats(ws.KDescale, k8.Descale.Length), k8.Descale);
        descales += Differing(ReadFloats(ws.VDescale, v8.Descale.Length), v8.Descale);
        return new VerifyRow(c, "codes", wrong + descales, 0, 0, wrong + descales == 0,
            $"{wrong} E4M3 codes and {descales} descales differ from the CPU quantiser's");
    }

    private static int Differing<TValue>(TValue[] a, TValue[] b) where TValue : IEquatable<TValue>
    {
        int n = 0;
        for (int i = 0; i < a.Length; i++)
            if (!a[i].Equals(b[i])) n++;
        return n;
    }

    private static byte[] Bytes(QuantizedTensor<Float8E4M3> t) => MemoryMarshal.AsBytes(t.Data.AsSpan()).ToArray();

    private static CudaTensor<Float8E4M3> Upload(QuantizedTensor<Float8E4M3> t, CudaDevice device)
        => CudaTensor<Float8E4M3>.FromHost(t.Data, [t.Batch, t.SeqLen, t.Heads, t.HeadDim], device);

    // As the BF16 rule: the GPU's largest error against the reference within twice the emulation's plus eps.
    private static VerifyRow Compare(VerifyCase c, string quantity, double[] got, double[] reference, float[] emulated, double eps)
    {
        var (err, emuErr, tol, nan) = GpuAttentionVerifier.Measure(got, reference, emulated, eps);
        return new VerifyRow(c, quantity, err, emuErr, tol, err <= tol && nan == 0, nan > 0 ? $"{nan} elements NaN (unwritten or invalid)" : null);
    }

    private static float[] ToFloat<T>(T[] a) where T : unmanaged
    {
        var r = new float[a.Length];
        for (int i = 0; i < a.Length; i++) r[i] = ElementConvert.ToSingle(a[i]);
        return r;
    }

    private static nint[] Lengths(long[] shape) => shape.Select(x => (nint)x).ToArray();

    private static ReadOnlyTensorSpan<float> Span(float[] data, long[] shape) => new(data, Lengths(shape), []);
}
