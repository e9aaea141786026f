using FlashAttention.Cpu;

namespace FlashAttention.Tests.Cpu;

/// <summary>
/// The oracle's own backward, on tiny problems, against central finite differences of its float64 forward:
/// loss = Σ O ∘ G for a random G, each input element moved by ±h. Inputs are float32, so the moved values are
/// rounded; the difference quotient divides by the actual (exactly representable) step, leaving only the O(h²)
/// truncation error, ~1e-7 here against a tolerance of 1e-5 · max(1, max |gradient|).
/// </summary>
public class ReferenceGradientTests
{
    public static TheoryData<string> Cases() =>
    [
        "full", "causal_sq_gt_sk", "causal_sq_lt_sk", "window_softcap", "varlen", "two_row_blocks_gqa",
    ];

    private static AttentionCase Case(string name) => name switch
    {
        "full" => new(name, 2, 3, 4, 2, 1, 4, new()),
        "causal_sq_gt_sk" => new(name, 1, 5, 3, 2, 2, 3, new() { Causal = true }),
        "causal_sq_lt_sk" => new(name, 1, 3, 5, 2, 1, 4, new() { Causal = true, SoftmaxScale = 0.7f }),
        "window_softcap" => new(name, 1, 6, 6, 1, 1, 5, new() { WindowLeft = 2, WindowRight = 1, Softcap = 1.5f }),
        "varlen" => AttentionCase.Varlen(name, [0, 2, 2, 5], [0, 3, 4, 4], 2, 1, 3, new() { Causal = true }),
        // More query rows than one block of the backward (ReferenceAttention.BackwardBlockRows), two query heads
        // adding into one key head.
        "two_row_blocks_gqa" => new(name, 1, ReferenceAttention.BackwardBlockRows + 6, 12, 2, 1, 2, new() { Causal = true }),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Reference_gradients_match_finite_differences(string name)
    {
        var c = Case(name);
        var t = CaseTensors<float>.Create(c, CaseRunner.Seed(name));
        double[] g = t.DO.ToDoubles();
        var analytic = CaseRunner.ReferenceBackward(t);

        double Loss()
        {
            var o = CaseRunner.ReferenceForward(t).Output;
            double s = 0;
            for (int i = 0; i < o.Length; i++) s += o[i] * g[i];
            return s;
        }

        void Check(StridedBuffer<float> input, double[] gradient, string what)
        {
            double scale = Math.Max(1, TestTensors.MaxAbs(gradient));
            int n = 0;
            foreach (long off in input.Offsets())
            {
                float x = input.Data[off];
                const double h = 1e-3;
                float xp = (float)(x + h), xm = (float)(x - h);
                input.Data[off] = xp;
                double lp = Loss();
                input.Data[off] = xm;
                double lm = Loss();
                input.Data[off] = x;
                double fd = (lp - lm) / ((double)xp - xm);
                Assert.True(Math.Abs(fd - gradient[n]) <= 1e-5 * scale,
                    $"{name} {what}[{n}]: analytic {gradient[n]:R} vs finite difference {fd:R}");
                n++;
            }
        }

        Check(t.Q, analytic.Query, "dQ");
        Check(t.K, analytic.Key, "dK");
        Check(t.V, analytic.Value, "dV");
    }
}
