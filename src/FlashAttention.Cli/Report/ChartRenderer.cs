using System.Globalization;
using FlashAttention.Cli.Bench;
using ScottPlot;

namespace FlashAttention.Cli.Report;

/// <summary>
/// Draws one chart in the style of the FlashAttention-3 paper's figures with ScottPlot: grouped bars of TFLOP/s (GFLOP/s
/// for CPU data) by sequence length, one colour per implementation with a legend, the value on each bar, an optional
/// dashed line for the device's ceiling (a GPU's dense GEMM throughput, a CPU's measured FMA peak), and a title naming the pass, head dim, mask, dtype, device, date and commit.
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

    /// <summary>Builds the plot (not yet saved). <paramref name="panel"/>: a smaller panel of an overview figure, titled by head dim and mask only.</summary>
    public static Plot Build(ChartGroup g, double? ceilingTflops, bool panel = false, bool legendInPanel = true)
    {
        var plot = new Plot();
        plot.Font.Set(SansFont.Value);
        var impls = g.Implementations;
        var lens = g.SeqLens;
        int n = impls.Count;
        double groupWidth = Math.Min(0.8, 0.2 + 0.25 * n); // one implementation: narrower bars
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
        barPlot.ValueLabelStyle.FontSize = panel ? (n > 2 ? 8 : 10) : n > 3 ? 10 : 12;

        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int x = 0; x < lens.Count; x++)
            ticks.AddMajor(x, lens[x].Q == lens[x].K ? BenchNames.SeqLen(lens[x].Q) : $"{BenchNames.SeqLen(lens[x].Q)}×{BenchNames.SeqLen(lens[x].K)}");
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        plot.Axes.Bottom.TickLabelStyle.FontSize = panel ? 12 : 14;
        plot.Axes.Left.TickLabelStyle.FontSize = panel ? 11 : 13;
        plot.XLabel("Sequence length", panel ? 12 : 15);
        plot.YLabel($"Speed ({g.Unit})", panel ? 12 : 15);

        var legend = impls.Select(i => new LegendItem { LabelText = i, FillColor = ColorOf(i, impls), LineWidth = 0 }).ToList();
        if (ceilingTflops is double ceiling && ceiling > 0)
        {
            double y = ceiling * g.Scale;
            var line = plot.Add.HorizontalLine(y);
            line.LinePattern = LinePattern.Dashed;
            line.LineWidth = 2;
            line.Color = Color.FromHex("#444444");
            legend.Add(new LegendItem { LabelText = $"{g.CeilingLabel} ({MarkdownReport.Format(y)} {g.Unit})", LineColor = Color.FromHex("#444444"), LineWidth = 2, LinePattern = LinePattern.Dashed });
            max = Math.Max(max, y);
        }
        if (legendInPanel)
        {
            plot.ShowLegend(legend, Alignment.UpperLeft);
            plot.Legend.FontSize = panel ? 10 : 13;
        }

        plot.Axes.SetLimits(-0.6, lens.Count - 0.4, 0, max <= 0 ? 1 : max * (1.08 + 0.055 * Math.Min(legend.Count, 6)));

        var (dates, commits) = g.Provenance();
        string sample = g.IsSample ? "SAMPLE DATA (not a measurement) — " : "";
        if (panel) plot.Title($"head dim {g.HeadDim}, {g.MaskTitle}", 13);
        else plot.Title($"{sample}{g.DirectionTitle}, head dim {g.HeadDim}, {g.MaskTitle}, {g.Dtype}\n{g.DeviceName} · {dates} · commit {commits}", 16);
        plot.Grid.XAxisStyle.MajorLineStyle.Width = 0;
        return plot;
    }

    /// <summary>
    /// A paper-style figure of several charts that share device, dtype and direction: one row per mask, one column per
    /// head dim, the legend in the first panel, and a header naming the pass, dtype, device, date and commit.
    /// </summary>
    public static byte[] OverviewPng(IReadOnlyList<ChartGroup> groups, Func<ChartGroup, double?> ceiling, int width, int height)
    {
        var masks = groups.Select(g => g.Mask).Distinct().ToList();
        var dims = groups.Select(g => g.HeadDim).Distinct().Order().ToList();
        var plots = new List<Plot>();
        var first = groups[0];
        for (int r = 0; r < masks.Count; r++)
        for (int c = 0; c < dims.Count; c++)
        {
            var g = groups.FirstOrDefault(x => x.Mask == masks[r] && x.HeadDim == dims[c]);
            var plot = g is null ? new Plot() : Build(g, ceiling(g), panel: true, legendInPanel: r == 0 && c == 0);
            if (g is null) plot.Title($"head dim {dims[c]}, {masks[r]}: no data", 13);
            plots.Add(plot);
        }
        var multiplot = new Multiplot();
        multiplot.Reset(plots[0]); // a new Multiplot holds one empty plot: replace it
        foreach (var plot in plots.Skip(1)) multiplot.AddPlot(plot);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Grid(masks.Count, dims.Count);

        const int header = 64;
        using var surface = SkiaSharp.SKSurface.Create(new SkiaSharp.SKImageInfo(width, height));
        var canvas = surface.Canvas;
        canvas.Clear(SkiaSharp.SKColors.White);
        var (dates, commits) = first.Provenance();
        string sample = groups.Any(g => g.IsSample) ? "SAMPLE DATA (not a measurement) — " : "";
        using (var typeface = SkiaSharp.SKTypeface.FromFamilyName(SansFont.Value))
        using (var font = new SkiaSharp.SKFont(typeface, 20))
        using (var small = new SkiaSharp.SKFont(typeface, 15))
        using (var paint = new SkiaSharp.SKPaint { Color = SkiaSharp.SKColors.Black, IsAntialias = true })
        {
            canvas.DrawText($"{sample}Attention {first.DirectionTitle.ToLowerInvariant()}, {first.Dtype}: speed by sequence length", width / 2f, 28, SkiaSharp.SKTextAlign.Center, font, paint);
            canvas.DrawText($"{first.DeviceName} · {dates} · commit {commits} · {first.Unit}, higher is better", width / 2f, 52, SkiaSharp.SKTextAlign.Center, small, paint);
        }
        canvas.Save();
        canvas.Translate(0, header); // Multiplot lays out from the rectangle's size but draws from the canvas origin
        canvas.ClipRect(new SkiaSharp.SKRect(0, 0, width, height - header));
        multiplot.Render(canvas, new PixelRect(0, width, 0, height - header));
        canvas.Restore();
        using var image = surface.Snapshot();
        using var data = image.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>Renders the chart to a PNG of the given size.</summary>
    public static void SavePng(ChartGroup g, double? ceilingTflops, string path, int width, int height)
    {
        var plot = Build(g, ceilingTflops);
        plot.SavePng(path, width, height);
    }
}
