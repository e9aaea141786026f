using System.Globalization;
using System.Text;
using FlashAttention.Cli.Bench;

namespace FlashAttention.Cli.Report;

/// <summary>The Markdown table written beside each chart, for people who read rather than look.</summary>
public static class MarkdownReport
{
    private static string TimingNote(ChartGroup g) => g.Rows.All(r => r.Row.Device == "cpu") ? ""
        : g.Rows[0].Row.TimingKey == "back-to-back" ? "; GPU time per call, calls queued back to back" : "; each call timed alone, host queueing included";

    public static string Table(ChartGroup g, string? pngFileName, double? ceiling)
    {
        var sb = new StringBuilder();
        var (dates, commits) = g.Provenance();
        if (g.IsSample) sb.AppendLine("> **SAMPLE DATA — made up for tests, not a measurement.**").AppendLine();
        sb.AppendLine($"## {g.DirectionTitle}, head dim {g.HeadDim}, {g.MaskTitle}, {g.Dtype}").AppendLine();
        sb.AppendLine($"{g.DeviceName} · {dates} · commit `{commits}` · {g.Unit} (higher is better; FLOPs = 4·B·H·Sq·Sk·D{(g.Mask == "causal" ? ", halved for causal" : "")}{(g.Direction == "bwd" ? ", ×2.5 for backward" : "")}{TimingNote(g)})").AppendLine();
        if (pngFileName is not null) sb.AppendLine($"![{g.DirectionTitle}, head dim {g.HeadDim}, {g.Mask}]({pngFileName})").AppendLine();
        var impls = g.Implementations;
        // Our other series (FP8 end to end, our bf16 beside FP8) are not peers.
        var peers = impls.Where(i => !i.StartsWith("flashattn", StringComparison.Ordinal)).ToList();
        bool ratio = impls.Contains("flashattn") && peers.Count > 0;
        sb.Append("| seqlen | batch × heads |");
        foreach (string impl in impls) sb.Append($" {impl} |");
        if (ratio) sb.Append(" flashattn / best peer |");
        sb.AppendLine();
        sb.Append("|---:|---:|");
        foreach (string _ in impls) sb.Append("---:|");
        if (ratio) sb.Append("---:|");
        sb.AppendLine();
        foreach (var s in g.SeqLens)
        {
            var any = impls.Select(i => g.Find(i, s)).First(r => r is not null)!;
            string len = s.Q == s.K ? s.Q.ToString(CultureInfo.InvariantCulture) : $"{s.Q}×{s.K}";
            sb.Append($"| {len} | {any.Batch} × {any.HeadsQ}{(any.HeadsK != any.HeadsQ ? "/" + any.HeadsK : "")} |");
            foreach (string impl in impls)
                sb.Append(g.Find(impl, s) is { } r ? $" {Format(r.Tflops * g.Scale)} |" : " – |");
            if (ratio)
            {
                var ours = g.Find("flashattn", s);
                var best = peers.Select(pi => g.Find(pi, s)).Where(r => r is not null).MaxBy(r => r!.Tflops);
                sb.Append(ours is not null && best is not null && best.Tflops > 0
                    ? $" {(ours.Tflops / best.Tflops).ToString("F2", CultureInfo.InvariantCulture)}× ({best.Implementation}) |"
                    : " – |");
            }
            sb.AppendLine();
        }
        if (ceiling is double c) sb.AppendLine().AppendLine($"{char.ToUpperInvariant(g.CeilingLabel[0])}{g.CeilingLabel[1..]}: {Format(c * g.Scale)} {g.Unit}.");
        var notes = g.Rows.Where(r => !string.IsNullOrEmpty(r.Row.Notes)).Select(r => $"{r.Row.Implementation}: {r.Row.Notes}").Distinct().ToList();
        if (notes.Count > 0) sb.AppendLine().AppendLine("Notes: " + string.Join("; ", notes) + ".");
        var files = g.Rows.Select(r => Path.GetFileName(r.File)).Distinct().ToList();
        sb.AppendLine().AppendLine("Source: " + string.Join(", ", files.Select(f => $"`{f}`")) + ".");
        return sb.ToString();
    }

    /// <summary>
    /// The variable-length rows (<c>seqlens</c> set), one line each, in file order: they have no sequence length to chart
    /// by, so they are tabled apart (varlen.md), beside the dense rows at their mean length when those are present.
    /// </summary>
    public static string Varlen(IReadOnlyList<SourcedRow> rows)
    {
        var sb = new StringBuilder("## Variable-length batches\n\n");
        if (rows.Any(r => r.Sample)) sb.AppendLine("> **SAMPLE DATA — made up for tests, not a measurement.**").AppendLine();
        sb.AppendLine("FLOPs summed per sequence (4·H·s²·D, halved for causal, ×2.5 for backward); not charted (no single sequence length).").AppendLine();
        sb.AppendLine("| device | impl | dir | mask | dtype | sequences | tokens | shortest…longest | heads | head dim | median ms | TFLOP/s |");
        sb.AppendLine("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows.Select(x => x.Row))
        {
            var lens = r.Seqlens!;
            sb.AppendLine($"| {r.DeviceName} | {r.Implementation} | {r.Direction} | {r.Mask} | {r.Dtype} | {lens.Count} | {lens.Sum(l => (long)l)} | {lens.Min()}…{lens.Max()} | " +
                $"{r.HeadsQ}{(r.HeadsK != r.HeadsQ ? "/" + r.HeadsK : "")} | {r.HeadDim} | {r.TimeMsMedian.ToString("G4", CultureInfo.InvariantCulture)} | {Format(r.Tflops)} |");
        }
        var files = rows.Select(r => Path.GetFileName(r.File)).Distinct().ToList();
        sb.AppendLine().AppendLine("Source: " + string.Join(", ", files.Select(f => $"`{f}`")) + ".");
        return sb.ToString();
    }

    public static string Format(double v) => v.ToString(v >= 100 ? "F0" : v >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture);
}
