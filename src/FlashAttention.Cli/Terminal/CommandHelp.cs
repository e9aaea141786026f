using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Runtime.CompilerServices;

namespace FlashAttention.Cli.Terminal;

/// <summary>
/// Help conventions: every verb has a short description (System.CommandLine's, shown in lists and atop its help) and an
/// "Examples:" section that <c>--help</c> prints after the options.
/// </summary>
public static class CommandHelp
{
    private static readonly ConditionalWeakTable<Command, string[]> ExampleTable = new();

    /// <summary>Registers a verb's examples (one command line each, optionally with a trailing comment).</summary>
    public static T WithExamples<T>(this T command, params string[] examples) where T : Command
    {
        ExampleTable.AddOrUpdate(command, examples);
        return command;
    }

    /// <summary>Makes the help option (shared by every subcommand) print the examples after the usual sections.</summary>
    public static void Install(RootCommand root)
    {
        var help = root.Options.OfType<HelpOption>().First();
        if (help.Action is HelpAction inner) help.Action = new ExamplesHelpAction(inner);
    }

    private sealed class ExamplesHelpAction(HelpAction inner) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            int result = inner.Invoke(parseResult);
            if (ExampleTable.TryGetValue(parseResult.CommandResult.Command, out var examples) && examples.Length > 0)
            {
                var output = parseResult.InvocationConfiguration.Output;
                output.WriteLine("Examples:");
                foreach (string line in examples) output.WriteLine("  " + line);
                output.WriteLine();
            }
            return result;
        }
    }
}
