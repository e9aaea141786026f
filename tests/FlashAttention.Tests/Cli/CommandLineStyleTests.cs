using FlashAttention.Cli.Terminal;

namespace FlashAttention.Tests.Cli;

/// <summary>One style across verbs: invalid input is one "error: OPTION: expected …; got …" line, exit 2, in the user's words.</summary>
public sealed class CommandLineStyleTests : IDisposable
{
    private readonly CliHarness _h = new();

    public void Dispose() => _h.Dispose();

    [Theory]
    [InlineData("--scale", "abc", "error: --scale: expected a number, such as 0.125 or 1e-3; got 'abc'")]
    [InlineData("--window-left", "1.5", "error: --window-left: expected a whole number from -2147483648 to 2147483647; got '1.5'")]
    public void Values_that_do_not_parse_are_named_in_the_users_words(string option, string value, string expected)
    {
        var result = _h.Run("run", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy", option, value);
        Assert.Equal(ExitCodes.InvalidInput, result.ExitCode);
        Assert.Equal(expected, result.ErrLines[0]);
        Assert.DoesNotContain("System.", result.Err);
        Assert.Equal("see 'flashattn run --help'", result.ErrLines[^1]);
    }

    [Fact]
    public void A_bad_value_among_several_is_the_one_named()
    {
        var result = _h.Run("bench", "--seqlen", "512", "1k", "--repeats", "99999999999");
        Assert.Equal(ExitCodes.InvalidInput, result.ExitCode);
        Assert.Contains("error: --seqlen: expected a whole number from -2147483648 to 2147483647; got '1k'", result.ErrLines);
        Assert.Contains("error: --repeats: expected a whole number from -2147483648 to 2147483647; got '99999999999'", result.ErrLines);
        Assert.DoesNotContain("System.", result.Err);
    }

    [Theory]
    [InlineData("--hdim 96", "--hdim: expected a power of two from 1 to 256")]
    [InlineData("--block-size 0", "--block-size: expected at least 1; got 0")]
    [InlineData("--heads -2", "--heads: expected at least 1; got -2")]
    public void Accuracy_refuses_bad_options_before_its_banner(string args, string fragment)
    {
        var result = _h.Run(["accuracy", .. args.Split(' ')]);
        result.AssertOneLineError(ExitCodes.InvalidInput, fragment);
        Assert.Single(result.ErrLines); // no banner, no progress
        Assert.Equal("", result.Out);
    }

    [Theory]
    [InlineData("info --peak-seconds -1", "--peak-seconds: expected")]
    [InlineData("bench --device cpu --heads 0", "--heads: expected a positive integer; got 0")]
    [InlineData("run --q nosuch.npy --k k.npy --v v.npy --out o.npy", "nosuch.npy: cannot be opened")]
    [InlineData("accuracy --seqlen 0", "--seqlen: expected at least 1; got 0")]
    [InlineData("verify --device cpu --filter nosuchcase", "--filter 'nosuchcase': matches none")]
    [InlineData("report nosuch.json", "nosuch.json: cannot be read")]
    public void Every_verb_reports_invalid_input_the_same_way(string args, string fragment)
    {
        var result = _h.Run(args.Split(' '));
        Assert.Equal(ExitCodes.InvalidInput, result.ExitCode);
        string[] errors = result.ErrLines.Where(l => l.StartsWith("error: ", StringComparison.Ordinal)).ToArray();
        Assert.True(errors.Length == 1, result.Err);
        Assert.Contains(fragment, errors[0]);
        Assert.DoesNotContain("flashattn " + args.Split(' ')[0] + ":", result.Err);
        Assert.DoesNotContain("options.", result.Err);
        Assert.DoesNotContain("   at ", result.Err);
    }
}
