namespace FlashAttention.Cli.Npy;

/// <summary>A <c>.npy</c> file is unreadable, malformed or not what the command expects; the message names the file and what was expected.</summary>
public sealed class NpyFormatException(string path, string problem)
    : Exception($"{path}: {problem}")
{
    /// <summary>The file at fault.</summary>
    public string Path { get; } = path;

    /// <summary>What is wrong, without the file name.</summary>
    public string Problem { get; } = problem;
}
