using System.Diagnostics;
using System.Numerics.Tensors;
using System.Security.Cryptography;

namespace FlashAttention.Tests.Support;

/// <summary>
/// The test assembly's entry point, for the tests that need a second process (an environment variable read once at
/// start-up, such as <c>DOTNET_PROCESSOR_COUNT</c>). The test host loads the assembly as a library and never calls it.
/// <c>dotnet FlashAttention.Tests.dll cpu-gradient-digest</c> prints the SHA-256 of a fixed CPU forward and backward.
/// </summary>
public static class ChildProcessEntry
{
    public static int Main(string[] args)
    {
        if (args is ["cpu-gradient-digest"])
        {
            Console.WriteLine(CpuGradientDigest.Compute());
            return 0;
        }
        Console.Error.WriteLine("usage: FlashAttention.Tests.dll cpu-gradient-digest");
        return 2;
    }
}

/// <summary>A fixed problem run through the public CPU API; its outputs' digests, and what decides the dQ scheme.</summary>
public static class CpuGradientDigest
{
    // One batch, two key heads: 2 (batch, key head) pairs, so one core walks each pair's slabs in one item and eight
    // cores run the slabs as separate items; causal with sq ≠ sk and GQA, 500 keys = 8 key tiles.
    private const int Batch = 1, SeqQ = 400, SeqK = 500, HeadsQ = 4, HeadsK = 2, Dim = 64;

    public static string Compute()
    {
        var rng = new Random(2026);
        float[] Fill(long n)
        {
            var a = new float[n];
            for (long i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 4 - 2);
            return a;
        }
        nint[] qShape = [Batch, SeqQ, HeadsQ, Dim], kShape = [Batch, SeqK, HeadsK, Dim], lseShape = [Batch, HeadsQ, SeqQ];
        long qn = (long)Batch * SeqQ * HeadsQ * Dim, kn = (long)Batch * SeqK * HeadsK * Dim;
        float[] q = Fill(qn), k = Fill(kn), v = Fill(kn), dO = Fill(qn);
        float[] o = new float[qn], lse = new float[Batch * HeadsQ * SeqQ], dq = new float[qn], dk = new float[kn], dv = new float[kn];
        var options = new AttentionOptions { Causal = true };
        Attention.Forward(new ReadOnlyTensorSpan<float>(q, qShape, []), new ReadOnlyTensorSpan<float>(k, kShape, []),
            new ReadOnlyTensorSpan<float>(v, kShape, []), new TensorSpan<float>(o, qShape, []), new TensorSpan<float>(lse, lseShape, []), options);
        Attention.Backward(new ReadOnlyTensorSpan<float>(q, qShape, []), new ReadOnlyTensorSpan<float>(k, kShape, []),
            new ReadOnlyTensorSpan<float>(v, kShape, []), new ReadOnlyTensorSpan<float>(o, qShape, []), new ReadOnlyTensorSpan<float>(dO, qShape, []),
            new ReadOnlyTensorSpan<float>(lse, lseShape, []), new TensorSpan<float>(dq, qShape, []), new TensorSpan<float>(dk, kShape, []),
            new TensorSpan<float>(dv, kShape, []), options);
        static string Sha(float[] x) => Convert.ToHexStringLower(SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(x.AsSpan())))[..16];
        return $"O {Sha(o)} LSE {Sha(lse)} dQ {Sha(dq)} dK {Sha(dk)} dV {Sha(dv)}";
    }

    /// <summary>Runs <c>cpu-gradient-digest</c> in a child process with <c>DOTNET_PROCESSOR_COUNT</c> set; returns its one line.</summary>
    public static string InChildProcess(int processorCount)
    {
        string assembly = typeof(ChildProcessEntry).Assembly.Location;
        var start = new ProcessStartInfo(DotnetHost.Path, ["exec", assembly, "cpu-gradient-digest"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["DOTNET_PROCESSOR_COUNT"] = processorCount.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var (code, output, error) = DotnetHost.Run(start);
        Assert.True(code == 0, $"child process with DOTNET_PROCESSOR_COUNT={processorCount} exited {code}: {error}");
        return output.Trim();
    }
}

/// <summary>The <c>dotnet</c> executable this test run uses, to start child processes of the same runtime.</summary>
public static class DotnetHost
{
    public static string Path { get; } =
        Environment.ProcessPath is { } p && System.IO.Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";

    /// <summary>Runs a process to completion (at most 2 minutes), capturing both streams.</summary>
    public static (int ExitCode, string Out, string Err) Run(ProcessStartInfo start)
    {
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {start.FileName}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{start.FileName} {string.Join(' ', start.ArgumentList)} ran over 2 minutes");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
