using System.CommandLine;
using FlashAttention.Cli.Info;
using FlashAttention.Cli.Terminal;
using Spectre.Console;

namespace FlashAttention.Cli.Commands;

/// <summary><c>flashattn info</c>: what this machine offers the library.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var peakSeconds = new Option<double>("--peak-seconds")
        {
            Description = "How long to measure the fp32 FMA peak (0 skips it).",
            DefaultValueFactory = _ => 1.0,
        };
        peakSeconds.Validators.Add(r =>
        {
            double v = r.GetValueOrDefault<double>();
            if (!(v >= 0 && v <= 60)) r.AddError($"--peak-seconds: expected a value from 0 to 60; got {v}");
        });
        var command = new Command("info", """
            Show the machine: OS, .NET, CPU model and instruction sets, core count, the measured fp32 FMA peak
            (a Vector512/Vector256 FMA loop on all cores for about a second), and the GPU when a GPU backend is present.
            """)
        {
            peakSeconds,
        }.WithExamples(
            "flashattn info",
            "flashattn info --peak-seconds 0      # skip the peak measurement");
        CommandActions.Set(command, (parseResult, context) =>
        {
            var request = new InfoRequest(TimeSpan.FromSeconds(parseResult.GetValue(peakSeconds)));
            foreach (var section in InfoSections.All)
            {
                if (request.PeakDuration > TimeSpan.Zero && section is CpuSection && context.ProgressIsTerminal)
                    context.Progress("measuring the fp32 FMA peak…");
                var items = section.Collect(request);
                context.Console.MarkupLine($"[bold]{Markup.Escape(section.Title)}[/]");
                int width = items.Count == 0 ? 0 : items.Max(i => i.Key.Length);
                foreach (var item in items)
                    context.Console.MarkupLine($"  {Markup.Escape(item.Key.PadRight(width))}  {Markup.Escape(item.Value)}");
            }
            return ExitCodes.Ok;
        });
        return command;
    }
}
