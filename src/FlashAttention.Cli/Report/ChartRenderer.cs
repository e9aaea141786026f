using System.Globalization;
using FlashAttention.Cli.Bench;
using ScottPlot;

namespace FlashAttention.Cli.Report;

/// <summary>
/// Draws one chart in the style of the FlashAttention-3 paper's figures with ScottPlot: grouped bars of TFLOP/s (GFLOP/s
/// for CPU data) by sequence length, one colour per implementation with a legend, the value on each bar, an optional
/// dashed line for the device's dense GEMM ceiling, and a title naming the pass, head dim, mask, dtype, device, date and commit.
/// </summary>
public static class ChartRenderer
{
    /// <summary>Fixed colours so an implementation looks the same in every chart; others take the palette in order.</summary>
    private static readonly Dictionary<string, string> KnownColors = new(StringComparer.OrdinalIgnoreCase)
    {
        ["flashattn"] = "#6A3D9A", // ours: purple
        ["cudnn"] = "#1F78B4",
        ["fa2"] = "#33A02C",
        ["fa3"] = "#FF7F00",
        ["sdpa-math"] = "#B15928",
        ["triton"] = "#E31A1C",
    };

    /// <summary>A sans-serif family Skia can find here (ScottPlot's default may resolve to a serif face on Linux).</summary>
    private static readonly Lazy<string> SansFont = new(() =>
    {
        foreach (string family in new[] { "DejaVu Sans", "Liberation Sans", "Arial", "Helvetica", "Noto Sans", "Open Sans" })
            using (var typeface = SkiaSharp.SKTypeface.FromFamilyName(family))
                if (typeface is not null && string.Equals(typeface.FamilyName, family, StringComparison.OrdinalIgnoreCase))
                    return family;
        return Fonts.Sans;
    });

    private static readonly string[] Palette = ["#A6CEE3", "#B2DF8A", "#FB9A99", "#FDBF6F", "#CAB2D6", "#FFFF99"];

    public static Color ColorOf(string implementation, IReadOnlyList<string> all)
    {
        if (KnownColors.TryGetValue(implementation, out string? hex)) return Color.FromHex(hex);
        var unknown = all.Where(i => !KnownColors.ContainsKey(i)).ToList();
        return Color.FromHex(Palette[Math.Max(0, unknown.IndexOf(implementation)) % Palette.Length]);
    }

    /// <summary>Builds the plot (not yet saved).</summary>
    public static Plot Build(ChartGroup g, double? ceilingTflops)
    {
        var plot = new Plot();
        plot.Font.Set(SansFont.Value);
        var impls = g.Implementations;
        var lens = g.SeqLens;
        int n = impls.Count;
        const double groupWidth = 0.8;
        double barWidth = groupWidth / n;
        double max = 0;
        var bars = new List<Bar>();
        for (int x = 0; x < lens.Count; x++)
        {
            for (int i = 0; i < n; i++)
            {
                if (g.Find(impls[i], lens[x]) is not { } row) continue;
                double value = row.Tflops * g.Scale;
                max = Math.Max(max, value);
                bars.Add(new Bar
                {
                    Position = x - groupWidth / 2 + barWidth * (i + 0.5),
                    Value = value,
                    Size = barWidth * 0.92,
                    FillColor = ColorOf(impls[i], impls),
                    LineWidth = 0,
                    Label = MarkdownReport.Format(value),
                });
            }
        }
        var barPlot = plot.Add.Bars(bars);
        barPlot.ValueLabelStyle.FontSize = n > 3 ? 10 : 12;

        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int x = 0; x < lens.Count; x++)
            ticks.AddMajor(x, lens[x].Q == lens[x].K ? BenchNames.SeqLen(lens[x].Q) : $"{BenchNames.SeqLen(lens[x].Q)}×{BenchNames.SeqLen(lens[x].K)}");
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        plot.Axes.Bottom.TickLabelStyle.FontSize = 14;
        plot.Axes.Left.TickLabelStyle.FontSize = 13;
        plot.XLabel("Sequence length", 15);
        plot.YLabel($"Speed ({g.Unit})", 15);

        var legend = impls.Select(i => new LegendItem { LabelText = i, FillColor = ColorOf(i, impls), LineWidth = 0 }).ToList();
        if (ceilingTflops is double ceiling && ceiling > 0)
        {
            double y = ceiling * g.Scale;
            var line = plot.Add.HorizontalLine(y);
            line.LinePattern = LinePattern.Dashed;
            line.LineWidth = 2;
            line.Color = Color.FromHex("#444444");
            legend.Add(new LegendItem { LabelText = $"dense GEMM ceiling ({MarkdownReport.Format(y)} {g.Unit})", LineColor = Color.FromHex("#444444"), LineWidth = 2, LinePattern = LinePattern.Dashed });
            max = Math.Max(max, y);
        }
        plot.ShowLegend(legend, Alignment.UpperLeft);
        plot.Legend.FontSize = 13;

        plot.Axes.SetLimits(-0.6, lens.Count - 0.4, 0, max <= 0 ? 1 : max * (1.08 + 0.055 * Math.Min(legend.Count, 6)));

        var (dates, commits) = g.Provenance();
        string sample = g.IsSample ? "SAMPLE DATA (not a measurement) — " : "";
        plot.Title($"{sample}{g.DirectionTitle}, head dim {g.HeadDim}, {g.MaskTitle}, {g.Dtype}\n{g.DeviceName} · {dates} · commit {commits}", 16);
        plot.Grid.XAxisStyle.MajorLineStyle.Width = 0;
        return plot;
    }

    /// <summary>Renders the chart to a PNG of the given size.</summary>
    public static void SavePng(ChartGroup g, double? ceilingTflops, string path, int width, int height)
    {
        var plot = Build(g, ceilingTflops);
        plot.SavePng(path, width, height);
    }
}
