using System.CommandLine;
using FlashAttention.Cli.Commands;

namespace FlashAttention.Cli;

/// <summary>Entry point of <c>flashattn</c>. Each verb lives in Commands/&lt;Verb&gt;Command.cs and is registered here.</summary>
public static class Program
{
    public static int Main(string[] args) => BuildRoot().Parse(args).Invoke();

    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("flashattn: exact softmax attention (FlashAttention) for .NET, on the CPU and on Hopper GPUs.");
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(AccuracyCommand.Create());
        return root;
    }
}
