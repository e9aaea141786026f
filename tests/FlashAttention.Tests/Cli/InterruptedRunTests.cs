using System.Diagnostics;
using FlashAttention.Cli.Npy;
using Xunit.Abstractions;

namespace FlashAttention.Tests.Cli;

/// <summary>
/// <c>flashattn run</c> killed while it writes its output: the previous output must survive whole. The CLI runs as a
/// process of its own (flashattn.dll beside the tests) and is killed the moment its temporary file appears.
/// </summary>
public class InterruptedRunTests(ITestOutputHelper log) : IDisposable
{
    private readonly CliHarness _h = new();

    public void Dispose() => _h.Dispose();

    [Fact]
    public void A_run_killed_mid_write_leaves_the_previous_output_intact()
    {
        // A long query against 4 keys: little arithmetic, 64 MiB of O to write, so the write takes long enough to be caught.
        const int rows = 1 << 20, dim = 16;
        NpyFile.Write(_h.PathOf("q.npy"), RunCommandTests.RandomArray("<f4", [1, rows, 1, dim], 1));
        NpyFile.Write(_h.PathOf("k.npy"), RunCommandTests.RandomArray("<f4", [1, 4, 1, dim], 2));
        NpyFile.Write(_h.PathOf("v.npy"), RunCommandTests.RandomArray("<f4", [1, 4, 1, dim], 3));
        string output = _h.PathOf("o.npy");
        NpyFile.Write(output, RunCommandTests.RandomArray("<f4", [1, 8, 1, dim], 4)); // the previous output
        byte[] previous = File.ReadAllBytes(output);
        long fullSize = previous.Length - 8L * dim * 4 + (long)rows * dim * 4;
        string flashattn = typeof(FlashAttention.Cli.Program).Assembly.Location;

        int caught = 0;
        for (int attempt = 0; attempt < 8 && caught == 0; attempt++)
        {
            using var process = DotnetProcess.Start(flashattn, "run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("k.npy"), "--v", _h.PathOf("v.npy"), "--out", output);
            string? temp = null;
            var clock = Stopwatch.StartNew();
            // Killed once the temporary file holds some of O: the write has begun and not finished.
            while (!process.HasExited && clock.Elapsed < TimeSpan.FromSeconds(60))
            {
                temp ??= Directory.GetFiles(_h.Directory, ".o.npy.*.tmp").FirstOrDefault();
                if (temp is not null && File.Exists(temp) && new FileInfo(temp).Length > 0) break;
            }
            if (temp is not null) process.Kill();
            process.WaitForExit();

            if (temp is not null && File.Exists(temp) && new FileInfo(temp).Length > 0)
            {
                // Killed between the temporary file's creation and the rename: the old output is untouched.
                caught++;
                long written = new FileInfo(temp).Length;
                log.WriteLine($"attempt {attempt + 1}: killed with {written} of {fullSize} bytes in {Path.GetFileName(temp)}");
                Assert.True(written <= fullSize);
                Assert.Equal(previous, File.ReadAllBytes(output));
                Assert.Equal([1, 8, 1, dim], NpyFile.Read(output).Shape);
                File.Delete(temp);
            }
            else
            {
                // The run finished (or renamed) first: then the output is the new one, whole; put the previous one back.
                log.WriteLine($"attempt {attempt + 1}: the run finished before the kill");
                Assert.Equal(fullSize, new FileInfo(output).Length);
                File.WriteAllBytes(output, previous);
            }
        }
        Assert.True(caught > 0, "the run was never caught mid-write in 8 attempts");
    }
}
