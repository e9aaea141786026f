using System.Globalization;
using FlashAttention.Cli.Bench;

namespace FlashAttention.Cli.Report;

/// <summary>A bench row and where it came from.</summary>
public sealed record SourcedRow(BenchRow Row, string File, bool Sample);

/// <summary>
/// The rows of one chart: one device, dtype, direction, head dim and mask; bars by sequence length (x) and implementation (colour).
/// </summary>
public sealed class ChartGroup
{
    public required string DeviceName { get; init; }
    public required string Dtype { get; init; }
    public required string Direction { get; init; }
    public required int HeadDim { get; init; }
    public required string Mask { get; init; }
    public required IReadOnlyList<SourcedRow> Rows { get; init; }

    /// <summary>Implementations, ours ("flashattn") first, then peers alphabetically.</summary>
    public IReadOnlyList<string> Implementations => Rows.Select(r => r.Row.Implementation).Distinct()
        .OrderBy(i => i == "flashattn" ? 0 : 1).ThenBy(i => i, StringComparer.Ordinal).ToArray();

    /// <summary>The x categories: (seqlen_q, seqlen_k), shortest first.</summary>
    public IReadOnlyList<(int Q, int K)> SeqLens => Rows.Select(r => (r.Row.SeqlenQ, r.Row.SeqlenK)).Distinct().OrderBy(s => s.SeqlenQ).ThenBy(s => s.SeqlenK).ToArray();

    public bool IsSample => Rows.Any(r => r.Sample);

    /// <summary>CPU groups (or any whose best bar is under 1 TFLOP/s) are drawn in GFLOP/s.</summary>
    public bool InGflops => Rows.All(r => r.Row.Device == "cpu") || Rows.Max(r => r.Row.Tflops) < 1;

    public string Unit => InGflops ? "GFLOP/s" : "TFLOP/s";

    public double Scale => InGflops ? 1000 : 1;

    /// <summary>The row drawn for an implementation at a length: the latest one when several match.</summary>
    public BenchRow? Find(string implementation, (int Q, int K) seqLen) => Rows
        .Where(r => r.Row.Implementation == implementation && r.Row.SeqlenQ == seqLen.Q && r.Row.SeqlenK == seqLen.K)
        .OrderByDescending(r => r.Row.ParsedDate ?? DateTimeOffset.MinValue)
        .Select(r => r.Row)
        .FirstOrDefault();

    public string DirectionTitle => Direction == "fwd" ? "Forward" : "Backward";

    public string MaskTitle => Mask switch { "causal" => "causal", "window" => "sliding window", _ => "full (non-causal)" };

    /// <summary>
    /// The ceiling recorded in the rows, in TFLOP/s: the dense GEMM throughput of a GPU (<c>gemm_tflops</c>), or for CPU
    /// rows the measured fp32 FMA peak (<c>peak_gflops</c>); null when the rows hold none.
    /// </summary>
    public double? RecordedCeiling => Rows.All(r => r.Row.Device == "cpu")
        ? Rows.Select(r => r.Row.PeakGflops).Where(g => g is > 0).Max() / 1000
        : Rows.Select(r => r.Row.GemmTflops).Where(g => g is > 0).Max();

    /// <summary>What the ceiling line is: the GPU's dense GEMM, or the CPU's FMA peak.</summary>
    public string CeilingLabel => Rows.All(r => r.Row.Device == "cpu") ? "measured fp32 FMA peak" : "dense GEMM ceiling";

    /// <summary>Dates (day) and commits of our rows (of all rows when ours are absent), for titles.</summary>
    public (string Dates, string Commits) Provenance()
    {
        var ours = Rows.Where(r => r.Row.Implementation == "flashattn").Select(r => r.Row).ToList();
        if (ours.Count == 0) ours = Rows.Select(r => r.Row).ToList();
        var days = ours.Select(r => r.ParsedDate?.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture) ?? "date unknown").Distinct().Order().ToList();
        var commits = ours.Select(r => r.Commit).Distinct().Order().ToList();
        string dates = days.Count == 1 ? days[0] : $"{days[0]} … {days[^1]}";
        string commit = commits.Count == 1 ? commits[0] : string.Join(", ", commits.Take(3)) + (commits.Count > 3 ? ", …" : "");
        return (dates, commit);
    }

    /// <summary>File name stem: <c>fwd-bf16-hdim128-causal</c>, plus the device when the report covers several.</summary>
    public string FileStem(bool withDevice)
    {
        string stem = $"{Direction}-{Dtype}-hdim{HeadDim}-{Mask}";
        if (!withDevice) return stem;
        var slug = new string(DeviceName.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '-').ToArray());
        while (slug.Contains("--")) slug = slug.Replace("--", "-");
        return slug.Trim('-') + "-" + stem;
    }

    /// <summary>
    /// Groups rows into charts, ordered by device, dtype, direction (fwd first), mask (full first), head dim. Memory-bound
    /// rows (the FP8 quantiser's, which carry TB/s and no FLOPs) and variable-length rows are left out. An FP8 (e4m3) chart also shows the bf16
    /// rows of the same device and shape, as "&lt;implementation&gt; bf16", so the gain over 16-bit sits beside the peers.
    /// </summary>
    public static IReadOnlyList<ChartGroup> Build(IEnumerable<SourcedRow> rows)
    {
        // Varlen rows have no single sequence length to stand on an x axis; MarkdownReport.Varlen tables them apart.
        var attention = rows.Where(r => r.Row.BandwidthTbps is null && r.Row.Seqlens is null).ToList();
        var fp8Shapes = attention.Where(r => r.Row.Dtype == "e4m3")
            .Select(r => (r.Row.DeviceName, r.Row.Direction, r.Row.HeadDim, r.Row.Mask)).ToHashSet();
        var bf16Beside = attention
            .Where(r => r.Row.Dtype == "bf16" && fp8Shapes.Contains((r.Row.DeviceName, r.Row.Direction, r.Row.HeadDim, r.Row.Mask)))
            .Select(r => r with { Row = r.Row.Relabelled(r.Row.Implementation + " bf16", "e4m3") });
        return Group(attention.Concat(bf16Beside));
    }

    private static IReadOnlyList<ChartGroup> Group(IEnumerable<SourcedRow> rows) => rows
        .GroupBy(r => (r.Row.DeviceName, r.Row.Dtype, r.Row.Direction, r.Row.HeadDim, r.Row.Mask))
        .Select(g => new ChartGroup
        {
            DeviceName = g.Key.DeviceName, Dtype = g.Key.Dtype, Direction = g.Key.Direction, HeadDim = g.Key.HeadDim, Mask = g.Key.Mask,
            Rows = g.ToList(),
        })
        .OrderBy(g => g.DeviceName, StringComparer.Ordinal).ThenBy(g => g.Dtype, StringComparer.Ordinal)
        .ThenBy(g => g.Direction == "fwd" ? 0 : 1).ThenBy(g => g.Mask == "full" ? 0 : g.Mask == "causal" ? 1 : 2).ThenBy(g => g.HeadDim)
        .ToList();
}
