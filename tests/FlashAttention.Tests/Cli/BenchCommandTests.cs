using System.CommandLine;
using FlashAttention.Cli;
using FlashAttention.Cli.Bench;
using FlashAttention.Cli.Commands;
using FlashAttention.Cli.Terminal;

namespace FlashAttention.Tests.Cli;

/// <summary><c>flashattn bench</c> with fake backends (fast, independent of the engine's speed) and on the real CPU engine at a tiny size.</summary>
public class BenchCommandTests : IDisposable
{
    private readonly CliHarness _h = new();

    public void Dispose() => _h.Dispose();

    /// <summary>A backend that "takes" 1 ms per GFLOP, so its speed is exactly 1 TFLOP/s.</summary>
    private sealed class FakeBackend(string device, bool available = true) : IBenchBackend
    {
        public List<BenchCase> Ran { get; } = [];
        public List<BenchSettings> Settings { get; } = [];
        public string Device => device;
        public string Implementation => "flashattn";
        public DataType DefaultType => DataType.BFloat16;
        public int DefaultWarmup => 2;
        public int DefaultRepeats => 3;

        public bool IsAvailable(out string reason)
        {
            reason = available ? "" : "no GPU found (fake)";
            return available;
        }

        public bool Supports(BenchCase benchCase, out string reason)
        {
            reason = "";
            return true;
        }

        public BenchDeviceInfo DescribeDevice(double? knownPeakGflops) => new()
        {
            Device = device, Name = "Fake H100", SmCount = 132, DriverVersion = "560.00", NvrtcVersion = "12.6",
        };

        public BenchMeasurement Run(BenchCase benchCase, BenchSettings settings, Action<string>? progress, CancellationToken cancellationToken)
        {
            Ran.Add(benchCase);
            Settings.Add(settings);
            double ms = benchCase.Flops / 1e9;
            // GPU rows carry their timing mode, as CudaBenchBackend's do.
            return new BenchMeasurement(benchCase, [ms * 0.99, ms, ms * 1.2], null,
                device == "cpu" ? null : settings.Timing, device == "cpu" ? 1 : 4);
        }
    }

    private CliResult Run(IReadOnlyList<IBenchBackend> backends, params string[] args)
    {
        var root = new RootCommand("test");
        root.Subcommands.Add(BenchCommand.Create(backends));
        CommandHelp.Install(root);
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Program.Run(args, output, error, root);
        return new CliResult(code, output.ToString(), error.ToString());
    }

    [Fact]
    public void DefaultDeviceIsTheFirstUsableBackend()
    {
        var gpu = new FakeBackend("cuda");
        var result = Run([gpu, new CpuBenchBackend()], "bench", "--seqlen", "1024", "--hdim", "64");
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Equal(2, gpu.Ran.Count); // forward and backward
        Assert.Contains("TFLOP/s", result.Out);
        Assert.Contains("b1 h8 s1024 d64", result.Out);
        Assert.Contains("1.00", result.Out); // 1 TFLOP/s by construction
    }

    [Fact]
    public void UnusableBackendIsSkippedByDefault()
    {
        var gpu = new FakeBackend("cuda", available: false);
        var cpu = new FakeBackend("cpu");
        var result = Run([gpu, cpu], "bench", "--forward");
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Empty(gpu.Ran);
        Assert.Single(cpu.Ran);
        Assert.Contains("cuda: not usable (no GPU found (fake))", result.Err);
    }

    [Fact]
    public void RequestedDeviceThatIsUnusableExitsWithThree()
    {
        var result = Run([new FakeBackend("cuda", available: false), new FakeBackend("cpu")], "bench", "--device", "cuda");
        result.AssertOneLineError(ExitCodes.DeviceUnavailable, "--device cuda: not usable here: no GPU found (fake)");
    }

    [Fact]
    public void RequestedDeviceThatIsNotRegisteredExitsWithThree()
    {
        var result = Run([new FakeBackend("cpu")], "bench", "--device", "cuda");
        result.AssertOneLineError(ExitCodes.DeviceUnavailable, "--device cuda", "available: cpu");
    }

    [FlashAttention.Tests.Cuda.WithoutGpuFact]
    public void CudaOnAMachineWithoutAGpuSaysWhatIsMissing()
    {
        var result = _h.Run("bench", "--device", "cuda");
        result.AssertOneLineError(ExitCodes.DeviceUnavailable, "--device cuda: not usable here:");
    }

    [Fact]
    public void PaperGridHasTheFlashAttention3Shapes()
    {
        var cases = BenchGrid.Paper(DataType.BFloat16, [BenchDirection.Forward, BenchDirection.Backward]);
        Assert.Equal(2 * 2 * 3 * 6, cases.Count);
        Assert.All(cases, c =>
        {
            Assert.Equal(16384, c.Batch * c.SeqLenQ);
            Assert.Equal(2048, c.HeadsQ * c.HeadDim);
        });
        var gpu = new FakeBackend("cuda");
        var result = Run([gpu], "bench", "--grid", "paper", "--hdim", "128", "--causal", "--forward");
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Equal(6, gpu.Ran.Count);
        Assert.All(gpu.Ran, c => Assert.True(c.Causal && c.HeadDim == 128 && c.HeadsQ == 16));
        Assert.Contains("[6/6]", result.Err); // progress
    }

    [Fact]
    public void PaperGridNarrowsToItsFullCasesWithCausalFalse()
    {
        var gpu = new FakeBackend("cuda");
        var result = Run([gpu], "bench", "--grid", "paper", "--hdim", "128", "--causal", "false", "--forward");
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Equal(6, gpu.Ran.Count);
        Assert.All(gpu.Ran, c => Assert.False(c.Causal));

        var both = new FakeBackend("cuda");
        result = Run([both], "bench", "--grid", "paper", "--hdim", "128", "--forward");
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Equal(12, both.Ran.Count);
    }

    [Fact]
    public void DecodeModeTimesKvCacheCasesAndReportsTheBytesRead()
    {
        string json = _h.PathOf("decode.json");
        var gpu = new FakeBackend("cuda");
        var result = Run([gpu], "bench", "--decode", "--batch", "8", "--kv-len", "8192", "--page-size", "0", "16", "--append", "--json", json);
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Equal(2, gpu.Ran.Count);
        Assert.All(gpu.Ran, c =>
        {
            Assert.Equal((8, 1, 8193, 32, 8, 128, BenchDirection.Forward), (c.Batch, c.SeqLenQ, c.SeqLenK, c.HeadsQ, c.HeadsK, c.HeadDim, c.Direction));
            Assert.Equal((8192, 1), (c.KvCache!.CacheLength, c.KvCache.AppendLength));
        });
        Assert.Equal([0, 16], gpu.Ran.Select(c => c.KvCache!.PageSize));
        Assert.Contains("KV TB/s", result.Out);
        Assert.Contains("page16 +1", result.Out);
        var row = BenchJson.Load(json).Rows.Single(r => r.PageSize == 16);
        Assert.Equal((true, 1), (row.KvCache, row.AppendLength));
        Assert.Equal(2.0 * 8 * 8193 * 8 * 128 * 2, row.KvBytes);
        Assert.Equal(row.KvBytes!.Value / (row.TimeMsMedian * 1e-3) / 1e12, row.KvTbps!.Value, 3);
    }

    [Fact]
    public void DecodeGridHasTheIssuesShapesAndNarrows()
    {
        var cases = BenchGrid.Decode(DataType.BFloat16);
        Assert.Equal(BenchGrid.DecodeShapes.Length * (BenchGrid.DecodePageSizes.Length + 1), cases.Count);
        Assert.All(cases, c => Assert.Equal((1, 32, 8, 128, false), (c.SeqLenQ, c.HeadsQ, c.HeadsK, c.HeadDim, c.Causal)));
        Assert.Contains(cases, c => c.Batch == 64 && c.KvCache!.CacheLength == 32768 && c.KvCache.PageSize == 0);
        var gpu = new FakeBackend("cuda");
        var result = Run([gpu], "bench", "--grid", "decode", "--kv-len", "4096", "--page-size", "16");
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Equal([0, 1], gpu.Ran.Select(c => c.KvCache!.AppendLength));  // b1 4k, pages of 16, without and with the append
    }

    [Theory]
    [InlineData("--page-size 24", "--page-size: expected 0 (contiguous) or a multiple of 16; got 24")]
    [InlineData("--kv-len 0", "--kv-len: expected a positive integer")]
    [InlineData("--backward", "leave out --backward")]
    [InlineData("--seqlen-k 100", "leave out --seqlen-k")]
    public void DecodeModeRefusesWhatItCannotTime(string extra, string message)
    {
        var result = Run([new FakeBackend("cuda")], ["bench", "--decode", .. extra.Split(' ')]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(message, result.Err);
    }

    [Fact]
    public void KvCacheOptionsNeedDecode()
    {
        var result = Run([new FakeBackend("cuda")], "bench", "--kv-len", "4096");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("add --decode", result.Err);
        Assert.False(new CpuBenchBackend().Supports(BenchGrid.Decode(DataType.BFloat16)[0], out string why));
        Assert.Contains("--device cuda", why);
    }

    [Fact]
    public void JsonRowsCarryTheContextAndRoundTrip()
    {
        string json = _h.PathOf("out.json");
        var result = Run([new FakeBackend("cuda")], "bench", "--seqlen", "512", "2048", "--hdim", "128", "--heads", "16", "--heads-k", "4",
            "--batch", "2", "--causal", "--dtype", "fp16", "--json", json);
        Assert.True(result.ExitCode == 0, result.Err);
        var file = BenchJson.Load(json);
        Assert.Equal(4, file.Rows.Count);
        var row = file.Rows.Single(r => r.Direction == "bwd" && r.SeqlenQ == 2048);
        Assert.Equal("flashattn", row.Implementation);
        Assert.Equal("cuda", row.Device);
        Assert.Equal("Fake H100", row.DeviceName);
        Assert.Equal(132, row.SmCount);
        Assert.Equal("560.00", row.DriverVersion);
        Assert.Equal("fp16", row.Dtype);
        Assert.Equal((2, 2048, 2048, 16, 4, 128), (row.Batch, row.SeqlenQ, row.SeqlenK, row.HeadsQ, row.HeadsK, row.HeadDim));
        Assert.Equal("causal", row.Mask);
        Assert.Equal(FlopCount.Backward(2, 16, 2048, 2048, 128, true), row.Flops);
        Assert.Equal(1.0, row.Tflops, 3);
        Assert.True(row.TimeMsMin <= row.TimeMsMedian && row.TimeMsMedian <= row.TimeMsMax);
        Assert.NotNull(row.ParsedDate);
        Assert.False(string.IsNullOrEmpty(row.Commit));

        string text = File.ReadAllText(json);
        Assert.Contains("\"seqlen_q\": 2048", text);
        Assert.Contains("\"time_ms_median\"", text);
        Assert.Equal(BenchJson.Serialize(file), BenchJson.Serialize(BenchJson.Parse(BenchJson.Serialize(file), "again")));
    }

    [Fact]
    public void CompareAddsTheBestPeerAndTheRatio()
    {
        string peers = _h.PathOf("peers.json");
        var baseRow = new BenchRow
        {
            Device = "cuda", DeviceName = "Fake H100", Dtype = "bf16", Batch = 1, SeqlenQ = 2048, SeqlenK = 2048, HeadsQ = 8, HeadsK = 8,
            HeadDim = 128, Mask = "full", Direction = "fwd", TimeMsMedian = 1, TimeMsMin = 1, TimeMsMax = 1, Date = "2026-11-24T00:00:00Z",
        };
        BenchRow Peer(string impl, double tflops) => new()
        {
            Implementation = impl, Device = baseRow.Device, DeviceName = baseRow.DeviceName, Dtype = baseRow.Dtype, Batch = 1, SeqlenQ = 2048,
            SeqlenK = 2048, HeadsQ = 8, HeadsK = 8, HeadDim = 128, Mask = "full", Direction = "fwd", TimeMsMedian = 1, TimeMsMin = 1, TimeMsMax = 1,
            Tflops = tflops, Date = baseRow.Date, Timing = "back-to-back",
        };
        BenchJson.Save(peers, new BenchFile { Rows = [Peer("cudnn", 0.8), Peer("fa2", 0.5)] });
        string json = _h.PathOf("ours.json");
        var result = Run([new FakeBackend("cuda")], "bench", "--forward", "--compare", peers, "--json", json);
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Contains("best peer", result.Out);
        Assert.Contains("cudnn", result.Out);
        Assert.Contains("1.25×", result.Out); // 1.0 / 0.8
        Assert.DoesNotContain("\u001b[", result.Out); // no colour codes when not a terminal
        var row = BenchJson.Load(json).Rows.Single();
        Assert.Equal(["cudnn", "fa2"], row.Peers!.Select(p => p.Implementation).Order());

        // --json naming a --compare file (here through a relative path) would replace the peers' numbers: refused, file kept.
        byte[] peerBytes = File.ReadAllBytes(peers);
        string relative = Path.GetRelativePath(Environment.CurrentDirectory, peers);
        result = Run([new FakeBackend("cuda")], "bench", "--forward", "--compare", peers, "--json", relative);
        result.AssertOneLineError(2, $"--json {relative}: the same file as --compare {peers}");
        Assert.Equal(peerBytes, File.ReadAllBytes(peers));
    }

    [Fact]
    public void PeersTimedAnotherWayAreNotCompared()
    {
        string peers = _h.PathOf("peers.json");
        var peer = new BenchRow
        {
            Implementation = "cudnn", Device = "cuda", DeviceName = "Fake H100", Dtype = "bf16", Batch = 1, SeqlenQ = 2048, SeqlenK = 2048,
            HeadsQ = 8, HeadsK = 8, HeadDim = 128, Mask = "full", Direction = "fwd", TimeMsMedian = 1, TimeMsMin = 1, TimeMsMax = 1,
            Tflops = 0.8, Date = "2026-11-24T00:00:00Z", Timing = null,  // written before the field: timed per call
        };
        BenchJson.Save(peers, new BenchFile { Rows = [peer] });
        var gpu = new FakeBackend("cuda");
        var result = Run([gpu], "bench", "--forward", "--batch", "1", "--heads", "8", "--seqlen", "2048", "--compare", peers);
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Contains("no peer row matches", result.Err);

        result = Run([gpu], "bench", "--forward", "--batch", "1", "--heads", "8", "--seqlen", "2048", "--timing", "per-call", "--compare", peers);
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Contains("1.25×", result.Out);
    }

    [Fact]
    public void TimingModeReachesTheBackendAndTheJson()
    {
        var gpu = new FakeBackend("cuda");
        string json = _h.PathOf("timing.json");
        Assert.Equal(0, Run([gpu], "bench", "--forward", "--json", json).ExitCode);
        Assert.Equal(BenchTiming.BackToBack, gpu.Settings[^1].Timing);
        var row = BenchJson.Load(json).Rows.Single();
        Assert.Equal(("back-to-back", 4), (row.Timing, row.CallsPerSample));

        Assert.Equal(0, Run([gpu], "bench", "--forward", "--timing", "per-call", "--json", json).ExitCode);
        Assert.Equal(BenchTiming.PerCall, gpu.Settings[^1].Timing);
        Assert.Equal("per-call", BenchJson.Load(json).Rows.Single().Timing);

        var cpu = new FakeBackend("cpu");
        Assert.Equal(0, Run([cpu], "bench", "--forward", "--json", json).ExitCode);
        Assert.Null(BenchJson.Load(json).Rows.Single().Timing);
        Assert.DoesNotContain("\"timing\"", File.ReadAllText(json));
        Run([cpu], "bench", "--timing", "per-call").AssertOneLineError(2, "--timing", "the option is for the GPU");
    }

    [Theory]
    [InlineData(0.15, 7)]
    [InlineData(0.5, 2)]
    [InlineData(1.0, 1)]
    [InlineData(3.2, 1)]
    [InlineData(0.004, 50)]
    public void BackToBackSamplesLastAboutAMillisecond(double callMs, int calls)
        => Assert.Equal(calls, BenchSettings.CallsPerSample(callMs));

    [Fact]
    public void BadCompareFileFailsBeforeTiming()
    {
        string peers = _h.PathOf("peers.json");
        File.WriteAllText(peers, "{ \"rows\": [ { \"implementation\": \"cudnn\", ");
        var gpu = new FakeBackend("cuda");
        var result = Run([gpu], "bench", "--compare", peers);
        result.AssertOneLineError(2, "peers.json: not a valid bench JSON file");
        Assert.Empty(gpu.Ran);
    }

    [Theory]
    [InlineData("--seqlen", "0", "--seqlen: expected a positive integer; got 0")]
    [InlineData("--heads-k", "3", "--heads-k: expected a divisor of --heads = 8; got 3")]
    [InlineData("--repeats", "0", "--repeats: expected a positive integer; got 0")]
    [InlineData("--dtype", "fp64", "fp64")]
    [InlineData("--grid", "huge", "huge")]
    [InlineData("--timing", "sometimes", "--timing: expected back-to-back or per-call; got 'sometimes'")]
    public void BadOptionsAreOneLineErrors(string option, string value, string message)
    {
        var gpu = new FakeBackend("cuda");
        var result = Run([gpu], "bench", option, value);
        result.AssertOneLineError(2, message);
        Assert.Empty(gpu.Ran);
    }

    [Fact]
    public void JsonIntoAMissingFolderFailsBeforeTiming()
    {
        var gpu = new FakeBackend("cuda");
        var result = Run([gpu], "bench", "--json", _h.PathOf("nope/out.json"));
        result.AssertOneLineError(2, "--json", "does not exist");
        Assert.Empty(gpu.Ran);
    }

    /// <summary>A CPU backend at exactly 1000 GFLOP/s whose peak measurements read <paramref name="peaks"/> in turn.</summary>
    private sealed class PeakFakeBackend(params double[] peaks) : IBenchBackend
    {
        public List<double?> Described { get; } = [];
        public string Device => "cpu";
        public string Implementation => "flashattn";
        public DataType DefaultType => DataType.Float32;
        public int DefaultWarmup => 0;
        public int DefaultRepeats => 3;
        public bool IsAvailable(out string reason) { reason = ""; return true; }
        public bool Supports(BenchCase benchCase, out string reason) { reason = ""; return true; }

        public BenchDeviceInfo DescribeDevice(double? knownPeakGflops)
        {
            Described.Add(knownPeakGflops);
            return new() { Device = "cpu", Name = "Fake CPU", CpuCores = 2, PeakGflops = knownPeakGflops ?? peaks[Described.Count(d => d is null) - 1] };
        }

        public BenchMeasurement Run(BenchCase benchCase, BenchSettings settings, Action<string>? progress, CancellationToken cancellationToken)
        {
            double ms = benchCase.Flops / 1e9;
            return new BenchMeasurement(benchCase, [ms, ms, ms]);
        }
    }

    [Fact]
    public void ThePeakIsMeasuredAgainAfterTheCasesAndTheLargerKept()
    {
        var cpu = new PeakFakeBackend(500, 2000);
        string json = _h.PathOf("cpu.json");
        var result = Run([cpu], "bench", "--forward", "--json", json);
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Equal([null, null], cpu.Described);
        Assert.Contains("50.0%", result.Out);
        Assert.Contains("fp32 FMA peak 2000 GFLOP/s (best of before 500 and after the cases)", result.Out);
        Assert.Equal($"flashattn bench --forward --json {json}", BenchJson.Load(json).Note); // the command line, the verb once
        var row = BenchJson.Load(json).Rows.Single();
        Assert.Equal(2000, row.PeakGflops);
        Assert.Equal(50, row.PercentOfPeak);
    }

    [Fact]
    public void ASpeedAboveThePeakShowsNoPercentageAndSaysTheMeasurementFailed()
    {
        var cpu = new PeakFakeBackend(500, 800);
        string json = _h.PathOf("cpu.json");
        var result = Run([cpu], "bench", "--json", json);
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.DoesNotContain("% peak", result.Out);
        Assert.DoesNotContain("%", result.Out);
        Assert.Contains("warning: % of peak not shown: ", result.Err);
        Assert.Contains("ran at 1000 GFLOP/s, above the fp32 FMA peak measured before and after the cases (800 GFLOP/s)", result.Err);
        Assert.DoesNotContain("percent_of_peak", File.ReadAllText(json));
        Assert.All(BenchJson.Load(json).Rows, r => Assert.Equal(800, r.PeakGflops));
    }

    [Fact]
    public void AGivenPeakIsNotMeasuredAndAFasterRunSaysItIsTooLow()
    {
        var cpu = new PeakFakeBackend();
        var result = Run([cpu], "bench", "--forward", "--peak-gflops", "900");
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Equal([900.0], cpu.Described);
        Assert.Contains("above --peak-gflops 900; expected the machine's fp32 FMA peak", result.Err);
        Assert.DoesNotContain("%", result.Out);
    }

    [Fact]
    public void CpuEngineTinyCaseFillsTheTable()
    {
        // The real CPU backend at a size that takes milliseconds: checks the plumbing, not the speed.
        string json = _h.PathOf("cpu.json");
        var result = _h.Run("bench", "--device", "cpu", "--seqlen", "32", "--hdim", "16", "--heads", "2", "--warmup", "0", "--repeats", "2",
            "--peak-gflops", "100", "--json", json);
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Contains("GFLOP/s", result.Out);
        Assert.Contains("% peak", result.Out);
        var rows = BenchJson.Load(json).Rows;
        Assert.Equal(["bwd", "fwd"], rows.Select(r => r.Direction).Order());
        Assert.All(rows, r =>
        {
            Assert.Equal("cpu", r.Device);
            Assert.Equal(100, r.PeakGflops);
            Assert.NotNull(r.PercentOfPeak);
            Assert.True(r.Tflops > 0);
        });
    }
}
