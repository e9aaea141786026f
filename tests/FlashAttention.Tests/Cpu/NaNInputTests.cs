using FlashAttention.Cpu;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Cpu;

/// <summary>
/// A NaN in an input reaches the outputs it feeds: the O rows and (through Q or K) the LSE entries of every query row that
/// sees it are NaN, never the −∞ LSE of a row that sees no key; rows that do not see it stay finite. The engine (each
/// vector width) and the float64 reference agree.
/// </summary>
public class NaNInputTests
{
    // Row i sees keys up to i + 30 (causal, bottom-right aligned); two query heads, one key head (GQA).
    private static readonly AttentionCase Case = new("nan_b1_sq40_sk70_gqa2to1_d24_causal", 1, 40, 70, 2, 1, 24, new() { Causal = true });

    public static TheoryData<string, Engine> Inputs()
    {
        var data = new TheoryData<string, Engine>();
        foreach (string input in new[] { "q", "k", "v" })
            foreach (var engine in new[] { Engine.Public, Engine.Width256, Engine.Width128 })
                data.Add(input, engine);
        return data;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Float32(string input, Engine engine) => Check<float>(input, engine);

    [Theory]
    [InlineData("q")]
    [InlineData("k")]
    public void Float16_and_BFloat16(string input)
    {
        Check<Half>(input, Engine.Public);
        Check<BFloat16>(input, Engine.Public);
    }

    private static void Check<T>(string input, Engine engine) where T : unmanaged
    {
        const int nanRow = 5, nanKey = 50, dim = 24;
        var t = CaseTensors<T>.Create(Case, 11);
        T nan = ElementConvert.FromSingle<T>(float.NaN);
        switch (input)
        {
            case "q": t.Q.Data[(nanRow * 2 + 1) * dim + 7] = nan; break; // query row 5, head 1
            case "k": t.K.Data[nanKey * dim + 3] = nan; break;             // key 50: seen by rows 20 and up
            default: t.V.Data[nanKey * dim + 3] = nan; break;
        }
        TestTensors.Poison(t.O);
        Array.Fill(t.Lse.Data, 123f);
        if (engine == Engine.Public) CaseRunner.Forward(t, engine);
        else CaseRunner.ForwardInternal<T, NoRounding>(t, engine);
        var reference = CaseRunner.ReferenceForward(t);

        for (int h = 0; h < 2; h++)
            for (int i = 0; i < Case.SeqQ; i++)
            {
                bool nanO = input == "q" ? i == nanRow && h == 1 : i + 30 >= nanKey;
                bool nanLse = input != "v" && nanO;
                string where = $"{typeof(T).Name} {engine}, NaN in {input}: row {i} head {h}";
                float lse = t.Lse.Data[h * Case.SeqQ + i];
                double refLse = reference.LogSumExp[h * Case.SeqQ + i];
                Assert.True(nanLse ? float.IsNaN(lse) : float.IsFinite(lse), $"{where}: LSE {lse}");
                Assert.True(nanLse ? double.IsNaN(refLse) : double.IsFinite(refLse), $"{where}: reference LSE {refLse}");
                for (int c = 0; c < dim; c++)
                {
                    float o = ElementConvert.ToSingle(t.O.Data[(i * 2 + h) * dim + c]);
                    double refO = reference.Output[(i * 2 + h) * dim + c];
                    // A NaN in V reaches only its own column of O. A row that does not see that key may get it too in the
                    // engine, whose P·V multiplies the masked key's P = 0 by the NaN (as FlashAttention's kernels do).
                    bool expectNaN = nanO && (input != "v" || c == 3);
                    if (input == "v" && c == 3 && !nanO) { Assert.True(double.IsFinite(refO), $"{where}: reference O[{c}] = {refO}"); continue; }
                    Assert.True(expectNaN ? float.IsNaN(o) : float.IsFinite(o), $"{where}: O[{c}] = {o}");
                    Assert.True(expectNaN ? double.IsNaN(refO) : double.IsFinite(refO), $"{where}: reference O[{c}] = {refO}");
                }
            }
    }
}
