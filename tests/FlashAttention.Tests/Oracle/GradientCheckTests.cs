using FlashAttention.Cpu;
using FlashAttention.Tests.Cpu;

namespace FlashAttention.Tests.Oracle;

/// <summary>
/// The gradients of the float64 reference, of the engine and of the plain implementation against central differences
/// of the independent oracle's forward (<see cref="NaiveAttention.NumericalGradients"/>; loss Σ O ∘ G for a random G),
/// on small problems with several key heads, windows on either or both sides, softcap, bottom-right alignment with
/// sq ≠ sk, rows that see no key, varlen batches, and more rows and keys than one block of the reference's and the
/// engine's backward.
/// </summary>
public class GradientCheckTests
{
    internal static readonly Dictionary<string, AttentionCase> Cases = new AttentionCase[]
    {
        new("causal_sq5_sk8_gqa6to3", 1, 5, 8, 6, 3, 4, new() { Causal = true }),
        new("window_2_1_softcap_gqa4to2", 2, 9, 9, 4, 2, 3, new() { WindowLeft = 2, WindowRight = 1, Softcap = 1.5f }),
        new("causal_left2_sq9_sk6_rows_that_see_nothing", 1, 9, 6, 4, 2, 4, new() { Causal = true, WindowLeft = 2 }),
        new("window_right2_scale_softcap", 1, 7, 7, 2, 2, 5, new() { WindowRight = 2, SoftmaxScale = 0.6f, Softcap = 2 }),
        new("window_left3_sq6_sk10_mqa3to1", 1, 6, 10, 3, 1, 3, new() { WindowLeft = 3 }),
        AttentionCase.Varlen("varlen_empty_keys_causal_softcap_gqa4to2", [0, 3, 3, 8], [0, 4, 6, 6], 4, 2, 3,
            new() { Causal = true, Softcap = 2.5f }),
        // More query rows than a block of the reference's backward (64) and of the engine's (96), more keys than the
        // engine's 64-key tile, two key heads each shared by two query heads.
        new("blocks_sq100_sk70_gqa4to2_window_softcap", 1, 100, 70, 4, 2, 2, new() { WindowLeft = 40, WindowRight = 5, Softcap = 3 }),
    }.ToDictionary(c => c.Name);

    public static TheoryData<string> AllCases() => [.. Cases.Keys];

    // The differences are the slow part: computed once per case, shared by the three tests.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<(double[], double[], double[])>> Differences = new();

    /// <summary>Fresh tensors of the case (same seed every time) and the oracle's numerical gradients of them.</summary>
    private static (CaseTensors<float> Tensors, double[] dQ, double[] dK, double[] dV) Numerical(string name)
    {
        var c = Cases[name];
        var t = CaseTensors<float>.Create(c, CaseRunner.Seed(name));
        var (dq, dk, dv) = Differences.GetOrAdd(name, _ => new(() =>
        {
            var sequences = OracleBridge.Sequences(t);
            var g = OracleBridge.OutputGradients(t);
            var grads = sequences.Select((s, b) => NaiveAttention.NumericalGradients(s, g[b], c.Options)).ToArray();
            return (OracleBridge.Tokens(grads.Select(x => x.dQ)), OracleBridge.Tokens(grads.Select(x => x.dK)), OracleBridge.Tokens(grads.Select(x => x.dV)));
        })).Value;
        return (t, dq, dk, dv);
    }

    // Central differences at step 1e-4 err by ~1e-8 (truncation) on these inputs of order 1; the reference's float64
    // gradients by far less. 1e-6 is well above both and far below a dropped or wrong term (≥ 1e-2 of the gradient).
    private const double Float64Tolerance = 1e-6;

    // Float32 gradients: rounding of a few ulp per step, summed over at most 100 rows (~1e-6 relative at worst).
    private const double Float32Tolerance = 1e-5;

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Reference_gradients_match_the_oracles_finite_differences(string name)
    {
        var (t, dq, dk, dv) = Numerical(name);
        ReferenceGradients reference = CaseRunner.ReferenceBackward(t);
        OracleBridge.AssertClose($"{name} reference dQ", reference.Query, dq, Float64Tolerance);
        OracleBridge.AssertClose($"{name} reference dK", reference.Key, dk, Float64Tolerance);
        OracleBridge.AssertClose($"{name} reference dV", reference.Value, dv, Float64Tolerance);
    }

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Engine_gradients_match_the_oracles_finite_differences(string name)
    {
        var (t, dq, dk, dv) = Numerical(name);
        CaseRunner.Forward(t);
        CaseRunner.Backward(t);
        OracleBridge.AssertClose($"{name} engine dQ", t.DQ.ToDoubles(), dq, Float32Tolerance);
        OracleBridge.AssertClose($"{name} engine dK", t.DK.ToDoubles(), dk, Float32Tolerance);
        OracleBridge.AssertClose($"{name} engine dV", t.DV.ToDoubles(), dv, Float32Tolerance);
    }

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Plain_gradients_match_the_oracles_finite_differences(string name)
    {
        var (t, dq, dk, dv) = Numerical(name);
        var plain = CaseRunner.PlainBackward(t);
        OracleBridge.AssertClose($"{name} plain dQ", TestTensors.ToDoubles(plain.Query), dq, Float32Tolerance);
        OracleBridge.AssertClose($"{name} plain dK", TestTensors.ToDoubles(plain.Key), dk, Float32Tolerance);
        OracleBridge.AssertClose($"{name} plain dV", TestTensors.ToDoubles(plain.Value), dv, Float32Tolerance);
    }
}
