using System.Numerics.Tensors;
using FlashAttention.Cpu;
using FlashAttention.Lab.Cpu;
using FlashAttention.Lab.Verification;
using FlashAttention.Numerics;

namespace FlashAttention.Cli.Verify;

/// <summary>
/// <c>flashattn verify --device cpu</c>: the CPU engine (<see cref="Attention"/>) against the float64 reference, by the
/// same rule and on the same kind of cases as the GPU check, with outputs poisoned (NaN) first. The unit tests cover the
/// engine exhaustively; this lets a user check it on their own machine.
/// </summary>
internal static class CpuVerifier
{
    public static IEnumerable<VerifyCase> ForwardGrid(bool quick)
    {
        foreach (var t in new[] { DataType.Float32, DataType.BFloat16, DataType.Float16 })
        {
            yield return new(t, 2, 129, 129, 4, 2, 64, Causal: true);
            yield return new(t, 1, 300, 77, 4, 1, 128, Causal: true);
            if (quick) continue;
            yield return new(t, 1, 1000, 1000, 2, 2, 96, Causal: false, WindowLeft: 100, WindowRight: 20);
            yield return new(t, 1, 513, 700, 8, 1, 256, Causal: false, Softcap: 30f);
        }
    }

    public static IEnumerable<VerifyCase> BackwardGrid(bool quick)
    {
        foreach (var t in new[] { DataType.Float32, DataType.BFloat16 })
        {
            yield return new(t, 1, 100, 100, 4, 2, 64, Causal: true, Backward: true);
            if (quick) continue;
            yield return new(t, 1, 257, 300, 2, 2, 128, Causal: false, Softcap: 20f, Backward: true);
        }
    }

    public static List<VerifyRow> Run(VerifyCase c, int seed) => c.Type switch
    {
        DataType.Float32 => Run<float>(c, seed, 1e-6),
        DataType.BFloat16 => Run<BFloat16>(c, seed, GpuAttentionVerifier.Epsilon(DataType.BFloat16)),
        DataType.Float16 => Run<Half>(c, seed, GpuAttentionVerifier.Epsilon(DataType.Float16)),
        _ => throw new ArgumentOutOfRangeException(nameof(c), c.Type, "the CPU engine takes fp32, fp16 or bf16"),
    };

    private static List<VerifyRow> Run<T>(VerifyCase c, int seed, double eps) where T : unmanaged
    {
        nint[] qShape = [c.Batch, c.SeqLenQ, c.HeadsQ, c.HeadDim], kShape = [c.Batch, c.SeqLenK, c.HeadsK, c.HeadDim];
        nint[] lseShape = [c.Batch, c.HeadsQ, c.SeqLenQ];
        long qn = (long)c.Batch * c.SeqLenQ * c.HeadsQ * c.HeadDim, kn = (long)c.Batch * c.SeqLenK * c.HeadsK * c.HeadDim;
        var q = new T[qn];
        var k = new T[kn];
        var v = new T[kn];
        Bench.RandomTensors.FillNormal(q, seed * 5);
        Bench.RandomTensors.FillNormal(k, seed * 5 + 1);
        Bench.RandomTensors.FillNormal(v, seed * 5 + 2);
        var o = Poisoned<T>(qn);
        var lse = new float[c.Batch * c.HeadsQ * c.SeqLenQ];
        Array.Fill(lse, float.NaN);
        var options = c.Options;
        ReadOnlyTensorSpan<T> Span(T[] a, nint[] shape) => new(a, shape, []);
        Attention.Forward(Span(q, qShape), Span(k, kShape), Span(v, kShape), new TensorSpan<T>(o, qShape), new TensorSpan<float>(lse, lseShape), options);
        var rows = new List<VerifyRow>();
        if (!c.Backward)
        {
            var r = ReferenceAttention.Forward(Span(q, qShape), Span(k, kShape), Span(v, kShape), options);
            var plain = PlainAttention.Forward(Span(q, qShape), Span(k, kShape), Span(v, kShape), options);
            rows.Add(Compare(c, "O", o, r.Output, plain.Output, eps));
            rows.Add(Compare(c, "LSE", lse, r.LogSumExp, plain.LogSumExp, 1e-3));
            return rows;
        }
        var dO = new T[qn];
        Bench.RandomTensors.FillNormal(dO, seed * 5 + 3);
        T[] dq = Poisoned<T>(qn), dk = Poisoned<T>(kn), dv = Poisoned<T>(kn);
        Attention.Backward(Span(q, qShape), Span(k, kShape), Span(v, kShape), Span(o, qShape), Span(dO, qShape),
            new ReadOnlyTensorSpan<float>(lse, lseShape, []), new TensorSpan<T>(dq, qShape), new TensorSpan<T>(dk, kShape), new TensorSpan<T>(dv, kShape), options);
        var g = ReferenceAttention.Backward(Span(q, qShape), Span(k, kShape), Span(v, kShape), Span(dO, qShape), options);
        var pg = PlainAttention.Backward(Span(q, qShape), Span(k, kShape), Span(v, kShape), Span(dO, qShape), options);
        rows.Add(Compare(c, "dQ", dq, g.Query, pg.Query, eps));
        rows.Add(Compare(c, "dK", dk, g.Key, pg.Key, eps));
        rows.Add(Compare(c, "dV", dv, g.Value, pg.Value, eps));
        return rows;
    }

    private static T[] Poisoned<T>(long n) where T : unmanaged
    {
        var a = new T[n];
        Array.Fill(a, ElementConvert.FromSingle<T>(float.NaN));
        return a;
    }

    private static VerifyRow Compare<T>(VerifyCase c, string quantity, T[] got, double[] reference, float[] plain, double eps) where T : unmanaged
    {
        double err = 0, plainErr = 0;
        int nan = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double x = ElementConvert.ToSingle(got[i]);
            if (double.IsNaN(x)) { nan++; err = double.PositiveInfinity; continue; }
            err = Math.Max(err, Diff(x, reference[i]));
            plainErr = Math.Max(plainErr, Diff(plain[i], reference[i]));
        }
        double tol = 2 * plainErr + eps;
        // The plain error within its own bound: a wrong reference fails here instead of widening the allowance.
        double plainBound = PlainAttention.ErrorBound(c.Type, c.HeadDim, c.SeqLenQ, c.SeqLenK, c.HeadsQ / c.HeadsK, plain);
        string? note = nan > 0 ? $"{nan} elements NaN (unwritten)"
            : plainErr > plainBound ? $"plain error above its bound {plainBound:G3}: the reference is wrong" : null;
        return new VerifyRow(c, quantity, err, plainErr, tol, nan == 0 && err <= tol && plainErr <= plainBound, note);
    }

    private static double Diff(double a, double b)
        => double.IsInfinity(a) || double.IsInfinity(b) ? (a == b ? 0 : double.PositiveInfinity) : Math.Abs(a - b);
}
