using System.CommandLine;
using System.Text;
using FlashAttention.Cli.Bench;
using FlashAttention.Cli.Report;
using FlashAttention.Cli.Terminal;

namespace FlashAttention.Cli.Commands;

/// <summary><c>flashattn report</c>: charts and tables from bench JSON files.</summary>
internal static class ReportCommand
{
    public static Command Create()
    {
        var files = new Argument<string[]>("files") { Description = "Bench JSON files (ours from bench --json, peers' from bench/peers/).", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out") { Description = "Folder for the PNG charts and Markdown tables (created if needed).", DefaultValueFactory = _ => "bench-report", HelpName = "DIR" };
        var ceiling = new Option<double?>("--ceiling") { Description = "Ceiling in TFLOP/s, drawn as a dashed line (default: gemm_tflops from GPU rows, the measured FMA peak_gflops from CPU rows)." };
        var width = new Option<int>("--width") { Description = "PNG width in pixels.", DefaultValueFactory = _ => 1200 };
        var height = new Option<int>("--height") { Description = "PNG height in pixels.", DefaultValueFactory = _ => 700 };

        var command = new Command("report", """
            Draw paper-style charts from bench JSON files: grouped bars of TFLOP/s (GFLOP/s for CPU data) by sequence length,
            one colour per implementation, one PNG per device × dtype × direction × head dim × mask, each with a Markdown
            table beside it (same name, .md), plus index.md linking them all. Titles name the device, date and commit.
            Variable-length rows (bench --varlen) are not charted; varlen.md tables them.
            """)
        {
            files, output, ceiling, width, height,
        }.WithExamples(
            "flashattn report h100.json bench/peers/h100-peers.json --out bench/results/2026-11-25-h100 --ceiling 765",
            "flashattn report bench/samples/h100-sample.json --out /tmp/sample-report   # made-up data, for a look");
        CommandActions.Set(command, (p, context) =>
        {
            int w = p.GetValue(width), h = p.GetValue(height);
            if (w is < 200 or > 8000 || h is < 150 or > 8000) throw new CliException($"--width/--height: expected 200…8000 × 150…8000 pixels; got {w} × {h}");
            double? ceilingValue = p.GetValue(ceiling);
            if (ceilingValue is double c && !(c > 0)) throw new CliException($"--ceiling: expected TFLOP/s > 0; got {c}");
            string outDir = p.GetValue(output)!;

            var rows = new List<SourcedRow>();
            foreach (string file in p.GetValue(files)!)
            {
                var bench = BenchJson.Load(file);
                rows.AddRange(bench.Rows.Select(r => new SourcedRow(r, file, bench.Sample == true)));
            }
            if (rows.Count == 0) throw new CliException("the input files hold no rows; nothing to chart");
            // Back-to-back and per-call timings measure different things (a lone call's latency includes the host's
            // queueing); bars of both in one chart would compare them.
            var modes = rows.Where(r => r.Row.Device != "cpu").GroupBy(r => r.Row.TimingKey).ToList();
            if (modes.Count > 1)
                throw new CliException("the GPU rows were timed in different ways (" +
                    string.Join("; ", modes.Select(m => $"{m.Key}: {string.Join(", ", m.Select(r => Path.GetFileName(r.File)).Distinct())}")) +
                    "); chart one timing mode at a time");

            var varlenRows = rows.Where(r => r.Row.Seqlens is not null).ToList();
            var groups = ChartGroup.Build(rows);
            var written = Write(groups, outDir, ceilingValue, w, h, context.Progress, varlenRows);
            foreach (string f in written) context.Out.WriteLine($"wrote {f}");
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>Renders every group; returns the files written (PNGs, their tables, index.md).</summary>
    public static IReadOnlyList<string> Write(IReadOnlyList<ChartGroup> groups, string outDir, double? ceiling, int width, int height, Action<string>? progress,
        IReadOnlyList<SourcedRow>? varlenRows = null)
    {
        try
        {
            Directory.CreateDirectory(outDir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"--out {outDir}: cannot create the folder: {CliContext.OneLine(e.Message)}");
        }
        bool withDevice = groups.Select(g => g.DeviceName).Distinct().Count() > 1;
        var written = new List<string>();
        var panels = new StringBuilder();
        for (int i = 0; i < groups.Count; i++)
        {
            var g = groups[i];
            string stem = g.FileStem(withDevice);
            double? line = ceiling ?? g.RecordedCeiling;
            progress?.Invoke($"[{i + 1}/{groups.Count}] {stem}");
            string png = Path.Combine(outDir, stem + ".png"), md = Path.Combine(outDir, stem + ".md");
            AtomicFile.Write(png, stream =>
            {
                var plot = ChartRenderer.Build(g, line);
                byte[] bytes = plot.GetImageBytes(width, height, ScottPlot.ImageFormat.Png);
                stream.Write(bytes);
            });
            string table = MarkdownReport.Table(g, stem + ".png", line);
            AtomicFile.WriteAllText(md, table);
            written.Add(png);
            written.Add(md);
            panels.AppendLine(table.Replace("## ", "### ", StringComparison.Ordinal)).AppendLine();
        }
        // Paper-style overviews: one figure per device × dtype × direction with a panel per mask × head dim.
        var overviews = new StringBuilder();
        foreach (var set in groups.GroupBy(g => (g.DeviceName, g.Dtype, g.Direction)).Where(s => s.Count() > 1))
        {
            var members = set.ToList();
            string stem = (withDevice ? members[0].FileStem(true).Split($"-{members[0].Direction}-")[0] + "-" : "") + $"overview-{set.Key.Direction}-{set.Key.Dtype}";
            string png = Path.Combine(outDir, stem + ".png");
            int rows = members.Select(m => m.Mask).Distinct().Count(), cols = members.Select(m => m.HeadDim).Distinct().Count();
            progress?.Invoke($"overview {stem}");
            byte[] bytes = ChartRenderer.OverviewPng(members, g => ceiling ?? g.RecordedCeiling, Math.Max(width, 560 * cols), Math.Max(height, 64 + 420 * rows));
            AtomicFile.Write(png, stream => stream.Write(bytes));
            written.Add(png);
            overviews.AppendLine($"![{set.Key.Direction} {set.Key.Dtype} overview]({stem}.png)").AppendLine();
        }
        var index = new StringBuilder("# Attention benchmark report\n\n");
        if (groups.Any(g => g.IsSample)) index.AppendLine("> **Contains SAMPLE DATA — made up for tests, not a measurement.**").AppendLine();
        if (overviews.Length > 0) index.Append("## Overview\n\n").Append(overviews);
        index.Append("## Panels\n\n").Append(panels);
        if (varlenRows is { Count: > 0 })
        {
            string varlenPath = Path.Combine(outDir, "varlen.md");
            string table = MarkdownReport.Varlen(varlenRows);
            AtomicFile.WriteAllText(varlenPath, table);
            written.Add(varlenPath);
            index.AppendLine().Append(table.Replace("## ", "### ", StringComparison.Ordinal)).AppendLine();
        }

        string indexPath = Path.Combine(outDir, "index.md");
        AtomicFile.WriteAllText(indexPath, index.ToString());
        written.Add(indexPath);
        return written;
    }
}
