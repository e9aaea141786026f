using System.CommandLine;
using FlashAttention.Cli.Npy;

namespace FlashAttention.Cli.Terminal;

/// <summary>
/// Wraps every verb's action so that failures become one-line errors with a documented exit code (see
/// <see cref="ExitCodes"/>), never a stack trace: the library's <see cref="ArgumentException"/>s (including
/// <see cref="AttentionArgumentException"/>) and unreadable files are the user's to fix (exit 2).
/// </summary>
public static class CommandActions
{
    /// <summary>Sets <paramref name="action"/> as <paramref name="command"/>'s action, guarded.</summary>
    public static void Set(Command command, Func<ParseResult, CliContext, int> action)
        => command.SetAction(parseResult => Invoke(parseResult, action));

    private static int Invoke(ParseResult parseResult, Func<ParseResult, CliContext, int> action)
    {
        var context = CliContext.From(parseResult);
        try
        {
            return action(parseResult, context);
        }
        catch (Exception e)
        {
            return Report(context, e);
        }
    }

    /// <summary>Writes the one-line error for <paramref name="e"/> and returns its exit code.</summary>
    public static int Report(CliContext context, Exception e)
    {
        bool debug = Environment.GetEnvironmentVariable("FLASHATTN_DEBUG") is "1";
        if (debug && e is not CliException) context.Err.WriteLine(e.ToString());
        // A failure inside Parallel.For (warmup's compilations, say) arrives wrapped: report the first real one.
        if (e is AggregateException aggregate && aggregate.Flatten().InnerExceptions.Count > 0)
            return Report(context, aggregate.Flatten().InnerExceptions[0]);
        // A bad tuning override (FLASHATTN_FWD_CONFIG, say) can surface inside a static initializer: report what it says.
        if (e is TypeInitializationException { InnerException: { } inner })
            return Report(context, inner);
        switch (e)
        {
            case CliException cli:
                context.Error(cli.Message);
                return cli.ExitCode;
            case NpyFormatException npy:
                context.Error(npy.Message);
                return ExitCodes.InvalidInput;
            case AttentionArgumentException attention:
                context.Error(attention.Message);
                return ExitCodes.InvalidInput;
            case ArgumentException argument:
                context.Error(StripParameterSuffix(argument));
                return ExitCodes.InvalidInput;
            case FlashAttention.Cuda.CudaUnavailableException unavailable:
                context.Error(unavailable.Message);
                return ExitCodes.DeviceUnavailable;
            case OperationCanceledException:
                context.Error("cancelled");
                return 130;
            default:
                context.Error($"unexpected {e.GetType().Name}: {e.Message}" + (debug ? "" : " (set FLASHATTN_DEBUG=1 for the stack trace)"));
                return ExitCodes.Failure;
        }
    }

    private static string StripParameterSuffix(ArgumentException e)
    {
        string message = e.Message;
        int at = e.ParamName is null ? -1 : message.LastIndexOf(" (Parameter '", StringComparison.Ordinal);
        return at > 0 ? message[..at] : message;
    }
}
