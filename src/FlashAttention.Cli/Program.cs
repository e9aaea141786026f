using System.CommandLine;
using System.Text.RegularExpressions;
using FlashAttention.Cli.Commands;
using FlashAttention.Cli.Terminal;

namespace FlashAttention.Cli;

/// <summary>Entry point of <c>flashattn</c>. Each verb lives in Commands/&lt;Verb&gt;Command.cs and is registered here.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        try
        {
            Lab.LabSetup.FromEnvironment();  // tuning overrides and the dump folder, for measurement runs
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine("error: " + CliContext.OneLine(e.Message));
            return ExitCodes.InvalidInput;
        }
        return Run(args, Console.Out, Console.Error);
    }

    /// <summary>Runs the command line with the given writers (tests pass their own); returns the exit code (see <see cref="ExitCodes"/>).</summary>
    /// <param name="root">The command tree; tests pass one built with fake backends.</param>
    public static int Run(string[] args, TextWriter output, TextWriter error, RootCommand? root = null)
    {
        var parseResult = (root ?? BuildRoot()).Parse(args);
        if (parseResult.Errors.Count > 0 && parseResult.Action is not { ClearsParseErrors: true })
        {
            // Usage errors: one line each and a pointer to the help, exit 2 (System.CommandLine would print the whole help and exit 1).
            foreach (var e in parseResult.Errors) error.WriteLine("error: " + CliContext.OneLine(InUsersWords(e.Message)));
            var path = new List<string>();
            for (var r = parseResult.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
                path.Insert(0, r.Command.Name);
            if (path.Count > 0) path[0] = "flashattn";
            error.WriteLine($"see '{string.Join(' ', path)} --help'");
            return ExitCodes.InvalidInput;
        }
        return parseResult.Invoke(new InvocationConfiguration { Output = output, Error = error });
    }

    private static readonly Regex CannotParse = new(@"^Cannot parse argument '(?<value>.*)' for option '(?<option>[^']+)' as expected type '(?<type>[^']+)'\.$", RegexOptions.Singleline);

    /// <summary>System.CommandLine's conversion errors name .NET types ("System.Nullable`1[System.Single]"); say what to type instead.</summary>
    internal static string InUsersWords(string message)
    {
        var m = CannotParse.Match(message);
        if (!m.Success) return message;
        string type = m.Groups["type"].Value;
        string? expected =
            type.Contains("System.Int32", StringComparison.Ordinal) ? $"a whole number from {int.MinValue} to {int.MaxValue}"
            : type.Contains("System.Int64", StringComparison.Ordinal) ? "a whole number"
            : type.Contains("System.Single", StringComparison.Ordinal) || type.Contains("System.Double", StringComparison.Ordinal) ? "a number, such as 0.125 or 1e-3"
            : type.Contains("System.Boolean", StringComparison.Ordinal) ? "true or false"
            : null;
        return expected is null ? message : $"{m.Groups["option"].Value}: expected {expected}; got '{m.Groups["value"].Value}'";
    }

    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("""
            flashattn: exact softmax attention (FlashAttention) for .NET, on the CPU and on Hopper GPUs.
            Exit codes: 0 ok, 1 unexpected failure, 2 invalid input (command line, files, shapes, options),
            3 requested device unavailable, 4 a check failed.
            """).WithExamples(
            "flashattn info",
            "flashattn bench",
            "flashattn run --q q.npy --k k.npy --v v.npy --out o.npy --causal",
            "flashattn report bench.json --out charts",
            "flashattn bench --help");
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(RunCommand.Create());
        root.Subcommands.Add(AccuracyCommand.Create());
        root.Subcommands.Add(VerifyCommand.Create());
        root.Subcommands.Add(WarmupCommand.Create());
        root.Subcommands.Add(ReportCommand.Create());
        CommandHelp.Install(root);
        return root;
    }
}
