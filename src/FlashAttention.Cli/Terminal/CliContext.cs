using System.CommandLine;
using Spectre.Console;

namespace FlashAttention.Cli.Terminal;

/// <summary>
/// Exit codes of <c>flashattn</c> (also in the README):
/// 0 success; 1 an unexpected failure (a bug or an I/O error: one line, the stack trace only with FLASHATTN_DEBUG=1);
/// 2 invalid input the user can fix (command line, .npy or JSON files, shapes or options the library refuses);
/// 3 the requested device is not available; 4 a check failed (results disagree, e.g. <c>verify</c>).
/// </summary>
public static class ExitCodes
{
    public const int Ok = 0;
    public const int Failure = 1;
    public const int InvalidInput = 2;
    public const int DeviceUnavailable = 3;
    public const int CheckFailed = 4;
}

/// <summary>A failure the CLI reports as one line (no stack trace) with its exit code.</summary>
public sealed class CliException(string message, int exitCode = ExitCodes.InvalidInput) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>
/// What a command's action writes to: the results (<see cref="Out"/>, rendered through <see cref="Console"/> with colour
/// only when it is a terminal that supports it) and progress and errors (<see cref="Err"/>). Tests pass their own writers
/// through System.CommandLine's <see cref="InvocationConfiguration"/>.
/// </summary>
public sealed class CliContext
{
    private CliContext(TextWriter output, TextWriter error)
    {
        Out = output;
        Err = error;
        IsTerminal = ReferenceEquals(output, System.Console.Out) && !System.Console.IsOutputRedirected;
        bool color = IsTerminal && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR"));
        Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = color ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = color ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = IsTerminal ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (!IsTerminal) Console.Profile.Width = 240; // redirected: never wrap tables
        ProgressIsTerminal = ReferenceEquals(error, System.Console.Error) && !System.Console.IsErrorRedirected;
    }

    /// <summary>Results.</summary>
    public TextWriter Out { get; }

    /// <summary>Progress, warnings and errors.</summary>
    public TextWriter Err { get; }

    /// <summary>Spectre.Console over <see cref="Out"/>, for tables and colour.</summary>
    public IAnsiConsole Console { get; }

    /// <summary>True when <see cref="Out"/> is an interactive terminal.</summary>
    public bool IsTerminal { get; }

    /// <summary>True when <see cref="Err"/> is an interactive terminal (progress may then redraw a line).</summary>
    public bool ProgressIsTerminal { get; }

    public static CliContext From(ParseResult parseResult)
        => new(parseResult.InvocationConfiguration.Output, parseResult.InvocationConfiguration.Error);

    public static CliContext For(TextWriter output, TextWriter error) => new(output, error);

    /// <summary>A progress line on <see cref="Err"/>.</summary>
    public void Progress(string message) => Err.WriteLine(message);

    public void Warn(string message) => Err.WriteLine("warning: " + OneLine(message));

    public void Error(string message) => Err.WriteLine("error: " + OneLine(message));

    internal static string OneLine(string message) => string.Join(' ', message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
}
