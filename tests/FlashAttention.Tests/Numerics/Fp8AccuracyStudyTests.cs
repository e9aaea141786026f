using FlashAttention.Cli;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Numerics;

/// <summary>
/// Pins the accuracy study on a problem small enough for CI (b1 h1 s2048 d128, seed 0: 2–4 s on 2 cores) so that a
/// regression in the FP8 types, the quantiser, the rotation, the emulation or the engine fails the build.
/// </summary>
/// <remarks>
/// <para>Measured on this problem with the tiled engine (64-key tiles), seeds 0–5: FP16 1.08e-4 … 1.91e-4, BF16 0.93e-3 …
/// 1.31e-3, FP8 per-tensor 1.36e-2 … 1.76e-2, per-block + incoherent 6.8e-3 … 1.08e-2, their ratio 1.62 … 2.18. Seed 0
/// (pinned): 1.11e-4, 9.5e-4, 1.46e-2, 6.81e-3, ratio 2.14. The bands below hold seed 0 with ≥ 25 % of slack on each side, so
/// a change of tile sizes or of the order of the online softmax (which moves P's rounding a little) passes, while a broken
/// rounding, scale, rotation or row sum (each moves an RMSE by 2× or more, or swaps the order of the methods) fails.</para>
/// <para>Errors shrink with the sequence length and the incoherent gain grows with it: on the default b1 h4 s4096 problem
/// per-tensor is 1.94e-2, per-block + incoherent 8.70e-3 (ratio 2.2), inside the bands for that problem
/// ([1.5e-2, 3e-2], ≤ 1e-2 and ≥ 2×, FP16 ≤ 5e-4). At s2048 the ratio is lower, hence ≥ 1.6 here rather than 2.</para>
/// </remarks>
public class Fp8AccuracyStudyTests
{
    private static readonly Lazy<AccuracyStudyResult> Small = new(() =>
        Fp8AccuracyStudy.Run(new AccuracyStudyOptions { Seed = 0, Batch = 1, Heads = 1, SeqLen = 2048, HeadDim = 128 }));

    private static double Rmse(string method) => Small.Value.Rows.Single(r => r.Method == method).Rmse;

    [Fact]
    public void Accuracy_lands_in_the_pinned_bands()
    {
        double fp16 = Rmse(Fp8AccuracyStudy.Fp16), bf16 = Rmse(Fp8AccuracyStudy.BFloat16Name);
        double perTensor = Rmse(Fp8AccuracyStudy.Fp8PerTensor), perBlock = Rmse(Fp8AccuracyStudy.Fp8PerBlock);
        double perTensorIncoherent = Rmse(Fp8AccuracyStudy.Fp8PerTensorIncoherent), best = Rmse(Fp8AccuracyStudy.Fp8PerBlockIncoherent);
        double scaledP = Rmse(Fp8AccuracyStudy.Fp8PerBlockIncoherentScaledP);
        Assert.InRange(fp16, 5e-5, 3e-4);
        Assert.InRange(bf16, 5e-4, 2e-3);
        Assert.InRange(perTensor, 1.0e-2, 2.2e-2);
        Assert.InRange(perBlock, 0.8e-2, 2.2e-2);
        Assert.InRange(best, 4e-3, 9.5e-3);
        Assert.InRange(perTensorIncoherent, 4e-3, 9.5e-3);
        Assert.True(perTensor / best >= 1.6, $"per-block + incoherent ({best:E2}) should be ≥ 1.6× better than per-tensor ({perTensor:E2})");
        Assert.True(scaledP <= best * 1.05, $"scaling P by 2^8 ({scaledP:E2}) should not be worse than not scaling it ({best:E2})");
        Assert.True(bf16 > fp16 && perTensor > 10 * bf16, "FP16 < BF16 < FP8 in error");
    }

    [Fact]
    public void Paper_figures_sit_beside_ours()
    {
        var rows = Small.Value.Rows;
        Assert.Equal(7, rows.Count);
        Assert.Equal(1.9e-4, rows[0].PaperRmse);
        Assert.Equal(2.4e-2, rows.Single(r => r.Method == Fp8AccuracyStudy.Fp8PerTensor).PaperRmse);
        Assert.Equal(9.1e-3, rows.Single(r => r.Method == Fp8AccuracyStudy.Fp8PerBlockIncoherent).PaperRmse);
        Assert.Null(rows.Single(r => r.Method == Fp8AccuracyStudy.BFloat16Name).PaperRmse);
    }

    [Fact]
    public void Outlier_distribution_has_the_papers_moments()
    {
        var x = new float[1 << 20];
        Fp8AccuracyStudy.FillOutlierDistribution(x, new Random(1));
        double mean = x.Average(v => (double)v), variance = x.Average(v => (double)v * v) - mean * mean;
        Assert.InRange(mean, -0.01, 0.01);
        Assert.InRange(variance, 1.07, 1.13);                    // 1 + 0.001 · 100
        // |N(0,1)| > 6 essentially never happens (2e-9); an outlier (std ≈ 10.05) lands beyond 6 with probability 0.55:
        // expect 2^20 · 0.001 · 0.55 ≈ 577 ± 24.
        Assert.InRange(x.Count(v => Math.Abs(v) > 6), 480, 680);
        var again = new float[x.Length];
        Fp8AccuracyStudy.FillOutlierDistribution(again, new Random(1));
        Assert.Equal(x, again);
    }

    [Fact]
    public void Cli_prints_the_table_and_writes_json()
    {
        string path = Path.Combine(Path.GetTempPath(), $"flashattn-accuracy-{Guid.NewGuid():N}.json");
        var output = new StringWriter();
        var error = new StringWriter();
        try
        {
            int code = Program.BuildRoot().Parse(["accuracy", "--seqlen", "128", "--heads", "1", "--hdim", "64", "--block-size", "32", "--seed", "4", "--json", path])
                .Invoke(new System.CommandLine.InvocationConfiguration { Output = output, Error = error });
            Assert.Equal(0, code);
            string table = output.ToString();
            Assert.Contains("b1 h1 s128 d64, block 32, seed 4", table);
            foreach (string method in new[] { "FP16", "BF16", "FP8 per-tensor", "FP8 per-block + incoherent" }) Assert.Contains(method, table);
            Assert.Contains("9.1e-3", table);
            string json = File.ReadAllText(path);
            Assert.Contains("\"rmse\":", json);
            Assert.Contains("\"paper_rmse\": 0.0091", json);
            Assert.Contains("\"block_size\": 32", json);
            Assert.Contains("FP8 per-block + incoherent", json);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Cli_turns_bad_options_into_one_line_errors()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Program.BuildRoot().Parse(["accuracy", "--hdim", "96"])
            .Invoke(new System.CommandLine.InvocationConfiguration { Output = output, Error = error });
        Assert.Equal(2, code);
        // The CLI's usual one line, in its option names, before the banner (nothing else printed).
        Assert.Equal("error: --hdim: expected a power of two from 1 to 256 (the Hadamard rotation needs a power of two); got 96", error.ToString().Trim());
        Assert.Equal("", output.ToString());
    }
}
