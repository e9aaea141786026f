using System.Globalization;
using Spectre.Console;

namespace FlashAttention.Cli.Bench;

/// <summary>
/// The terminal table of <c>flashattn bench</c>: one line per case with the median time (and min–max), the speed
/// (GFLOP/s for CPU rows, TFLOP/s for GPU rows), % of the measured peak for CPU rows, and, when peers are present,
/// the best peer's speed and our ratio to it (green ≥ 1, yellow ≥ 0.9, red below; colour only on a terminal).
/// </summary>
public static class BenchTable
{
    public static Table Build(IReadOnlyList<BenchRow> rows)
    {
        bool allCpu = rows.All(r => r.Device == "cpu");
        bool anyPeak = rows.Any(r => r.PercentOfPeak is not null);
        bool anyPeers = rows.Any(r => r.Peers is { Count: > 0 });
        bool anyKv = rows.Any(r => r.KvTbps is not null);
        string unit = allCpu ? "GFLOP/s" : "TFLOP/s";

        var table = new Table().Border(TableBorder.Rounded);
        table.AddColumn("dir");
        table.AddColumn("mask");
        table.AddColumn("dtype");
        table.AddColumn("shape");
        table.AddColumn(new TableColumn("median ms").RightAligned());
        table.AddColumn(new TableColumn("min–max ms").RightAligned());
        table.AddColumn(new TableColumn(unit).RightAligned());
        if (anyKv) table.AddColumn(new TableColumn("KV TB/s").RightAligned());
        if (anyPeak) table.AddColumn(new TableColumn("% peak").RightAligned());
        if (anyPeers)
        {
            table.AddColumn("best peer");
            table.AddColumn(new TableColumn($"peer {unit}").RightAligned());
            table.AddColumn(new TableColumn("ours/peer").RightAligned());
        }
        foreach (var r in rows)
        {
            var cells = new List<string>
            {
                r.Direction,
                r.Mask,
                r.Dtype,
                (r.Seqlens is { Count: > 0 } lens ? BenchNames.VarlenShape(lens, r.HeadsQ, r.HeadsK, r.HeadDim) : BenchNames.Shape(r.Batch, r.HeadsQ, r.HeadsK, r.SeqlenQ, r.SeqlenK, r.HeadDim)) +
                    (r.PageSize is int page ? (page > 0 ? $" page{page}" : " contiguous") + (r.AppendLength is > 0 ? $" +{r.AppendLength}" : "") : ""),
                Ms(r.TimeMsMedian),
                $"{Ms(r.TimeMsMin)}–{Ms(r.TimeMsMax)}",
                "[bold]" + Speed(r.Tflops, allCpu) + "[/]",
            };
            if (anyKv) cells.Add(r.KvTbps is double kv ? kv.ToString("F2", CultureInfo.InvariantCulture) : "");
            if (anyPeak) cells.Add(r.PercentOfPeak is double p ? p.ToString("F1", CultureInfo.InvariantCulture) + "%" : "");
            if (anyPeers)
            {
                var best = r.Peers?.OrderByDescending(p => p.Tflops).FirstOrDefault();
                if (best is null) cells.AddRange(["", "", ""]);
                else
                {
                    double ratio = best.Tflops > 0 ? r.Tflops / best.Tflops : double.NaN;
                    string color = ratio >= 1 ? "green" : ratio >= 0.9 ? "yellow" : "red";
                    cells.Add(Markup.Escape(best.Implementation));
                    cells.Add(Speed(best.Tflops, allCpu));
                    cells.Add($"[{color}]{Ratio(ratio)}×[/]");
                }
            }
            table.AddRow(cells.ToArray());
        }
        return table;
    }

    /// <summary>A speed in the table's unit: GFLOP/s (CPU) or TFLOP/s, three significant figures or so.</summary>
    public static string Speed(double tflops, bool inGflops)
    {
        double v = inGflops ? tflops * 1000 : tflops;
        return v.ToString(v >= 100 ? "F0" : v >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture);
    }

    /// <summary>Two decimals, or two significant digits below 0.1 (a CPU row against a GPU peer).</summary>
    public static string Ratio(double ratio) => ratio.ToString(ratio >= 0.1 ? "F2" : "G2", CultureInfo.InvariantCulture);

    private static string Ms(double ms) => ms.ToString(ms >= 100 ? "F0" : ms >= 10 ? "F1" : ms >= 1 ? "F2" : "F3", CultureInfo.InvariantCulture);
}
