using FlashAttention.Cli.Bench;
using FlashAttention.Cli.Terminal;

namespace FlashAttention.Tests.Cli;

public class BenchJsonTests
{
    private const string Row = """
        { "implementation": "cudnn", "device": "cuda", "device_name": "H100", "commit": "abc", "date": "2026-11-24T10:00:00Z",
          "dtype": "bf16", "batch": 8, "seqlen_q": 2048, "seqlen_k": 2048, "heads_q": 16, "heads_k": 16, "head_dim": 128,
          "mask": "causal", "direction": "fwd", "time_ms_median": 1.5, "time_ms_min": 1.4, "time_ms_max": 1.7,
          "flops": 1e12, "tflops": 600.5, "some_future_field": [1, 2, 3] }
        """;

    [Fact]
    public void ReadsTheSchemaAndIgnoresUnknownFields()
    {
        var file = BenchJson.Parse($$"""{ "schema_version": 1, "rows": [ {{Row}} ] }""", "x.json");
        var row = Assert.Single(file.Rows);
        Assert.Equal("cudnn", row.Implementation);
        Assert.Equal(2048, row.SeqlenQ);
        Assert.Equal(600.5, row.Tflops);
        Assert.Equal(new DateTimeOffset(2026, 11, 24, 10, 0, 0, TimeSpan.Zero), row.ParsedDate);
    }

    [Fact]
    public void ReadsRowsAsTheSdpaPeerScriptWritesThem()
    {
        // bench/peers/sdpa_peers.py (first version): a bare list, the GPU name in "device", "driver"/"nvrtc"/"notes".
        const string peer = """
            [ { "implementation": "cudnn", "device": "NVIDIA H100 80GB HBM3", "sm_count": 132, "driver": "12.4", "nvrtc": null,
                "commit": "abc", "date": "2026-11-25T05:45:12+00:00", "dtype": "bf16", "batch": 8, "seqlen_q": 2048, "seqlen_k": 2048,
                "heads_q": 16, "heads_k": 16, "head_dim": 128, "mask": "full", "direction": "fwd", "time_ms_median": 1.2,
                "time_ms_min": 1.1, "time_ms_max": 1.3, "flops": 1e12, "tflops": 550.0, "repeats": 30, "notes": "torch 2.9.0, cuDNN 91002" } ]
            """;
        var row = Assert.Single(BenchJson.Parse(peer, "peers.json").Rows);
        Assert.Equal("cuda", row.Device);
        Assert.Equal("NVIDIA H100 80GB HBM3", row.DeviceName);
        Assert.Equal("12.4", row.DriverVersion);
        Assert.Equal("torch 2.9.0, cuDNN 91002", row.Notes);
        Assert.NotNull(row.ParsedDate);
        string written = BenchJson.Serialize(new BenchFile { Rows = [row] });
        Assert.Contains("\"driver_version\": \"12.4\"", written);
        Assert.DoesNotContain("\"driver\":", written);
    }

    [Fact]
    public void AcceptsABareArrayOfRows() => Assert.Single(BenchJson.Parse($"[ {Row} ]", "x.json").Rows);

    [Fact]
    public void RoundTrips()
    {
        var file = BenchJson.Parse($$"""{ "schema_version": 1, "sample": true, "note": "n", "rows": [ {{Row}} ] }""", "x.json");
        file.Rows[0].Peers = [new PeerResult { Implementation = "fa2", TimeMsMedian = 2, Tflops = 300 }];
        string text = BenchJson.Serialize(file);
        var again = BenchJson.Parse(text, "y.json");
        Assert.Equal(text, BenchJson.Serialize(again));
        Assert.DoesNotContain("sm_count", text); // nulls are left out
        Assert.Contains("\"heads_q\": 16", text);
    }

    [Theory]
    [InlineData("{ \"rows\": [ ", "x.json: not a valid bench JSON file at line 1")]
    [InlineData("not json", "x.json: not a valid bench JSON file")]
    [InlineData("{ \"rows\": [ { \"implementation\": \"a\" } ] }", "x.json: rows[0] (a): \"dtype\" is missing")]
    [InlineData("{ \"rows\": [ { \"implementation\": \"a\", \"dtype\": \"bf16\", \"batch\": \"eight\" } ] }", "x.json: not a valid bench JSON file")]
    [InlineData("{ \"schema_version\": 99, \"rows\": [] }", "schema_version 99 is newer")]
    [InlineData("null", "x.json: empty JSON")]
    public void MalformedFilesGiveClearErrors(string text, string expected)
    {
        var e = Assert.Throws<CliException>(() => BenchJson.Parse(text, "x.json"));
        Assert.Contains(expected, e.Message);
        Assert.Equal(ExitCodes.InvalidInput, e.ExitCode);
    }

    [Fact]
    public void BadFieldValuesNameTheRow()
    {
        string bad = Row.Replace("\"mask\": \"causal\"", "\"mask\": \"diagonal\"");
        var e = Assert.Throws<CliException>(() => BenchJson.Parse($"[ {Row}, {bad} ]", "x.json"));
        Assert.Contains("rows[1] (cudnn): \"mask\" must be \"full\", \"causal\" or \"window\"; got \"diagonal\"", e.Message);
    }
    [Fact]
    public void The_host_time_to_queue_a_call_is_written_only_where_it_was_measured()
    {
        var c = new BenchCase(2, 8192, 8192, 16, 16, 128, FlashAttention.DataType.BFloat16, Causal: false, BenchDirection.Forward);
        var device = new BenchDeviceInfo { Device = "cuda", Name = "H100" };
        var settings = new BenchSettings(5, 3, 1);
        var gpu = BenchRows.From(new BenchMeasurement(c, [1.7, 1.6, 1.8], [0.012, 0.030, 0.011]), device, "flashattn", settings, "abc", DateTimeOffset.UnixEpoch);
        var cpu = BenchRows.From(new BenchMeasurement(c, [1.7, 1.6, 1.8]), device with { Device = "cpu" }, "flashattn", settings, "abc", DateTimeOffset.UnixEpoch);

        Assert.Equal(0.012, gpu.HostMsMedian);
        Assert.Contains("\"host_ms_median\": 0.012", BenchJson.Serialize(new BenchFile { Rows = [gpu] }));
        Assert.Null(cpu.HostMsMedian);
        Assert.DoesNotContain("host_ms_median", BenchJson.Serialize(new BenchFile { Rows = [cpu] }));
        Assert.Equal(0.012, BenchJson.Parse(BenchJson.Serialize(new BenchFile { Rows = [gpu] }), "x.json").Rows[0].HostMsMedian);
    }
}
