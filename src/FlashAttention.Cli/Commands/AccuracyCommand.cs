using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using FlashAttention.Cli.Bench;
using FlashAttention.Cli.Files;
using FlashAttention.Cli.Terminal;
using FlashAttention.Cuda;
using FlashAttention.Lab.Numerics;
using FlashAttention.Numerics;

namespace FlashAttention.Cli.Commands;

/// <summary>
/// <c>flashattn accuracy</c>: the FP8 numerical-error study of the FlashAttention-3 paper on the CPU (see
/// <see cref="Fp8AccuracyStudy"/>): RMSE against float64 for FP16, BF16 and FP8 with and without block quantisation and
/// incoherent processing, beside the paper's figures. The table goes to standard output, progress to standard error.
/// </summary>
internal static class AccuracyCommand
{
    public static Command Create()
    {
        var defaults = new AccuracyStudyOptions();
        var seed = new Option<int>("--seed") { Description = "Seed of the inputs and of the Hadamard signs.", DefaultValueFactory = _ => defaults.Seed };
        var batch = new Option<int>("--batch") { Description = "Batch size.", DefaultValueFactory = _ => defaults.Batch };
        var heads = new Option<int>("--heads") { Description = "Heads.", DefaultValueFactory = _ => defaults.Heads };
        var seqlen = new Option<int>("--seqlen") { Description = "Sequence length (queries and keys).", DefaultValueFactory = _ => defaults.SeqLen };
        var hdim = new Option<int>("--hdim") { Description = "Head dimension, a power of two up to 256 (the Hadamard rotation needs one).", DefaultValueFactory = _ => defaults.HeadDim };
        var blockSize = new Option<int>("--block-size") { Description = "Tokens per FP8 scale block.", DefaultValueFactory = _ => defaults.BlockSize };
        var json = new Option<string?>("--json") { Description = "Also write the results to this JSON file.", HelpName = "FILE" };
        var device = new Option<string>("--device") { Description = "cpu (the CPU emulation of every method) or cuda (the FP8 kernels on the GPU, each beside the CPU emulation of the same quantisation).", DefaultValueFactory = _ => "cpu" };
        device.AcceptOnlyFromAmong("cpu", "cuda");

        var command = new Command("accuracy",
            "Reproduce the FP8 accuracy study of the FlashAttention-3 paper on the CPU: inputs N(0,1) + N(0,100)·Bernoulli(0.001), " +
            "RMSE of FP16, BF16 and FP8 attention (per-tensor / per-block scales, with and without Hadamard incoherent processing) " +
            "against a float64 reference, beside the paper's figures.").WithExamples(
            "flashattn accuracy                                   # b1 h4 s4096 d128, about half a minute on 2 cores",
            "flashattn accuracy --heads 8 --json accuracy.json    # the paper's b1 h8 s4096 d128 (~twice as long)",
            "flashattn accuracy --seqlen 1024 --seed 3            # a quick look with other inputs",
            "flashattn accuracy --device cuda                     # the GPU's FP8 kernels beside the CPU emulation");
        foreach (var option in new Option[] { seed, batch, heads, seqlen, hdim, blockSize, json, device }) command.Options.Add(option);

        CommandActions.Set(command, (parse, context) =>
        {
            var options = new AccuracyStudyOptions
            {
                Seed = parse.GetValue(seed),
                Batch = parse.GetValue(batch),
                Heads = parse.GetValue(heads),
                SeqLen = parse.GetValue(seqlen),
                HeadDim = parse.GetValue(hdim),
                BlockSize = parse.GetValue(blockSize),
            };
            string? jsonPath = parse.GetValue(json);
            // Checked before the banner and the minutes of work, in the command line's words.
            try
            {
                Fp8AccuracyStudy.Check(options);
            }
            catch (AttentionArgumentException e)
            {
                throw new CliException(e.Message.Replace("options.HeadDim", "--hdim").Replace("options.BlockSize", "--block-size")
                    .Replace("options.SeqLen", "--seqlen").Replace("options.Heads", "--heads").Replace("options.Batch", "--batch")
                    .Replace("options: batch·seqlen·heads·head_dim", "--batch × --seqlen × --heads × --hdim"));
            }
            if (jsonPath is not null) OutputPaths.Check([], [("--json", jsonPath)]);

            bool gpu = parse.GetValue(device) == "cuda";
            CudaDevice? cuda = null;
            if (gpu)
            {
                var env = CudaEnvironment.Probe();
                if (!env.IsUsable) throw new CliException($"--device cuda: not usable here: {env.UnavailableMessage}", ExitCodes.DeviceUnavailable);
                if (Array.IndexOf(FlashAttention.Cuda.Variants.Fp8Variants.HeadDims, options.HeadDim) < 0)
                    throw new CliException($"--hdim: the FP8 kernel takes {string.Join(", ", FlashAttention.Cuda.Variants.Fp8Variants.HeadDims)}; got {options.HeadDim}");
                cuda = CudaDevice.Get(env.SupportedDeviceOrdinal ?? 0);
            }
            context.Progress($"accuracy{(gpu ? " on the GPU" : "")}: b{options.Batch} h{options.Heads} s{options.SeqLen} d{options.HeadDim}, float64 reference first …");
            var result = cuda is not null
                ? Fp8GpuAccuracy.Run(options, cuda, line => context.Progress("  " + line))
                : Fp8AccuracyStudy.Run(options, line => context.Progress("  " + line));
            context.Out.Write(FormatTable(result));
            context.Progress($"float64 reference {result.ReferenceSeconds:F1} s; total {result.TotalSeconds:F1} s");
            if (jsonPath is not null)
            {
                try
                {
                    AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(AccuracyReport.From(result), AccuracyJsonContext.Readable.AccuracyReport) + "\n");
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new CliException($"--json {jsonPath}: cannot be written: {CliContext.OneLine(e.Message)}", ExitCodes.Failure);
                }
                context.Progress($"wrote {jsonPath}");
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>The table as printed (the README's Accuracy section shows it verbatim).</summary>
    internal static string FormatTable(AccuracyStudyResult result)
    {
        var o = result.Options;
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture,
            $"FP8 accuracy (FlashAttention-3 paper, Table 3): b{o.Batch} h{o.Heads} s{o.SeqLen} d{o.HeadDim}, block {o.BlockSize}, seed {o.Seed}");
        text.AppendLine("inputs N(0,1) + N(0,100)·Bernoulli(0.001); RMSE of O against a float64 reference");
        text.AppendLine();
        int width = Math.Max("method".Length, result.Rows.Max(r => r.Method.Length));
        text.AppendLine($"{"method".PadRight(width)}  {"RMSE",-8}  {"paper",-8}  paper's column");
        text.AppendLine($"{new string('-', width)}  {new string('-', 8)}  {new string('-', 8)}  {new string('-', 30)}");
        foreach (var row in result.Rows)
        {
            string paper = row.PaperRmse is double p ? Sci(p, 1) : "—";
            text.AppendLine($"{row.Method.PadRight(width)}  {Sci(row.Rmse, 2),-8}  {paper,-8}  {row.PaperLabel}");
        }
        return text.ToString();
    }

    private static string Sci(double value, int decimals) => value.ToString(decimals == 1 ? "0.0e+0" : "0.00e+0", CultureInfo.InvariantCulture);
}

/// <summary>What <c>--json</c> writes.</summary>
internal sealed record AccuracyReport(
    string Study, int Seed, int Batch, int Heads, int SeqLen, int HeadDim, int BlockSize, double OutlierProbability, double OutlierStdDev,
    string RmseDefinition, double ReferenceSeconds, double TotalSeconds, int ProcessorCount, AccuracyReportRow[] Rows)
{
    public static AccuracyReport From(AccuracyStudyResult r) => new(
        "FlashAttention-3 paper Table 3 (FP8 numerical error), CPU emulation", r.Options.Seed, r.Options.Batch, r.Options.Heads,
        r.Options.SeqLen, r.Options.HeadDim, r.Options.BlockSize, r.Options.OutlierProbability, r.Options.OutlierStdDev,
        "sqrt(mean((O - O_ref)^2)) over all output elements; O_ref float64 on the same float32 inputs",
        r.ReferenceSeconds, r.TotalSeconds, Environment.ProcessorCount,
        r.Rows.Select(x => new AccuracyReportRow(x.Method, x.Rmse, x.PaperRmse, x.PaperLabel, x.Seconds)).ToArray());
}

/// <summary>One method's line in <see cref="AccuracyReport"/>.</summary>
internal sealed record AccuracyReportRow(string Method, double Rmse, double? PaperRmse, string PaperLabel, double Seconds);

/// <summary>Source-generated serialisation (the CLI is published with Native AOT: no reflection); snake_case keys, as bench JSON.</summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(AccuracyReport))]
internal sealed partial class AccuracyJsonContext : JsonSerializerContext
{
    /// <summary>Like <see cref="Default"/>, but writes "—" and "·" as themselves rather than as \u escapes (the file is UTF-8).</summary>
    public static AccuracyJsonContext Readable => s_readable ??= new(new JsonSerializerOptions(Default.Options) { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    private static AccuracyJsonContext? s_readable;
}
