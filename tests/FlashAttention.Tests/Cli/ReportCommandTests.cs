using System.Buffers.Binary;
using System.Text;

namespace FlashAttention.Tests.Cli;

/// <summary><c>flashattn report</c> on the checked-in sample (bench/samples/h100-sample.json, made-up data).</summary>
public class ReportCommandTests : IDisposable
{
    private readonly CliHarness _h = new();

    public void Dispose() => _h.Dispose();

    internal static string SamplePath
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "bench", "samples", "h100-sample.json");
                if (File.Exists(candidate)) return candidate;
            }
            throw new FileNotFoundException("bench/samples/h100-sample.json not found above " + AppContext.BaseDirectory);
        }
    }

    [Fact]
    public void RendersOnePngAndTablePerPanelWithTheRequestedSize()
    {
        string outDir = _h.PathOf("report");
        var result = _h.Run("report", SamplePath, "--out", outDir, "--width", "640", "--height", "400");
        Assert.True(result.ExitCode == 0, result.Err);

        var pngs = Directory.GetFiles(outDir, "*.png").Where(f => !Path.GetFileName(f).StartsWith("overview")).ToArray();
        // 2 directions × 2 masks × 3 head dims.
        Assert.Equal(12, pngs.Length);
        // And a paper-style overview per direction: 2 rows (masks) × 3 columns (head dims) of 560 × 420 pixel panels under a 64-pixel header.
        foreach (string dir in new[] { "fwd", "bwd" })
            Assert.Equal((3 * 560, 64 + 2 * 420), PngSize(Path.Combine(outDir, $"overview-{dir}-bf16.png")));
        foreach (string png in pngs)
        {
            var (width, height) = PngSize(png);
            Assert.Equal((640, 400), (width, height));
            string md = Path.ChangeExtension(png, ".md");
            Assert.True(File.Exists(md), md);
        }
        string table = File.ReadAllText(Path.Combine(outDir, "fwd-bf16-hdim128-causal.md"));
        Assert.Contains("SAMPLE DATA", table);
        Assert.Contains("| seqlen | batch × heads | flashattn | cudnn | fa2 | flashattn / best peer |", table);
        Assert.Contains("| 16384 | 1 × 16 |", table);
        Assert.Contains("![", table);
        Assert.Contains("Dense GEMM ceiling: 765 TFLOP/s", table);
        Assert.True(File.Exists(Path.Combine(outDir, "index.md")));
    }

    [Fact]
    public void Fp8ChartsShowOurBf16BesideThePeersAndLeaveOutMemoryBoundRows()
    {
        string json = _h.PathOf("fp8.json");
        string Row(string impl, string dtype, double tflops, string extra = "") =>
            $$"""{ "implementation": "{{impl}}", "device": "cuda", "device_name": "H200", "dtype": "{{dtype}}", "direction": "fwd", "mask": "full", "batch": 2, "heads_q": 16, "heads_k": 16, "seqlen_q": 8192, "seqlen_k": 8192, "head_dim": 128, "time_ms_median": 1, "tflops": {{tflops}}, "commit": "abc", "date": "2026-12-04T00:00:00Z"{{extra}} }""";
        File.WriteAllText(json, "{ \"schema_version\": 1, \"rows\": [" + string.Join(",", Row("flashattn", "e4m3", 900), Row("cudnn-fp8", "e4m3", 910),
            Row("flashattn (fp8 end to end)", "e4m3", 800), Row("flashattn (fp8 quantiser)", "e4m3", 0, ", \"bandwidth_tbps\": 2.3"), Row("flashattn", "bf16", 630)) + "] }");
        string outDir = _h.PathOf("report");
        var result = _h.Run("report", json, "--out", outDir);
        Assert.True(result.ExitCode == 0, result.Err);
        string table = File.ReadAllText(Path.Combine(outDir, "fwd-e4m3-hdim128-full.md"));
        Assert.Contains("| seqlen | batch × heads | flashattn | cudnn-fp8 | flashattn (fp8 end to end) | flashattn bf16 | flashattn / best peer |", table);
        Assert.Contains("| 900 | 910 | 800 | 630 | 0.99× (cudnn-fp8) |", table);
        Assert.DoesNotContain("quantiser", table);
        Assert.True(File.Exists(Path.Combine(outDir, "fwd-bf16-hdim128-full.md")));
    }

    [Fact]
    public void CpuRowsAreChartedInGflops()
    {
        string json = _h.PathOf("cpu.json");
        File.WriteAllText(json, """
            { "schema_version": 1, "rows": [
              { "implementation": "flashattn", "device": "cpu", "device_name": "Some CPU", "commit": "abc1234", "date": "2026-11-25T06:00:00Z",
                "dtype": "fp32", "batch": 1, "seqlen_q": 1024, "seqlen_k": 1024, "heads_q": 8, "heads_k": 8, "head_dim": 64,
                "mask": "full", "direction": "fwd", "time_ms_median": 30, "time_ms_min": 29, "time_ms_max": 31, "flops": 2.1e9, "tflops": 0.07 } ] }
            """);
        string outDir = _h.PathOf("cpu-report");
        var result = _h.Run("report", json, "--out", outDir);
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Equal((1200, 700), PngSize(Path.Combine(outDir, "fwd-fp32-hdim64-full.png")));
        string table = File.ReadAllText(Path.Combine(outDir, "fwd-fp32-hdim64-full.md"));
        Assert.Contains("GFLOP/s", table);
        Assert.Contains("| 1024 | 1 × 8 | 70.0 |", table);
        Assert.DoesNotContain("SAMPLE", table);
    }

    [Fact]
    public void GpuRowsTimedInDifferentWaysAreNotChartedTogether()
    {
        static string Rows(string impl, string? timing) => $$"""
            { "schema_version": 1, "rows": [
              { "implementation": "{{impl}}", "device": "cuda", "device_name": "H100", "commit": "abc1234", "date": "2026-11-25T06:00:00Z",
                "dtype": "bf16", "batch": 2, "seqlen_q": 8192, "seqlen_k": 8192, "heads_q": 16, "heads_k": 16, "head_dim": 128,
                "mask": "full", "direction": "fwd", "time_ms_median": 1.7, "flops": 1.1e12, "tflops": 650{{(timing is null ? "" : $", \"timing\": \"{timing}\"")}} } ] }
            """;
        string ours = _h.PathOf("ours.json"), old = _h.PathOf("old-peers.json"), peers = _h.PathOf("peers.json");
        File.WriteAllText(ours, Rows("flashattn", "back-to-back"));
        File.WriteAllText(old, Rows("cudnn", null));
        File.WriteAllText(peers, Rows("cudnn", "back-to-back"));

        _h.Run("report", ours, old, "--out", _h.PathOf("mixed")).AssertOneLineError(2, "timed in different ways", "per-call: old-peers.json", "chart one timing mode at a time");
        Assert.False(Directory.Exists(_h.PathOf("mixed")));

        var result = _h.Run("report", ours, peers, "--out", _h.PathOf("same"));
        Assert.True(result.ExitCode == 0, result.Err);
        Assert.Contains("calls queued back to back", File.ReadAllText(Path.Combine(_h.PathOf("same"), "fwd-bf16-hdim128-full.md")));
    }

    [Fact]
    public void MissingFileIsAClearError()
    {
        var result = _h.Run("report", _h.PathOf("nope.json"), "--out", _h.PathOf("r"));
        result.AssertOneLineError(2, "nope.json: cannot be read");
        Assert.False(Directory.Exists(_h.PathOf("r")));
    }

    [Fact]
    public void MalformedJsonIsAClearError()
    {
        string json = _h.PathOf("bad.json");
        File.WriteAllText(json, "{ \"rows\": [ { \"implementation\": ");
        var result = _h.Run("report", json, "--out", _h.PathOf("r"));
        result.AssertOneLineError(2, "bad.json: not a valid bench JSON file at line");
        Assert.False(Directory.Exists(_h.PathOf("r")));
    }

    [Fact]
    public void FileWithNoRowsIsAClearError()
    {
        string json = _h.PathOf("empty.json");
        File.WriteAllText(json, "{ \"schema_version\": 1, \"rows\": [] }");
        _h.Run("report", json).AssertOneLineError(2, "no rows");
    }

    /// <summary>Width and height from the PNG's IHDR chunk, read by hand.</summary>
    internal static (int Width, int Height) PngSize(string path)
    {
        byte[] head = new byte[24];
        using (var f = File.OpenRead(path)) Assert.Equal(24, f.Read(head, 0, 24));
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, head[..8]);
        Assert.Equal("IHDR", Encoding.ASCII.GetString(head, 12, 4));
        return ((int)BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(16)), (int)BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(20)));
    }
}
