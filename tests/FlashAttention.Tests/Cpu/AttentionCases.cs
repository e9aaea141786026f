using FlashAttention.Cpu;

namespace FlashAttention.Tests.Cpu;

/// <summary>How a case lays its tensors out in memory.</summary>
internal enum Layout
{
    /// <summary>Row-major (batch, seq, heads, dim), or packed (tokens, heads, dim) for varlen.</summary>
    Contiguous,
    /// <summary>Dense: (batch, heads, seq, dim) in memory with padding everywhere; varlen: padded token stride. Outputs too.</summary>
    Padded,
    /// <summary>Q, K, V as slices of one fused (batch, seq, heads_q + 2·heads_k, dim) buffer (needs seqlen_q = seqlen_k).</summary>
    PackedQkv,
}

/// <summary>One attention problem of the test grid. Varlen when <see cref="CuQ"/> is set (then Batch/SeqQ/SeqK are derived).</summary>
internal sealed record AttentionCase(string Name, int Batch, int SeqQ, int SeqK, int HeadsQ, int HeadsK, int Dim,
    AttentionOptions Options, Layout Layout = Layout.Contiguous, int[]? CuQ = null, int[]? CuK = null)
{
    public bool IsVarlen => CuQ is not null;
    public override string ToString() => Name;

    /// <summary>The longest query sequence (dense: seqlen_q).</summary>
    public int MaxSeqQ => IsVarlen ? CuQ!.Zip(CuQ.Skip(1), (a, b) => b - a).DefaultIfEmpty(0).Max() : SeqQ;

    /// <summary>The longest key sequence (dense: seqlen_k).</summary>
    public int MaxSeqK => IsVarlen ? CuK!.Zip(CuK.Skip(1), (a, b) => b - a).DefaultIfEmpty(0).Max() : SeqK;

    /// <summary>
    /// The plain implementation's error bound for a quantity of this case in T
    /// (<see cref="PlainAttention.ErrorBound(DataType, int, int, int, int, ReadOnlySpan{float})"/>).
    /// </summary>
    public double PlainBound<T>(float[] plainResult) =>
        PlainAttention.ErrorBound(DataTypes.Of<T>()!.Value, Dim, MaxSeqQ, MaxSeqK, HeadsQ / HeadsK, plainResult);

    public static AttentionCase Varlen(string name, int[] cuQ, int[] cuK, int headsQ, int headsK, int dim, AttentionOptions options,
        Layout layout = Layout.Contiguous)
        => new(name, cuQ.Length - 1, 0, 0, headsQ, headsK, dim, options, layout, cuQ, cuK);
}

/// <summary>The tensors of one case in element type T: inputs filled at random, outputs allocated (not yet poisoned).</summary>
internal sealed class CaseTensors<T> where T : unmanaged
{
    public required AttentionCase Case { get; init; }
    public required StridedBuffer<T> Q, K, V, O, DO, DQ, DK, DV;
    public required StridedBuffer<float> Lse;

    public static CaseTensors<T> Create(AttentionCase c, int seed)
    {
        var rng = new Random(seed);
        StridedBuffer<T> q, k, v, o, dO, dq, dk, dv;
        StridedBuffer<float> lse;
        bool padded = c.Layout == Layout.Padded;
        if (c.IsVarlen)
        {
            int tq = c.CuQ![^1], tk = c.CuK![^1];
            StridedBuffer<TT> Tok<TT>(int tokens, int heads) where TT : unmanaged =>
                padded ? TestTensors.PackedPadded<TT>(tokens, heads, c.Dim) : TestTensors.Contiguous<TT>(tokens, heads, c.Dim);
            q = Tok<T>(tq, c.HeadsQ); k = Tok<T>(tk, c.HeadsK); v = Tok<T>(tk, c.HeadsK);
            o = Tok<T>(tq, c.HeadsQ); dO = Tok<T>(tq, c.HeadsQ); dq = Tok<T>(tq, c.HeadsQ); dk = Tok<T>(tk, c.HeadsK); dv = Tok<T>(tk, c.HeadsK);
            lse = padded ? new(new float[c.HeadsQ * (tq + 3) + 1], 1, [c.HeadsQ, tq], [tq + 3, 1]) : TestTensors.Contiguous<float>(c.HeadsQ, tq);
        }
        else
        {
            StridedBuffer<TT> Tok<TT>(int seq, int heads) where TT : unmanaged =>
                padded ? TestTensors.HeadsMajorPadded<TT>(c.Batch, seq, heads, c.Dim) : TestTensors.Contiguous<TT>(c.Batch, seq, heads, c.Dim);
            if (c.Layout == Layout.PackedQkv)
            {
                if (c.SeqQ != c.SeqK) throw new ArgumentException("PackedQkv needs seqlen_q = seqlen_k");
                (q, k, v) = TestTensors.PackedQkv<T>(c.Batch, c.SeqQ, c.HeadsQ, c.HeadsK, c.Dim);
            }
            else
            {
                q = Tok<T>(c.SeqQ, c.HeadsQ); k = Tok<T>(c.SeqK, c.HeadsK); v = Tok<T>(c.SeqK, c.HeadsK);
            }
            o = Tok<T>(c.SeqQ, c.HeadsQ); dO = Tok<T>(c.SeqQ, c.HeadsQ); dq = Tok<T>(c.SeqQ, c.HeadsQ);
            dk = Tok<T>(c.SeqK, c.HeadsK); dv = Tok<T>(c.SeqK, c.HeadsK);
            lse = padded
                ? new(new float[c.Batch * c.HeadsQ * (c.SeqQ + 3) + 2], 2, [c.Batch, c.HeadsQ, c.SeqQ], [c.HeadsQ * (c.SeqQ + 3), c.SeqQ + 3, 1])
                : TestTensors.Contiguous<float>(c.Batch, c.HeadsQ, c.SeqQ);
        }
        TestTensors.FillRandom(q, rng);
        TestTensors.FillRandom(k, rng);
        TestTensors.FillRandom(v, rng);
        TestTensors.FillRandom(dO, rng);
        return new CaseTensors<T> { Case = c, Q = q, K = k, V = v, O = o, DO = dO, DQ = dq, DK = dk, DV = dv, Lse = lse };
    }
}

/// <summary>Which code path computes: the public API (the widest vector width this machine accelerates) or a forced width.</summary>
public enum Engine { Public, Width512, Width256, Width128 }

/// <summary>How the CPU backward sums dQ: from how many slabs, and whether the slabs run as separate items with partials.</summary>
public sealed record BackwardScheme(int Slabs, bool SlabsAsItems)
{
    public override string ToString() => $"{Slabs} slab{(Slabs == 1 ? "" : "s")}, {(SlabsAsItems ? "partials" : "whole pairs")}";
}

/// <summary>Runs the engine, the float64 reference and the plain same-precision implementation on a case.</summary>
internal static unsafe class CaseRunner
{
    public static void Forward<T>(CaseTensors<T> t, Engine engine = Engine.Public) where T : unmanaged
    {
        var c = t.Case;
        if (engine == Engine.Public)
        {
            if (c.IsVarlen)
                Attention.ForwardVarlen(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, c.CuQ, c.CuK, t.O.Span, t.Lse.Span, c.Options);
            else
                Attention.Forward(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, t.O.Span, t.Lse.Span, c.Options);
            return;
        }
        ForwardInternal<T, NoRounding>(t, engine);
    }

    /// <summary>The engine's forward with a rounding hook and width, through the same validation as the public API.</summary>
    public static void ForwardInternal<T, TRound>(CaseTensors<T> t, Engine engine) where T : unmanaged where TRound : struct, IProbabilityRounding
    {
        var c = t.Case;
        var q = t.Q.ReadOnly; var k = t.K.ReadOnly; var v = t.V.ReadOnly; var o = t.O.Span; var l = t.Lse.Span;
        fixed (T* pq = &q.GetPinnableReference(), pk = &k.GetPinnableReference(), pv = &v.GetPinnableReference(), po = &o.GetPinnableReference())
        fixed (float* pl = &l.GetPinnableReference())
        {
            var lq = TensorSpanLayout.Of("query", q, pq); var lk = TensorSpanLayout.Of("key", k, pk); var lv = TensorSpanLayout.Of("value", v, pv);
            var lo = TensorSpanLayout.Of("output", o, po); var ll = TensorSpanLayout.Of("logSumExp", l, pl);
            var p = c.IsVarlen
                ? AttentionValidation.ForwardVarlen(lq, lk, lv, lo, ll, c.CuQ, c.CuK, c.Options)
                : AttentionValidation.Forward(lq, lk, lv, lo, ll, c.Options);
            switch (engine)
            {
                case Engine.Public:
                case Engine.Width512: CpuFlashAttention.Forward<T, TRound, Simd512>(p, pq, pk, pv, po, pl); break;
                case Engine.Width256: CpuFlashAttention.Forward<T, TRound, Simd256>(p, pq, pk, pv, po, pl); break;
                case Engine.Width128: CpuFlashAttention.Forward<T, TRound, Simd128>(p, pq, pk, pv, po, pl); break;
            }
        }
    }

    /// <summary>Backward from t.O / t.Lse (which the caller filled with a forward) into t.DQ/DK/DV.</summary>
    public static void Backward<T>(CaseTensors<T> t, Engine engine = Engine.Public, BackwardScheme? scheme = null) where T : unmanaged
    {
        var c = t.Case;
        if (engine == Engine.Public && scheme is null)
        {
            if (c.IsVarlen)
                Attention.BackwardVarlen(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, t.O.ReadOnly, t.DO.ReadOnly, t.Lse.ReadOnly, c.CuQ, c.CuK,
                    t.DQ.Span, t.DK.Span, t.DV.Span, c.Options);
            else
                Attention.Backward(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, t.O.ReadOnly, t.DO.ReadOnly, t.Lse.ReadOnly,
                    t.DQ.Span, t.DK.Span, t.DV.Span, c.Options);
            return;
        }
        var q = t.Q.ReadOnly; var k = t.K.ReadOnly; var v = t.V.ReadOnly; var o = t.O.ReadOnly; var g = t.DO.ReadOnly; var l = t.Lse.ReadOnly;
        var dq = t.DQ.Span; var dk = t.DK.Span; var dv = t.DV.Span;
        fixed (T* pq = &q.GetPinnableReference(), pk = &k.GetPinnableReference(), pv = &v.GetPinnableReference())
        fixed (T* po = &o.GetPinnableReference(), pg = &g.GetPinnableReference())
        fixed (T* pdq = &dq.GetPinnableReference(), pdk = &dk.GetPinnableReference(), pdv = &dv.GetPinnableReference())
        fixed (float* pl = &l.GetPinnableReference())
        {
            var L = new[]
            {
                TensorSpanLayout.Of("query", q, pq), TensorSpanLayout.Of("key", k, pk), TensorSpanLayout.Of("value", v, pv),
                TensorSpanLayout.Of("output", o, po), TensorSpanLayout.Of("outputGradient", g, pg), TensorSpanLayout.Of("logSumExp", l, pl),
                TensorSpanLayout.Of("queryGradient", dq, pdq), TensorSpanLayout.Of("keyGradient", dk, pdk), TensorSpanLayout.Of("valueGradient", dv, pdv),
            };
            var p = c.IsVarlen
                ? AttentionValidation.BackwardVarlen(L[0], L[1], L[2], L[3], L[4], L[5], L[6], L[7], L[8], c.CuQ, c.CuK, c.Options)
                : AttentionValidation.Backward(L[0], L[1], L[2], L[3], L[4], L[5], L[6], L[7], L[8], c.Options);
            int slabs = scheme?.Slabs ?? CpuFlashAttention.QueryGradientSlabs(p);
            bool asItems = scheme?.SlabsAsItems ?? CpuFlashAttention.SlabsAsItems(p, slabs, Environment.ProcessorCount);
            // Public with an explicit scheme: the vector width the public call dispatches to on this CPU (its bits are
            // compared with the public call's; AVX2-only machines run 256-bit vectors).
            if (engine == Engine.Public)
                engine = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? Engine.Width512
                    : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? Engine.Width256 : Engine.Width128;
            switch (engine)
            {
                case Engine.Public:
                case Engine.Width512: CpuFlashAttention.Backward<T, Simd512>(p, pq, pk, pv, po, pg, pl, pdq, pdk, pdv, slabs, asItems); break;
                case Engine.Width256: CpuFlashAttention.Backward<T, Simd256>(p, pq, pk, pv, po, pg, pl, pdq, pdk, pdv, slabs, asItems); break;
                case Engine.Width128: CpuFlashAttention.Backward<T, Simd128>(p, pq, pk, pv, po, pg, pl, pdq, pdk, pdv, slabs, asItems); break;
            }
        }
    }

    /// <summary>The validated forward problem of a case (geometry and options only; the tensors are pinned just for the check).</summary>
    public static AttentionProblem Problem<T>(CaseTensors<T> t) where T : unmanaged
    {
        var c = t.Case;
        var q = t.Q.ReadOnly; var k = t.K.ReadOnly; var v = t.V.ReadOnly; var o = t.O.Span;
        fixed (T* pq = &q.GetPinnableReference(), pk = &k.GetPinnableReference(), pv = &v.GetPinnableReference(), po = &o.GetPinnableReference())
        {
            var lq = TensorSpanLayout.Of("query", q, pq); var lk = TensorSpanLayout.Of("key", k, pk); var lv = TensorSpanLayout.Of("value", v, pv);
            var lo = TensorSpanLayout.Of("output", o, po);
            return c.IsVarlen
                ? AttentionValidation.ForwardVarlen(lq, lk, lv, lo, null, c.CuQ, c.CuK, c.Options)
                : AttentionValidation.Forward(lq, lk, lv, lo, null, c.Options);
        }
    }

    public static ReferenceForward ReferenceForward<T>(CaseTensors<T> t) where T : unmanaged
    {
        var c = t.Case;
        return c.IsVarlen
            ? ReferenceAttention.ForwardVarlen(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, c.CuQ, c.CuK, c.Options)
            : ReferenceAttention.Forward(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, c.Options);
    }

    public static PlainForward PlainForward<T>(CaseTensors<T> t) where T : unmanaged
    {
        var c = t.Case;
        return c.IsVarlen
            ? PlainAttention.ForwardVarlen(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, c.CuQ, c.CuK, c.Options)
            : PlainAttention.Forward(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, c.Options);
    }

    public static ReferenceGradients ReferenceBackward<T>(CaseTensors<T> t) where T : unmanaged
    {
        var c = t.Case;
        return c.IsVarlen
            ? ReferenceAttention.BackwardVarlen(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, t.DO.ReadOnly, c.CuQ, c.CuK, c.Options)
            : ReferenceAttention.Backward(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, t.DO.ReadOnly, c.Options);
    }

    public static PlainGradients PlainBackward<T>(CaseTensors<T> t) where T : unmanaged
    {
        var c = t.Case;
        return c.IsVarlen
            ? PlainAttention.BackwardVarlen(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, t.DO.ReadOnly, c.CuQ, c.CuK, c.Options)
            : PlainAttention.Backward(t.Q.ReadOnly, t.K.ReadOnly, t.V.ReadOnly, t.DO.ReadOnly, c.Options);
    }

    /// <summary>
    /// Forward check: poison O and LSE, run, every element written (gaps untouched), O and LSE within the rule
    /// against float64, and rows that see no key exactly O = 0, LSE = −∞.
    /// </summary>
    public static void CheckForward<T>(AttentionCase c, Engine engine = Engine.Public) where T : unmanaged
    {
        var t = CaseTensors<T>.Create(c, Seed(c.Name));
        TestTensors.Poison(t.O);
        TestTensors.Poison(t.Lse);
        Forward(t, engine);
        TestTensors.AssertFullyWritten(t.O, "output");
        TestTensors.AssertFullyWritten(t.Lse, "logSumExp");

        var reference = ReferenceForward(t);
        var plain = PlainForward(t);
        double eps = TestTensors.Epsilon<T>();
        double[] o = t.O.ToDoubles(), lse = t.Lse.ToDoubles();
        TestTensors.AssertWithinRule($"{c.Name} O", o, TestTensors.ToDoubles(plain.Output), reference.Output, eps, c.PlainBound<T>(plain.Output));
        TestTensors.AssertWithinRule($"{c.Name} LSE", lse, TestTensors.ToDoubles(plain.LogSumExp), reference.LogSumExp, eps, c.PlainBound<T>(plain.LogSumExp));

        // Rows that see no key: LSE −∞ (MaxError demands matching infinities) and O exactly 0.
        int d = c.Dim, hq = c.HeadsQ;
        long totalQ = o.Length / ((long)hq * d);
        for (long tok = 0; tok < totalQ; tok++)
            for (int h = 0; h < hq; h++)
            {
                long li = c.IsVarlen ? h * totalQ + tok : (tok / c.SeqQ * hq + h) * c.SeqQ + tok % c.SeqQ;
                if (!double.IsNegativeInfinity(reference.LogSumExp[li])) continue;
                for (int x = 0; x < d; x++)
                    Assert.True(o[(tok * hq + h) * d + x] == 0, $"{c.Name}: fully masked row (token {tok}, head {h}) has O ≠ 0");
            }
    }

    /// <summary>
    /// Backward check: forward with the engine, poison the gradients, run the backward, every element written, and
    /// dQ, dK, dV within the rule against the float64 analytic gradients.
    /// </summary>
    public static void CheckBackward<T>(AttentionCase c, Engine engine = Engine.Public, BackwardScheme? scheme = null) where T : unmanaged
    {
        var t = CaseTensors<T>.Create(c, Seed(c.Name));
        Forward(t);
        TestTensors.Poison(t.DQ);
        TestTensors.Poison(t.DK);
        TestTensors.Poison(t.DV);
        Backward(t, engine, scheme);
        TestTensors.AssertFullyWritten(t.DQ, "queryGradient");
        TestTensors.AssertFullyWritten(t.DK, "keyGradient");
        TestTensors.AssertFullyWritten(t.DV, "valueGradient");

        var reference = ReferenceBackward(t);
        var plain = PlainBackward(t);
        double eps = TestTensors.Epsilon<T>(gradient: true);
        TestTensors.AssertWithinRule($"{c.Name} dQ", t.DQ.ToDoubles(), TestTensors.ToDoubles(plain.Query), reference.Query, eps, c.PlainBound<T>(plain.Query));
        TestTensors.AssertWithinRule($"{c.Name} dK", t.DK.ToDoubles(), TestTensors.ToDoubles(plain.Key), reference.Key, eps, c.PlainBound<T>(plain.Key));
        TestTensors.AssertWithinRule($"{c.Name} dV", t.DV.ToDoubles(), TestTensors.ToDoubles(plain.Value), reference.Value, eps, c.PlainBound<T>(plain.Value));
    }

    /// <summary>A seed per case name, stable across runs and machines (string.GetHashCode is randomised per process).</summary>
    public static int Seed(string name)
    {
        int h = 17;
        foreach (char ch in name) h = unchecked(h * 31 + ch);
        return h;
    }
}
