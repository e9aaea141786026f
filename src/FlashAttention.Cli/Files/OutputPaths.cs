using FlashAttention.Cli.Commands;
using FlashAttention.Cli.Terminal;

namespace FlashAttention.Cli.Files;

/// <summary>Checks a verb's output files before it reads or computes anything: a run never replaces a file it reads.</summary>
internal static class OutputPaths
{
    /// <summary>
    /// Each output's folder must exist, and no output may be an input or another output (through a relative path, a
    /// link or a hard link as well); otherwise a <see cref="CliException"/> (exit 2) naming both options.
    /// </summary>
    public static void Check(IReadOnlyList<(string Option, string Path)> inputs, IReadOnlyList<(string Option, string Path)> outputs)
    {
        for (int i = 0; i < outputs.Count; i++)
        {
            var (option, path) = outputs[i];
            BenchCommand.CheckWritable(path, option);
            foreach (var input in inputs)
                if (FileIdentity.Same(path, input.Path))
                    throw new CliException($"{option} {path}: the same file as {input.Option} {input.Path}; expected a new file name (an input is never overwritten)");
            for (int j = 0; j < i; j++)
                if (FileIdentity.Same(path, outputs[j].Path))
                    throw new CliException($"{option} {path}: the same file as {outputs[j].Option} {outputs[j].Path}; expected two different files");
        }
    }
}
