using System.Numerics.Tensors;
using FlashAttention.Cpu;
using FlashAttention.Numerics;

using FlashAttention.Cuda;
using FlashAttention.Lab.Probes;

namespace FlashAttention.Lab.Verification;

/// <summary>One checked quantity of one case: the GPU's error against float64, the plain same-precision error, the bound.</summary>
public sealed record VerifyRow(VerifyCase Case, string Quantity, double Error, double PlainError, double Tolerance, bool Passed, string? Note = null);

/// <summary>
/// Runs a case on the GPU and on the CPU, on fresh random inputs (normal, never zeros), with every output poisoned
/// (NaN) first so an element the kernel failed to write shows as an infinite error. The rule is FlashAttention's own:
/// the GPU's largest absolute error against the float64 reference must be at most twice that of a plain
/// implementation in the same precision (<see cref="PlainAttention"/>), plus ε = the element type's rounding step at
/// 0.3 (2⁻⁹ for bfloat16, 2⁻¹² for float16). The plain error must itself lie within
/// <see cref="PlainAttention.ErrorBound(DataType, long, double)"/>, so a wrong reference fails the case rather than
/// widening the allowance.
/// </summary>
public static class GpuAttentionVerifier
{
    public static List<VerifyRow> Run(VerifyCase c, CudaDevice device, int seed) => c.Fp8 != Fp8Path.None ? Fp8Verifier.Run(c, device, seed) : c.Type switch
    {
        DataType.BFloat16 => Run<BFloat16>(c, device, seed),
        DataType.Float16 => Run<Half>(c, device, seed),
        _ => throw new ArgumentOutOfRangeException(nameof(c), c.Type, "GPU kernels take bf16 or fp16"),
    };

    public static double Epsilon(DataType t) => t == DataType.BFloat16 ? 1.0 / 512 : 1.0 / 4096;

    private static List<VerifyRow> Run<T>(VerifyCase c, CudaDevice device, int seed) where T : unmanaged
    {
        var rng = new Random(seed);
        long[] qShape = [c.Batch, c.SeqLenQ, c.HeadsQ, c.HeadDim], kShape = [c.Batch, c.SeqLenK, c.HeadsK, c.HeadDim];
        long[] lseShape = [c.Batch, c.HeadsQ, c.SeqLenQ];
        var q = RandomNormal<T>(qShape, rng);
        var k = RandomNormal<T>(kShape, rng);
        var v = RandomNormal<T>(kShape, rng);
        var options = c.Options;

        using var dq = CudaTensor<T>.FromHost(q, qShape, device);
        using var dk = CudaTensor<T>.FromHost(k, kShape, device);
        using var dv = CudaTensor<T>.FromHost(v, kShape, device);
        using var dOut = new CudaTensor<T>(device, null, qShape);
        using var dLse = new CudaTensor<float>(device, null, lseShape);
        dOut.Buffer.Fill(0xFF);
        dLse.Buffer.Fill(0xFF);
        CudaAttention.Forward(dq, dk, dv, dOut, dLse, options, device: device);
        device.Synchronize();

        var rows = new List<VerifyRow>();
        var qSpan = new ReadOnlyTensorSpan<T>(q, qShape.Select(x => (nint)x).ToArray(), []);
        var kSpan = new ReadOnlyTensorSpan<T>(k, kShape.Select(x => (nint)x).ToArray(), []);
        var vSpan = new ReadOnlyTensorSpan<T>(v, kShape.Select(x => (nint)x).ToArray(), []);
        double eps = Epsilon(c.Type);

        if (!c.Backward)
        {
            var reference = ReferenceAttention.Forward(qSpan, kSpan, vSpan, options);
            var plain = PlainAttention.Forward(qSpan, kSpan, vSpan, options);
            var o = dOut.ToArray();
            var lse = dLse.ToArray();
            rows.Add(Compare(c, "O", ToDouble(o), reference.Output, plain.Output, eps));
            rows.Add(Compare(c, "LSE", lse.Select(x => (double)x).ToArray(), reference.LogSumExp, plain.LogSumExp, 1e-3));
            return rows;
        }

        var dO = RandomNormal<T>(qShape, rng);
        using var dDO = CudaTensor<T>.FromHost(dO, qShape, device);
        using var dDQ = new CudaTensor<T>(device, null, qShape);
        using var dDK = new CudaTensor<T>(device, null, kShape);
        using var dDV = new CudaTensor<T>(device, null, kShape);
        T[] Gradients(CudaTensor<T> t) => t.ToArray();
        void Backward()
        {
            foreach (var t in new[] { dDQ, dDK, dDV }) t.Buffer.Fill(0xFF);
            CudaAttention.Backward(dq, dk, dv, dOut, dDO, dLse, dDQ, dDK, dDV, options, device: device);
            device.Synchronize();
        }
        Backward();
        var (gq, gk, gv) = (Gradients(dDQ), Gradients(dDK), Gradients(dDV));
        var doSpan = new ReadOnlyTensorSpan<T>(dO, qShape.Select(x => (nint)x).ToArray(), []);
        var refGrad = ReferenceAttention.Backward(qSpan, kSpan, vSpan, doSpan, options);
        var plainGrad = PlainAttention.Backward(qSpan, kSpan, vSpan, doSpan, options);
        rows.Add(Compare(c, "dQ", ToDouble(gq), refGrad.Query, plainGrad.Query, eps));
        rows.Add(Compare(c, "dK", ToDouble(gk), refGrad.Key, plainGrad.Key, eps));
        rows.Add(Compare(c, "dV", ToDouble(gv), refGrad.Value, plainGrad.Value, eps));
        if (c.Deterministic)
        {
            Backward();
            bool same = Bits(gq).SequenceEqual(Bits(Gradients(dDQ))) && Bits(gk).SequenceEqual(Bits(Gradients(dDK)))
                && Bits(gv).SequenceEqual(Bits(Gradients(dDV)));
            rows.Add(new VerifyRow(c, "repeat", same ? 0 : 1, 0, 0, same, same ? "two runs bitwise equal" : "two runs differ"));
        }
        return rows;
    }

    internal static byte[] Bits<T>(T[] a) where T : unmanaged => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()).ToArray();

    private static VerifyRow Compare(VerifyCase c, string quantity, double[] got, double[] reference, float[] plain, double eps)
    {
        var (err, plainErr, tol, unwritten) = Measure(got, reference, plain, eps);
        double plainBound = PlainAttention.ErrorBound(c.Type, c.HeadDim, c.SeqLenQ, c.SeqLenK, c.HeadsQ / c.HeadsK, plain);
        string? note = unwritten > 0 ? $"{unwritten} elements NaN (unwritten or invalid)"
            : plainErr > plainBound ? $"plain error above its bound {plainBound:G3}: the CPU reference is wrong" : null;
        return new VerifyRow(c, quantity, err, plainErr, tol, err <= tol && unwritten == 0 && plainErr <= plainBound, note);
    }

    /// <summary>The tolerance rule on one quantity: the largest errors of the GPU's and the plain results against float64, the bound, and how many GPU elements are NaN.</summary>
    internal static (double Error, double PlainError, double Tolerance, int Unwritten) Measure(IReadOnlyList<double> got, IReadOnlyList<double> reference,
        IReadOnlyList<float> plain, double eps)
    {
        double err = 0, plainErr = 0;
        int unwritten = 0;
        for (int i = 0; i < reference.Count; i++)
        {
            err = Math.Max(err, Difference(got[i], reference[i], ref unwritten));
            int ignored = 0;
            plainErr = Math.Max(plainErr, Difference(plain[i], reference[i], ref ignored));
        }
        return (err, plainErr, 2 * plainErr + eps, unwritten);
    }

    // Both −∞ (a row that sees no key) count as equal; NaN or a single infinity is an infinite error.
    private static double Difference(double got, double reference, ref int nan)
    {
        if (double.IsNaN(got)) { nan++; return double.PositiveInfinity; }
        if (double.IsInfinity(got) || double.IsInfinity(reference)) return got == reference ? 0 : double.PositiveInfinity;
        return Math.Abs(got - reference);
    }

    internal static double[] ToDouble<T>(T[] a) where T : unmanaged
    {
        var r = new double[a.Length];
        for (int i = 0; i < a.Length; i++) r[i] = ElementConvert.ToSingle(a[i]);
        return r;
    }

    internal static T[] RandomNormal<T>(long[] shape, Random rng) where T : unmanaged
    {
        long n = 1;
        foreach (long l in shape) n *= l;
        var a = new T[n];
        for (long i = 0; i < n; i++)
        {
            double z = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            a[i] = ElementConvert.FromSingle<T>((float)z);
        }
        return a;
    }
}
