using System.Numerics.Tensors;
using FlashAttention.Cli.Bench;
using FlashAttention.Cli.Npy;
using FlashAttention.Cpu;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Cli;

/// <summary><c>flashattn run</c> end to end on temporary .npy files, against the float64 reference.</summary>
public class RunCommandTests : IDisposable
{
    private readonly CliHarness _h = new();

    public void Dispose() => _h.Dispose();

    [Theory]
    [InlineData("<f4", 4, false, 1e-4)]
    [InlineData("<f4", 3, true, 1e-4)]
    [InlineData("<f2", 4, true, 4e-3)]
    [InlineData("<u2", 4, false, 2e-2)]
    [InlineData("<V2", 3, true, 2e-2)]
    public void MatchesTheReferenceAndWritesTheInputDtype(string descr, int rank, bool causal, double tolerance)
    {
        // Ragged lengths, Sq ≠ Sk, GQA 2:1.
        const int batch = 2, seqQ = 17, seqK = 23, headsQ = 4, headsK = 2, dim = 16;
        int b = rank == 4 ? batch : 1;
        long[] qShape = rank == 4 ? [b, seqQ, headsQ, dim] : [seqQ, headsQ, dim];
        long[] kShape = rank == 4 ? [b, seqK, headsK, dim] : [seqK, headsK, dim];
        var q = RandomArray(descr, qShape, 1);
        var k = RandomArray(descr, kShape, 2);
        var v = RandomArray(descr, kShape, 3);
        NpyFile.Write(_h.PathOf("q.npy"), q);
        NpyFile.Write(_h.PathOf("k.npy"), k);
        NpyFile.Write(_h.PathOf("v.npy"), v);

        var args = new List<string> { "run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("k.npy"), "--v", _h.PathOf("v.npy"), "--out", _h.PathOf("o.npy"), "--lse", _h.PathOf("lse.npy") };
        if (causal) args.Add("--causal");
        var result = _h.Run(args.ToArray());
        Assert.True(result.ExitCode == 0, result.Err + result.Out);

        var o = NpyFile.Read(_h.PathOf("o.npy"));
        var lse = NpyFile.Read(_h.PathOf("lse.npy"));
        Assert.Equal(descr, o.Descr);
        Assert.Equal(qShape, o.Shape);
        Assert.Equal("<f4", lse.Descr);
        Assert.Equal(rank == 4 ? new long[] { b, headsQ, seqQ } : new long[] { headsQ, seqQ }, lse.Shape);

        var options = new AttentionOptions { Causal = causal };
        var reference = ReferenceFor(descr, q, k, v, b, seqQ, seqK, headsQ, headsK, dim, options);
        var ours = ToDoubles(o);
        double maxError = 0;
        for (int i = 0; i < ours.Length; i++) maxError = Math.Max(maxError, Math.Abs(ours[i] - reference.Output[i]));
        Assert.True(maxError <= tolerance, $"max |O − reference| = {maxError:E3} > {tolerance:E1}");
        var ourLse = lse.AsSpan<float>().ToArray();
        for (int i = 0; i < ourLse.Length; i++)
            Assert.True(Math.Abs(ourLse[i] - reference.LogSumExp[i]) <= 1e-3, $"lse[{i}] = {ourLse[i]}, reference {reference.LogSumExp[i]}");
    }

    [Fact]
    public void MissingInputFile()
    {
        WriteInputs();
        File.Delete(_h.PathOf("q.npy"));
        RunExpectingError(2, "q.npy: cannot be opened");
    }

    [Fact]
    public void NotAnNpyFile()
    {
        WriteInputs();
        File.WriteAllText(_h.PathOf("k.npy"), "hello");
        RunExpectingError(2, "k.npy: not a NumPy .npy file");
    }

    [Fact]
    public void MismatchedDtypes()
    {
        WriteInputs(kDescr: "<f2");
        RunExpectingError(2, "k.npy: dtype '<f2'", "expected q, k and v to share one element type");
    }

    [Fact]
    public void UnsupportedDtype()
    {
        WriteInputs();
        File.WriteAllBytes(_h.PathOf("v.npy"), NpyTests.RawFile(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 8, 2, 16), }", new byte[8 * 8 * 2 * 16]));
        RunExpectingError(2, "v.npy: dtype '<f8' (float64) is not supported");
    }

    [Fact]
    public void FortranOrder()
    {
        WriteInputs();
        File.WriteAllBytes(_h.PathOf("q.npy"), NpyTests.RawFile(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 8, 2, 16), }", new byte[4 * 8 * 2 * 16]));
        RunExpectingError(2, "q.npy: is stored in Fortran order", "expected C order");
    }

    [Fact]
    public void TruncatedData()
    {
        WriteInputs();
        byte[] bytes = File.ReadAllBytes(_h.PathOf("v.npy"));
        File.WriteAllBytes(_h.PathOf("v.npy"), bytes[..^10]);
        RunExpectingError(2, "v.npy: truncated data");
    }

    [Fact]
    public void WrongRank()
    {
        WriteInputs();
        NpyFile.Write(_h.PathOf("q.npy"), RandomArray("<f4", [8, 32], 1));
        RunExpectingError(2, "q.npy: shape (8, 32) has rank 2; expected (batch, seqlen, heads, head_dim) or (seqlen, heads, head_dim)");
    }

    [Fact]
    public void HeadDimMismatchIsTheLibrarysMessageWithTheFileName()
    {
        WriteInputs(kShape: [1, 8, 2, 8]);
        RunExpectingError(2, "key (", "k.npy)", "expected");
    }

    [Fact]
    public void HeadsThatDoNotDivide()
    {
        WriteInputs(qShape: [1, 8, 4, 16], kShape: [1, 8, 3, 16]);
        RunExpectingError(2, "expected");
    }

    [Fact]
    public void BadSoftcapNamesTheOption()
    {
        WriteInputs();
        RunExpectingError(2, ["--softcap", "-1"], "--softcap", "got -1");
    }

    [Fact]
    public void BadScaleNamesTheOption()
    {
        WriteInputs();
        RunExpectingError(2, ["--scale", "0"], "--scale");
    }

    [Fact]
    public void OutputFolderMissing()
    {
        WriteInputs();
        var result = _h.Run("run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("k.npy"), "--v", _h.PathOf("v.npy"), "--out", _h.PathOf("no/such/dir/o.npy"));
        result.AssertOneLineError(2, "--out", "does not exist");
    }

    [Theory]
    [InlineData("--out", "q.npy")]
    [InlineData("--out", "v.npy")]
    [InlineData("--lse", "k.npy")]
    public void AnOutputThatIsAnInputIsRefusedAndTheInputKeptByteForByte(string option, string input)
    {
        WriteInputs();
        var before = Snapshot();
        string[] outputs = option == "--out" ? ["--out", _h.PathOf(input)] : ["--out", _h.PathOf("o.npy"), "--lse", _h.PathOf(input)];
        var result = _h.Run(["run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("k.npy"), "--v", _h.PathOf("v.npy"), .. outputs]);
        result.AssertOneLineError(2, $"{option} {_h.PathOf(input)}: the same file as --{input[0]} ", "an input is never overwritten");
        AssertUnchanged(before);
    }

    [Fact]
    public void AnInputReachedThroughARelativePathIsRefused()
    {
        WriteInputs();
        var before = Snapshot();
        string relative = Path.GetRelativePath(Environment.CurrentDirectory, Path.Combine(_h.Directory, "no-such-folder", "..", "q.npy"));
        Assert.False(Path.IsPathRooted(relative));
        var result = _h.Run("run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("k.npy"), "--v", _h.PathOf("v.npy"), "--out", relative);
        result.AssertOneLineError(2, "the same file as --q");
        AssertUnchanged(before);
    }

    [Fact]
    public void AnInputReachedThroughASymbolicLinkIsRefused()
    {
        WriteInputs();
        File.CreateSymbolicLink(_h.PathOf("o.npy"), _h.PathOf("q.npy"));
        Directory.CreateSymbolicLink(_h.PathOf("linked-folder"), _h.Directory);
        var before = Snapshot();
        foreach (string output in new[] { _h.PathOf("o.npy"), Path.Combine(_h.PathOf("linked-folder"), "k.npy") })
        {
            var result = _h.Run("run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("k.npy"), "--v", _h.PathOf("v.npy"), "--out", output);
            result.AssertOneLineError(2, "the same file as --");
            AssertUnchanged(before);
        }
    }

    [Fact]
    public void AnInputReachedThroughAHardLinkIsRefused()
    {
        if (OperatingSystem.IsWindows()) return; // link(2) below is POSIX; Windows hard links take CreateHardLinkW
        WriteInputs();
        Assert.Equal(0, HardLink(_h.PathOf("v.npy"), _h.PathOf("o.npy")));
        var before = Snapshot();
        var result = _h.Run("run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("k.npy"), "--v", _h.PathOf("v.npy"), "--out", _h.PathOf("o.npy"));
        result.AssertOneLineError(2, "the same file as --v");
        AssertUnchanged(before);
    }

    [Fact]
    public void LseAndOutputNamingOneFileAreRefused()
    {
        WriteInputs();
        var before = Snapshot();
        var result = _h.Run("run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("k.npy"), "--v", _h.PathOf("v.npy"), "--out", _h.PathOf("o.npy"), "--lse", Path.Combine(_h.Directory, ".", "o.npy"));
        result.AssertOneLineError(2, "--lse", "the same file as --out", "expected two different files");
        AssertUnchanged(before);
    }

    [Fact]
    public void AnEarlierOutputIsReplacedWhole()
    {
        WriteInputs();
        File.WriteAllText(_h.PathOf("o.npy"), "an earlier output");
        var result = _h.Run("run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("k.npy"), "--v", _h.PathOf("v.npy"), "--out", _h.PathOf("o.npy"));
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Equal([1, 8, 2, 16], NpyFile.Read(_h.PathOf("o.npy")).Shape);
        Assert.Equal(["k.npy", "o.npy", "q.npy", "v.npy"], _h.Files().Order()); // no temporary left behind
    }

    private Dictionary<string, byte[]> Snapshot() => _h.Files().ToDictionary(f => f, f => File.ReadAllBytes(_h.PathOf(f)));

    private void AssertUnchanged(Dictionary<string, byte[]> before)
    {
        Assert.Equal(before.Keys.Order(), _h.Files().Order());
        foreach (var (name, bytes) in before) Assert.True(bytes.AsSpan().SequenceEqual(File.ReadAllBytes(_h.PathOf(name))), $"{name} changed");
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "link", SetLastError = true)]
    private static extern int HardLink(string existing, string created);

    [FlashAttention.Tests.Cuda.WithoutGpuFact]
    public void GpuWithoutAUsableGpuSaysWhyAndWritesNothing()
    {
        WriteInputs(descr: "<f2");
        RunExpectingError(3, ["--device", "cuda"], "--device cuda: not usable here");
    }

    [Fact]
    public void Fp8OnTheCpuOrRotationSwitchesWithoutFp8AreRefusedByName()
    {
        WriteInputs(descr: "<f2");
        RunExpectingError(2, ["--dtype", "fp8"], "--dtype fp8: the FP8 kernel runs on the GPU; add --device cuda");
        RunExpectingError(2, ["--no-incoherent"], "--no-incoherent: applies to --dtype fp8 only");
    }

    [FlashAttention.Tests.Cuda.WithoutGpuFact]
    public void Fp8WithoutAUsableGpuSaysWhyAndWritesNothing()
    {
        WriteInputs(descr: "<f2");
        RunExpectingError(3, ["--device", "cuda", "--dtype", "fp8"], "--device cuda: not usable here");
    }

    [Fact]
    public void UnknownDeviceIsAUsageError()
    {
        WriteInputs();
        var result = _h.Run("run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("k.npy"), "--v", _h.PathOf("v.npy"), "--out", _h.PathOf("o.npy"), "--device", "gpu");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("gpu", result.Err);
        Assert.False(File.Exists(_h.PathOf("o.npy")));
    }

    [Fact]
    public void MissingRequiredOptionIsAUsageError()
    {
        var result = _h.Run("run", "--q", "q.npy");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("error: Option '--k' is required.", result.Err);
        Assert.DoesNotContain("   at ", result.Err);
    }

    private void RunExpectingError(int exitCode, params string[] fragments) => RunExpectingError(exitCode, [], fragments);

    private void RunExpectingError(int exitCode, string[] extra, params string[] fragments)
    {
        var before = _h.Files();
        var result = _h.Run(["run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("k.npy"), "--v", _h.PathOf("v.npy"), "--out", _h.PathOf("o.npy"), "--lse", _h.PathOf("lse.npy"), .. extra]);
        result.AssertOneLineError(exitCode, fragments);
        Assert.Equal(before.Order(), _h.Files().Order()); // nothing written, no temporary left behind
    }

    private void WriteInputs(string descr = "<f4", string? kDescr = null, long[]? qShape = null, long[]? kShape = null)
    {
        qShape ??= [1, 8, 2, 16];
        kShape ??= [1, 8, 2, 16];
        NpyFile.Write(_h.PathOf("q.npy"), RandomArray(descr, qShape, 1));
        NpyFile.Write(_h.PathOf("k.npy"), RandomArray(kDescr ?? descr, kShape, 2));
        NpyFile.Write(_h.PathOf("v.npy"), RandomArray(descr, kShape, 3));
    }

    internal static NpyArray RandomArray(string descr, long[] shape, int seed)
    {
        var array = NpyArray.Create(descr, shape);
        var values = new float[array.ElementCount];
        RandomTensors.FillNormal(values, seed);
        switch (array.ElementType)
        {
            case NpyElementType.Float32: values.CopyTo(array.AsSpan<float>()); break;
            case NpyElementType.Float16: { var s = array.AsSpan<Half>(); for (int i = 0; i < s.Length; i++) s[i] = (Half)values[i]; break; }
            default: { var s = array.AsSpan<ushort>(); for (int i = 0; i < s.Length; i++) s[i] = BFloat16.RoundToBits(values[i]); break; }
        }
        return array;
    }

    private static double[] ToDoubles(NpyArray a) => a.ElementType switch
    {
        NpyElementType.Float32 => a.AsSpan<float>().ToArray().Select(x => (double)x).ToArray(),
        NpyElementType.Float16 => a.AsSpan<Half>().ToArray().Select(x => (double)x).ToArray(),
        _ => a.AsSpan<ushort>().ToArray().Select(x => (double)BFloat16.ToSingle(x)).ToArray(),
    };

    private static ReferenceForward ReferenceFor(string descr, NpyArray q, NpyArray k, NpyArray v, int b, int sq, int sk, int hq, int hk, int d, AttentionOptions options)
    {
        nint[] qs = [b, sq, hq, d], ks = [b, sk, hk, d];
        return NpyDescr.Parse(descr, out _) switch
        {
            NpyElementType.Float32 => ReferenceAttention.Forward(new ReadOnlyTensorSpan<float>(q.AsSpan<float>(), qs), new ReadOnlyTensorSpan<float>(k.AsSpan<float>(), ks), new ReadOnlyTensorSpan<float>(v.AsSpan<float>(), ks), options),
            NpyElementType.Float16 => ReferenceAttention.Forward(new ReadOnlyTensorSpan<Half>(q.AsSpan<Half>(), qs), new ReadOnlyTensorSpan<Half>(k.AsSpan<Half>(), ks), new ReadOnlyTensorSpan<Half>(v.AsSpan<Half>(), ks), options),
            _ => ReferenceAttention.Forward(new ReadOnlyTensorSpan<BFloat16>(q.AsSpan<BFloat16>(), qs), new ReadOnlyTensorSpan<BFloat16>(k.AsSpan<BFloat16>(), ks), new ReadOnlyTensorSpan<BFloat16>(v.AsSpan<BFloat16>(), ks), options),
        };
    }
}
