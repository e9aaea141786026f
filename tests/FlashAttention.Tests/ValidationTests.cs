using System.Numerics.Tensors;
using FlashAttention.Tests.Cpu;

namespace FlashAttention.Tests;

/// <summary>
/// One test per class of bad input: each raises <see cref="AttentionArgumentException"/> whose ParamName and message
/// name the argument, and leaves every output buffer exactly as it was (poisoned with a sentinel beforehand).
/// Classes that System.Numerics.Tensors cannot even express as a TensorSpan (a zero-length dimension, a negative
/// stride), or that the generic signature rules out (mixed element types, non-float32 LSE), are checked on the
/// validation layer every backend shares, with layouts of real buffers.
/// </summary>
public unsafe class ValidationTests
{
    private const float Sentinel = 7.25f;
    private const int B = 2, S = 5, H = 4, D = 8;

    /// <summary>Contiguous inputs and sentinel-filled outputs of a small dense problem.</summary>
    private sealed class Problem
    {
        public StridedBuffer<float> Q = TestTensors.Contiguous<float>(B, S, H, D);
        public StridedBuffer<float> K = TestTensors.Contiguous<float>(B, S, H / 2, D);
        public StridedBuffer<float> V = TestTensors.Contiguous<float>(B, S, H / 2, D);
        public StridedBuffer<float> O = Filled(TestTensors.Contiguous<float>(B, S, H, D));
        public StridedBuffer<float> Lse = Filled(TestTensors.Contiguous<float>(B, H, S));

        public Problem()
        {
            var rng = new Random(1);
            TestTensors.FillRandom(Q, rng);
            TestTensors.FillRandom(K, rng);
            TestTensors.FillRandom(V, rng);
        }

        public void Forward(AttentionOptions? options = null) =>
            Attention.Forward(Q.ReadOnly, K.ReadOnly, V.ReadOnly, O.Span, Lse.Span, options);
    }

    private static StridedBuffer<float> Filled(StridedBuffer<float> b)
    {
        Array.Fill(b.Data, Sentinel);
        return b;
    }

    private static void AssertUntouched(params StridedBuffer<float>[] outputs)
    {
        foreach (var o in outputs)
            Assert.All(o.Data, x => Assert.Equal(Sentinel, x));
    }

    /// <summary>The call fails naming <paramref name="argument"/> (ParamName and message) and writes nothing.</summary>
    private static AttentionArgumentException AssertRejected(string argument, Action call, params StridedBuffer<float>[] outputs)
    {
        var ex = Assert.Throws<AttentionArgumentException>(call);
        Assert.Equal(argument, ex.ParamName);
        Assert.Contains(argument, ex.Message);
        AssertUntouched(outputs);
        return ex;
    }

    private static TensorSpan<float> View(float[] data, long[] lengths, long[] strides, int offset = 0) =>
        new StridedBuffer<float>(data, offset, lengths, strides).Span;

    [Fact]
    public void Wrong_rank()
    {
        var p = new Problem();
        var ex = AssertRejected("query", () => Attention.Forward(View(p.Q.Data, [B * S, H, D], TestTensors.RowMajor(B * S, H, D)), p.K.ReadOnly, p.V.ReadOnly, p.O.Span, p.Lse.Span), p.O, p.Lse);
        Assert.Contains("rank 4", ex.Message);
        Assert.Contains("rank 3", ex.Message);
    }

    [Fact]
    public void Shape_mismatch()
    {
        var p = new Problem();
        var ex = AssertRejected("value", () => Attention.Forward(p.Q.ReadOnly, p.K.ReadOnly,
            View(p.V.Data, [B, S - 1, H / 2, D], TestTensors.RowMajor(B, S - 1, H / 2, D)), p.O.Span, p.Lse.Span), p.O, p.Lse);
        Assert.Contains($"({B}, {S}, {H / 2}, {D})", ex.Message);     // expected
        Assert.Contains($"({B}, {S - 1}, {H / 2}, {D})", ex.Message); // actual
        AssertRejected("key", () => Attention.Forward(p.Q.ReadOnly, View(p.K.Data, [1, S, H / 2, D], TestTensors.RowMajor(1, S, H / 2, D)),
            View(p.V.Data, [1, S, H / 2, D], TestTensors.RowMajor(1, S, H / 2, D)), p.O.Span, p.Lse.Span), p.O, p.Lse);
        AssertRejected("output", () => Attention.Forward(p.Q.ReadOnly, p.K.ReadOnly, p.V.ReadOnly,
            View(p.O.Data, [B, S, H, D - 1], TestTensors.RowMajor(B, S, H, D - 1)), p.Lse.Span), p.O, p.Lse);
    }

    [Fact]
    public void Head_count_not_dividing()
    {
        var p = new Problem();
        var k3 = new float[B * S * 3 * D];
        var ex = AssertRejected("key", () => Attention.Forward(p.Q.ReadOnly, View(k3, [B, S, 3, D], TestTensors.RowMajor(B, S, 3, D)),
            View(k3, [B, S, 3, D], TestTensors.RowMajor(B, S, 3, D)), p.O.Span, p.Lse.Span), p.O, p.Lse);
        Assert.Contains("heads_k = 3", ex.Message);
    }

    [Fact]
    public void Head_dim_above_256()
    {
        var q = TestTensors.Contiguous<float>(1, 2, 1, 257);
        var o = Filled(TestTensors.Contiguous<float>(1, 2, 1, 257));
        var ex = AssertRejected("query", () => Attention.Forward(q.ReadOnly, q.ReadOnly, q.ReadOnly, o.Span), o);
        Assert.Contains("257", ex.Message);
    }

    [Fact]
    public void Head_dim_zero()
    {
        // TensorSpan cannot hold a zero-length dimension, so the shared validation layer is called directly.
        float[] buf = [Sentinel];
        fixed (float* p = buf)
        {
            var l = new TensorLayout("query", DataType.Float32, [1, 2, 1, 0], [0, 1, 1, 1], (nuint)p);
            var ex = Assert.Throws<AttentionArgumentException>(() => AttentionValidation.Forward(l, l with { }, l, l, null, null));
            Assert.Equal("query", ex.ParamName);
            Assert.Contains("head_dim in 1…256; got 0", ex.Message);
        }
        Assert.Equal(Sentinel, buf[0]);
    }

    [Fact]
    public void Non_contiguous_head_dim()
    {
        var p = new Problem();
        var data = new float[B * S * H * D * 2];
        var ex = AssertRejected("query", () => Attention.Forward(View(data, [B, S, H, D], [S * H * D * 2, H * D * 2, D * 2, 2]), p.K.ReadOnly, p.V.ReadOnly, p.O.Span, p.Lse.Span), p.O, p.Lse);
        Assert.Contains("last stride 1", ex.Message);
    }

    [Fact]
    public void Negative_stride()
    {
        // System.Numerics.Tensors refuses negative strides itself; other front ends (device pointers) reach this check.
        var p = new Problem();
        fixed (float* q = p.Q.Data, k = p.K.Data, o = p.O.Data)
        {
            var lq = new TensorLayout("query", DataType.Float32, [B, S, H, D], [S * H * D, -H * D, D, 1], (nuint)(q + (S - 1) * H * D));
            var lk = new TensorLayout("key", DataType.Float32, [B, S, H / 2, D], TestTensors.RowMajor(B, S, H / 2, D), (nuint)k);
            var lo = new TensorLayout("output", DataType.Float32, [B, S, H, D], TestTensors.RowMajor(B, S, H, D), (nuint)o);
            var ex = Assert.Throws<AttentionArgumentException>(() => AttentionValidation.Forward(lq, lk, lk with { }, lo, null, null));
            Assert.Equal("query", ex.ParamName);
            Assert.Contains("non-negative strides", ex.Message);
        }
        AssertUntouched(p.O);
    }

    [Fact]
    public void Element_type_mismatch()
    {
        var p = new Problem();
        var kHalf = new Half[p.K.Data.Length];
        fixed (float* q = p.Q.Data, o = p.O.Data)
        fixed (Half* k = kHalf)
        {
            var lq = new TensorLayout("query", DataType.Float32, [B, S, H, D], TestTensors.RowMajor(B, S, H, D), (nuint)q);
            var lk = new TensorLayout("key", DataType.Float16, [B, S, H / 2, D], TestTensors.RowMajor(B, S, H / 2, D), (nuint)k);
            var lv = new TensorLayout("value", DataType.Float16, [B, S, H / 2, D], TestTensors.RowMajor(B, S, H / 2, D), (nuint)k);
            var lo = new TensorLayout("output", DataType.Float32, [B, S, H, D], TestTensors.RowMajor(B, S, H, D), (nuint)o);
            var ex = Assert.Throws<AttentionArgumentException>(() => AttentionValidation.Forward(lq, lk, lv, lo, null, null));
            Assert.Equal("key", ex.ParamName);
            Assert.Contains("Float32", ex.Message);
            Assert.Contains("Float16", ex.Message);
        }
        AssertUntouched(p.O);
    }

    [Fact]
    public void Unsupported_element_type()
    {
        var q = new double[B * S * H * D];
        var o = new double[B * S * H * D];
        Array.Fill(o, Sentinel);
        TensorSpan<double> V(double[] a) => new(a, [B, S, H, D], [S * H * D, H * D, D, 1]);
        var ex = Assert.Throws<AttentionArgumentException>(() => Attention.Forward<double>(V(q), V(q), V(q), V(o)));
        Assert.Equal("query", ex.ParamName);
        Assert.Contains("Double", ex.Message);
        Assert.All(o, x => Assert.Equal(Sentinel, x));
    }

    [Fact]
    public void Lse_wrong_shape()
    {
        var p = new Problem();
        var ex = AssertRejected("logSumExp", () => Attention.Forward(p.Q.ReadOnly, p.K.ReadOnly, p.V.ReadOnly, p.O.Span,
            View(p.Lse.Data, [B, S, H], TestTensors.RowMajor(B, S, H))), p.O, p.Lse);
        Assert.Contains($"({B}, {H}, {S})", ex.Message);
        Assert.Contains($"({B}, {S}, {H})", ex.Message);
    }

    [Fact]
    public void Lse_wrong_type()
    {
        var p = new Problem();
        var lseHalf = new Half[B * H * S];
        fixed (float* q = p.Q.Data, k = p.K.Data, o = p.O.Data)
        fixed (Half* l = lseHalf)
        {
            var lq = new TensorLayout("query", DataType.Float32, [B, S, H, D], TestTensors.RowMajor(B, S, H, D), (nuint)q);
            var lk = new TensorLayout("key", DataType.Float32, [B, S, H / 2, D], TestTensors.RowMajor(B, S, H / 2, D), (nuint)k);
            var lo = new TensorLayout("output", DataType.Float32, [B, S, H, D], TestTensors.RowMajor(B, S, H, D), (nuint)o);
            var ll = new TensorLayout("logSumExp", DataType.Float16, [B, H, S], TestTensors.RowMajor(B, H, S), (nuint)l);
            var ex = Assert.Throws<AttentionArgumentException>(() => AttentionValidation.Forward(lq, lk, lk with { }, lo, ll, null));
            Assert.Equal("logSumExp", ex.ParamName);
            Assert.Contains("Float32", ex.Message);
        }
        AssertUntouched(p.O);
    }

    [Fact]
    public void Window_below_minus_one()
    {
        var p = new Problem();
        var ex = AssertRejected("options", () => p.Forward(new() { WindowLeft = -2 }), p.O, p.Lse);
        Assert.Contains("WindowLeft", ex.Message);
        ex = AssertRejected("options", () => p.Forward(new() { WindowRight = -5 }), p.O, p.Lse);
        Assert.Contains("WindowRight", ex.Message);
    }

    [Fact]
    public void Causal_with_right_window()
    {
        var p = new Problem();
        var ex = AssertRejected("options", () => p.Forward(new() { Causal = true, WindowRight = 2 }), p.O, p.Lse);
        Assert.Contains("Causal", ex.Message);
    }

    [Theory]
    [InlineData(-1f)]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void Softcap_negative_or_not_finite(float softcap)
    {
        var p = new Problem();
        var ex = AssertRejected("options", () => p.Forward(new() { Softcap = softcap }), p.O, p.Lse);
        Assert.Contains("Softcap", ex.Message);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(0f)]
    [InlineData(-0.5f)]
    [InlineData(float.PositiveInfinity)]
    public void Scale_not_finite_or_not_positive(float scale)
    {
        var p = new Problem();
        var ex = AssertRejected("options", () => p.Forward(new() { SoftmaxScale = scale }), p.O, p.Lse);
        Assert.Contains("SoftmaxScale", ex.Message);
    }

    public static TheoryData<string, int[], int[], string, string> BadCuSeqLens() => new()
    {
        { "wrong start", [1, 3, 6], [0, 4, 7], "cuSeqLensQ", "cuSeqLensQ[0] = 0" },
        { "decreasing", [0, 4, 3, 6], [0, 2, 5, 7], "cuSeqLensQ", "non-decreasing" },
        { "wrong total", [0, 3, 6], [0, 4, 8], "cuSeqLensK", "= 7" },
        { "length mismatch", [0, 3, 6], [0, 7], "cuSeqLensK", "entries" },
        { "empty", [], [0, 7], "cuSeqLensQ", "got none" },
    };

    [Theory]
    [MemberData(nameof(BadCuSeqLens))]
    public void CuSeqLens_inconsistent(string what, int[] cuQ, int[] cuK, string argument, string fragment)
    {
        _ = what;
        var q = TestTensors.Contiguous<float>(6, 2, D);
        var k = TestTensors.Contiguous<float>(7, 1, D);
        TestTensors.FillRandom(q, new Random(1));
        TestTensors.FillRandom(k, new Random(2));
        var o = Filled(TestTensors.Contiguous<float>(6, 2, D));
        var lse = Filled(TestTensors.Contiguous<float>(2, 6));
        var ex = AssertRejected(argument, () => Attention.ForwardVarlen(q.ReadOnly, k.ReadOnly, k.ReadOnly, cuQ, cuK, o.Span, lse.Span), o, lse);
        Assert.Contains(fragment, ex.Message);
    }

    [Fact]
    public void Output_overlapping_an_input()
    {
        var p = new Problem();
        var before = (float[])p.Q.Data.Clone();
        var ex = AssertRejected("output", () => Attention.Forward(p.Q.ReadOnly, p.K.ReadOnly, p.V.ReadOnly,
            View(p.Q.Data, [B, S, H, D], TestTensors.RowMajor(B, S, H, D)), p.Lse.Span), p.Lse);
        Assert.Contains("query", ex.Message);
        Assert.Equal(before, p.Q.Data);
        // The log-sum-exp may not share memory with the output either.
        var shared = Filled(TestTensors.Contiguous<float>(B * S * H * D + B * H * S));
        AssertRejected("logSumExp", () => Attention.Forward(p.Q.ReadOnly, p.K.ReadOnly, p.V.ReadOnly,
            View(shared.Data, [B, S, H, D], TestTensors.RowMajor(B, S, H, D)),
            View(shared.Data, [B, H, S], TestTensors.RowMajor(B, H, S), offset: B * S * H * D - 1)), shared);
    }

    [Fact]
    public void Self_overlapping_output()
    {
        var p = new Problem();
        // Sequence stride 0: every token of a (batch, head) would land on the same row.
        var o = Filled(TestTensors.Contiguous<float>(B * H * D));
        var ex = AssertRejected("output", () => Attention.Forward(p.Q.ReadOnly, p.K.ReadOnly, p.V.ReadOnly,
            View(o.Data, [B, S, H, D], [H * D, 0, D, 1]), p.Lse.Span), o, p.Lse);
        Assert.Contains("overlap", ex.Message);
    }

    [Fact]
    public void Backward_gradients_overlapping_or_misshapen()
    {
        var p = new Problem();
        p.Forward();
        var dO = TestTensors.Contiguous<float>(B, S, H, D);
        TestTensors.FillRandom(dO, new Random(3));
        var dq = Filled(TestTensors.Contiguous<float>(B, S, H, D));
        var dkv = Filled(TestTensors.Contiguous<float>(B, S, H / 2, D));
        // dV on the same memory as dK.
        var ex = AssertRejected("valueGradient", () => Attention.Backward(p.Q.ReadOnly, p.K.ReadOnly, p.V.ReadOnly, p.O.ReadOnly, dO.ReadOnly,
            p.Lse.ReadOnly, dq.Span, dkv.Span, dkv.Span), dq, dkv);
        Assert.Contains("keyGradient", ex.Message);
        // dK shaped like the query.
        var dv = Filled(TestTensors.Contiguous<float>(B, S, H / 2, D));
        var dkWrong = Filled(TestTensors.Contiguous<float>(B, S, H, D));
        AssertRejected("keyGradient", () => Attention.Backward(p.Q.ReadOnly, p.K.ReadOnly, p.V.ReadOnly, p.O.ReadOnly, dO.ReadOnly,
            p.Lse.ReadOnly, dq.Span, dkWrong.Span, dv.Span), dq, dkWrong, dv);
        // The log-sum-exp must be given in (batch, heads, seqlen_q).
        var lseCopy = (float[])p.Lse.Data.Clone();
        AssertRejected("logSumExp", () => Attention.Backward(p.Q.ReadOnly, p.K.ReadOnly, p.V.ReadOnly, p.O.ReadOnly, dO.ReadOnly,
            View(lseCopy, [B, S, H], TestTensors.RowMajor(B, S, H)), dq.Span, dkWrong.Span, dv.Span), dq, dkWrong, dv);
    }

    private static TensorSpan<float> Empty(params long[] lengths) => new(Array.Empty<float>(), lengths.Select(l => (nint)l).ToArray(), []);

    [Fact]
    public void Empty_tensors_of_any_batch_and_head_count_give_empty_results()
    {
        // No query: nothing to write, whatever the batch and head counts (an empty TensorSpan gets stride 0 everywhere).
        var k = TestTensors.Contiguous<float>(B, S, H / 2, D);
        TestTensors.FillRandom(k, new Random(5));
        Attention.Forward(Empty(B, 0, H, D), k.ReadOnly, k.ReadOnly, Empty(B, 0, H, D), Empty(B, H, 0), new AttentionOptions { Causal = true });

        // No key: every row sees nothing, so O = 0 and LSE = −∞.
        var q = TestTensors.Contiguous<float>(B, S, H, D);
        TestTensors.FillRandom(q, new Random(6));
        var o = Filled(TestTensors.Contiguous<float>(B, S, H, D));
        var lse = Filled(TestTensors.Contiguous<float>(B, H, S));
        Attention.Forward(q.ReadOnly, Empty(B, 0, H / 2, D), Empty(B, 0, H / 2, D), o.Span, lse.Span);
        Assert.All(o.Data, x => Assert.Equal(0f, x));
        Assert.All(lse.Data, x => Assert.Equal(float.NegativeInfinity, x));

        // Backward without keys: dQ = 0 (O does not depend on Q), dK and dV empty.
        var dO = TestTensors.Contiguous<float>(B, S, H, D);
        TestTensors.FillRandom(dO, new Random(7));
        var dq = Filled(TestTensors.Contiguous<float>(B, S, H, D));
        Attention.Backward(q.ReadOnly, Empty(B, 0, H / 2, D), Empty(B, 0, H / 2, D), o.ReadOnly, dO.ReadOnly, lse.ReadOnly,
            dq.Span, Empty(B, 0, H / 2, D), Empty(B, 0, H / 2, D));
        Assert.All(dq.Data, x => Assert.Equal(0f, x));

        // Backward without queries: no key receives any gradient.
        var dk = Filled(TestTensors.Contiguous<float>(B, S, H / 2, D));
        var dv = Filled(TestTensors.Contiguous<float>(B, S, H / 2, D));
        Attention.Backward(Empty(B, 0, H, D), k.ReadOnly, k.ReadOnly, Empty(B, 0, H, D), Empty(B, 0, H, D), Empty(B, H, 0),
            Empty(B, 0, H, D), dk.Span, dv.Span);
        Assert.All(dk.Data, x => Assert.Equal(0f, x));
        Assert.All(dv.Data, x => Assert.Equal(0f, x));
    }

    [Fact]
    public void Gradients_written_as_interleaved_heads_of_one_buffer_are_accepted()
    {
        // dQ, dK, dV as head slices of one (batch, seq, H + 2·H/2, dim) buffer: their byte ranges interleave, their
        // elements do not meet. The result must equal gradients written to separate buffers.
        var p = new Problem();
        p.Forward();
        var dO = TestTensors.Contiguous<float>(B, S, H, D);
        TestTensors.FillRandom(dO, new Random(3));
        var (dq, dk, dv) = TestTensors.PackedQkv<float>(B, S, H, H / 2, D);
        Attention.Backward(p.Q.ReadOnly, p.K.ReadOnly, p.V.ReadOnly, p.O.ReadOnly, dO.ReadOnly, p.Lse.ReadOnly, dq.Span, dk.Span, dv.Span);

        var dqAlone = TestTensors.Contiguous<float>(B, S, H, D);
        var dkAlone = TestTensors.Contiguous<float>(B, S, H / 2, D);
        var dvAlone = TestTensors.Contiguous<float>(B, S, H / 2, D);
        Attention.Backward(p.Q.ReadOnly, p.K.ReadOnly, p.V.ReadOnly, p.O.ReadOnly, dO.ReadOnly, p.Lse.ReadOnly, dqAlone.Span, dkAlone.Span, dvAlone.Span);
        Assert.Equal(dqAlone.ToDoubles(), dq.ToDoubles());
        Assert.Equal(dkAlone.ToDoubles(), dk.ToDoubles());
        Assert.Equal(dvAlone.ToDoubles(), dv.ToDoubles());

        // One head further on, dV's first head is dK's second: refused, naming both.
        var shifted = new StridedBuffer<float>(dk.Data, dk.Offset + D, dv.Lengths, dv.Strides);
        var before = (float[])dk.Data.Clone();
        var ex = Assert.Throws<AttentionArgumentException>(() => Attention.Backward(p.Q.ReadOnly, p.K.ReadOnly, p.V.ReadOnly, p.O.ReadOnly,
            dO.ReadOnly, p.Lse.ReadOnly, dq.Span, dk.Span, shifted.Span));
        Assert.Equal("valueGradient", ex.ParamName);
        Assert.Contains("keyGradient", ex.Message);
        Assert.Contains("elements of both lie at the same address", ex.Message);
        Assert.Equal(before, dk.Data);
    }

    [Fact]
    public void Element_overlap_counts_bytes_of_elements_of_either_size()
    {
        // float32 elements at bytes 0, 8, 16, … (stride 2) against float16 elements 2 bytes wide.
        var a = new TensorLayout("a", DataType.Float32, [4], [2], 1024);
        TensorLayout Half(nuint address) => new("b", DataType.Float16, [4], [4], address);
        Assert.Equal(ElementOverlap.None, TensorLayout.Overlap(a, Half(1024 + 4)));   // [4,6), [12,14), …: in the gaps
        Assert.Equal(ElementOverlap.None, TensorLayout.Overlap(a, Half(1024 + 6)));
        Assert.Equal(ElementOverlap.Shared, TensorLayout.Overlap(a, Half(1024 + 2))); // [2,4) lies in a's first element
        Assert.Equal(ElementOverlap.Shared, TensorLayout.Overlap(Half(1024 + 26), a)); // [26,28) in a's element [24,28)
        Assert.Equal(ElementOverlap.None, TensorLayout.Overlap(a, Half(1024 + 32)));  // past a's last byte
        // An empty tensor shares nothing, wherever it points.
        Assert.Equal(ElementOverlap.None, TensorLayout.Overlap(a, new TensorLayout("e", DataType.Float32, [2, 0, 3], [0, 0, 1], 1024)));
    }

    [Fact]
    public void Strides_too_entangled_to_decide_are_refused_as_overlapping()
    {
        // Eight dimensions of 16 with even strides near 2000 reach even float indices only; a single float at an odd
        // index shares nothing, but proving it takes millions of steps: the search gives up, and the call is refused.
        var a = new TensorLayout("a", DataType.Float32, [16, 16, 16, 16, 16, 16, 16, 16], [2000, 2002, 2004, 2006, 2008, 2010, 2012, 2014], 0);
        var b = new TensorLayout("b", DataType.Float32, [1], [1], 4 * 112_393);
        Assert.Equal(ElementOverlap.Undecided, TensorLayout.Overlap(a, b));
        Assert.Equal(ElementOverlap.Shared, TensorLayout.Overlap(a, new TensorLayout("c", DataType.Float32, [1], [1], 4 * (2000 + 2014))));
    }
}
