using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using FlashAttention.Cli.Terminal;

namespace FlashAttention.Cli.Bench;

/// <summary>A bench JSON file (schema in bench/SCHEMA.md): some metadata and a list of self-contained rows.</summary>
public sealed class BenchFile
{
    /// <summary>The schema version this file follows; readers refuse versions newer than <see cref="BenchJson.SchemaVersion"/>.</summary>
    public int SchemaVersion { get; set; } = BenchJson.SchemaVersion;

    /// <summary>True for made-up data (test fixtures); reports mark charts drawn from it "SAMPLE".</summary>
    public bool? Sample { get; set; }

    /// <summary>Free text: how the file was made.</summary>
    public string? Note { get; set; }

    public List<BenchRow> Rows { get; set; } = [];
}

/// <summary>One timed case of one implementation on one device. Every row carries its own context so rows from different files can be merged.</summary>
public sealed class BenchRow
{
    /// <summary>A copy under another implementation name and dtype (the report draws bf16 rows in FP8 charts this way).</summary>
    internal BenchRow Relabelled(string implementation, string dtype)
    {
        var copy = (BenchRow)MemberwiseClone();
        copy.Implementation = implementation;
        copy.Dtype = dtype;
        return copy;
    }

    /// <summary>"flashattn" (ours), or a peer: "cudnn", "fa2", "fa3", "sdpa-math", …</summary>
    public string Implementation { get; set; } = "";
    /// <summary>"cpu" or "cuda".</summary>
    public string Device { get; set; } = "";
    /// <summary>GPU name or CPU model.</summary>
    public string DeviceName { get; set; } = "";
    public int? SmCount { get; set; }
    public double? SmClockMhz { get; set; }
    public double? MemClockMhz { get; set; }
    public string? ComputeCapability { get; set; }
    public string? DriverVersion { get; set; }
    public string? NvrtcVersion { get; set; }
    public int? CpuCores { get; set; }
    /// <summary>CPU rows: the measured fp32 FMA peak, GFLOP/s.</summary>
    public double? PeakGflops { get; set; }
    /// <summary>CPU rows: achieved FLOP/s as a percentage of <see cref="PeakGflops"/>.</summary>
    public double? PercentOfPeak { get; set; }
    /// <summary>Optional measured dense GEMM throughput of this device in this dtype, TFLOP/s (the chart's ceiling line).</summary>
    public double? GemmTflops { get; set; }
    /// <summary>Free text worth keeping with the row, e.g. the peer libraries' versions ("torch 2.9.0, cuDNN 91002").</summary>
    public string? Notes { get; set; }

    /// <summary>Read-only alias of <see cref="DriverVersion"/> ("driver", as early peer files write it); never written.</summary>
    [JsonPropertyName("driver")]
    public string? DriverAlias { get => null; set => DriverVersion ??= value; }

    /// <summary>Read-only alias of <see cref="NvrtcVersion"/> ("nvrtc"); never written.</summary>
    [JsonPropertyName("nvrtc")]
    public string? NvrtcAlias { get => null; set => NvrtcVersion ??= value; }
    /// <summary>Commit of this repository the numbers were measured at ("unknown" when not known).</summary>
    public string Commit { get; set; } = "unknown";
    /// <summary>ISO 8601 UTC, e.g. 2026-11-25T06:00:00Z.</summary>
    public string Date { get; set; } = "";
    /// <summary>"fp32", "fp16", "bf16", "e4m3".</summary>
    public string Dtype { get; set; } = "";
    public int Batch { get; set; }
    public int SeqlenQ { get; set; }
    public int SeqlenK { get; set; }
    public int HeadsQ { get; set; }
    public int HeadsK { get; set; }
    public int HeadDim { get; set; }
    /// <summary>"full", "causal" or "window".</summary>
    public string Mask { get; set; } = "";
    public int? WindowLeft { get; set; }
    public int? WindowRight { get; set; }
    /// <summary>"fwd" or "bwd".</summary>
    public string Direction { get; set; } = "";
    public int? Warmup { get; set; }
    public int? Repeats { get; set; }
    public double TimeMsMedian { get; set; }
    public double TimeMsMin { get; set; }
    public double TimeMsMax { get; set; }
    /// <summary>GPU rows of ours: median host time to queue one call (validation, tensor maps, launches), in milliseconds.</summary>
    public double? HostMsMedian { get; set; }
    /// <summary>GPU rows: "back-to-back" (events around a batch of calls queued behind a running one, per call) or
    /// "per-call" (events around one call from an idle stream); absent in rows written before the field existed,
    /// which were timed per call.</summary>
    public string? Timing { get; set; }
    /// <summary>GPU rows: calls per timed sample (back-to-back timing).</summary>
    public int? CallsPerSample { get; set; }
    /// <summary>FLOPs of one call by FlashAttention's count (4·B·H·Sq·Sk·D, half for causal, ×2.5 backward).</summary>
    public double Flops { get; set; }
    /// <summary>flops / median time, in TFLOP/s.</summary>
    public double Tflops { get; set; }
    /// <summary>Memory-bound rows (the FP8 quantiser): bytes read and written per call over the median time, in TB/s (flops and tflops are 0).</summary>
    public double? BandwidthTbps { get; set; }
    /// <summary>With <see cref="BandwidthTbps"/>: a large device-to-device copy's TB/s (read + write) measured in the same run, the ceiling.</summary>
    public double? CopyTbps { get; set; }
    /// <summary>Decode rows: attention against a KV cache (ours: ForwardWithKvCache; peers: the same shape as plain attention).</summary>
    public bool? KvCache { get; set; }
    /// <summary>Decode rows of ours: tokens per page, 0 for a contiguous cache.</summary>
    public int? PageSize { get; set; }
    /// <summary>Decode rows of ours: tokens appended per sequence by each call (included in seqlen_k).</summary>
    public int? AppendLength { get; set; }
    /// <summary>Decode rows: bytes of keys and values a call reads (2·B·seqlen_k·heads_k·head_dim·element size).</summary>
    public double? KvBytes { get; set; }
    /// <summary>Decode rows: kv_bytes / median time, TB/s.</summary>
    public double? KvTbps { get; set; }
    /// <summary>
    /// Variable-length rows: each sequence's length (queries and keys alike), packed one after another; <see cref="Batch"/>
    /// is their count and <see cref="SeqlenQ"/>/<see cref="SeqlenK"/> the longest. Absent on dense rows.
    /// </summary>
    public List<int>? Seqlens { get; set; }
    /// <summary>Other implementations' numbers on the same case (filled by <c>bench --compare</c>).</summary>
    public List<PeerResult>? Peers { get; set; }

    /// <summary>The shape, mask, dtype, direction, device kind and (GPU) timing mode: rows with equal keys are comparable.</summary>
    public string CaseKey => string.Join('|', Device, Dtype, Batch, SeqlenQ, SeqlenK, HeadsQ, HeadsK, HeadDim, Mask, WindowLeft, WindowRight, Direction, TimingKey,
        Seqlens is null ? "" : "varlen:" + string.Join(',', Seqlens));

    /// <summary>The timing mode for matching: GPU rows without one were timed per call; CPU rows have none.</summary>
    public string TimingKey => Device == "cpu" ? "" : Timing ?? "per-call";

    public DateTimeOffset? ParsedDate => DateTimeOffset.TryParse(Date, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var d) ? d : null;
}

/// <summary>Another implementation's result on the same case as the row that carries it.</summary>
public sealed class PeerResult
{
    public string Implementation { get; set; } = "";
    public double TimeMsMedian { get; set; }
    public double Tflops { get; set; }
}

/// <summary>System.Text.Json source generation (Native AOT: no reflection). snake_case names, nulls left out.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(BenchFile))]
[JsonSerializable(typeof(List<BenchRow>))]
internal sealed partial class BenchJsonContext : JsonSerializerContext;

/// <summary>Reads, checks and writes bench JSON files.</summary>
public static class BenchJson
{
    public const int SchemaVersion = 1;

    public static string Serialize(BenchFile file) => JsonSerializer.Serialize(file, BenchJsonContext.Default.BenchFile);

    /// <summary>Writes <paramref name="file"/> to <paramref name="path"/> through a temporary file, so a failure leaves nothing half-written.</summary>
    public static void Save(string path, BenchFile file) => AtomicFile.WriteAllText(path, Serialize(file) + "\n");

    /// <summary>Reads and checks a file; every problem is a <see cref="CliException"/> naming the file (and the row).</summary>
    public static BenchFile Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new CliException($"{path}: cannot be read: {CliContext.OneLine(e.Message)}");
        }
        return Parse(text, path);
    }

    /// <summary>Parses and checks JSON text; <paramref name="name"/> labels messages.</summary>
    public static BenchFile Parse(string text, string name)
    {
        BenchFile? file;
        try
        {
            file = text.TrimStart().StartsWith('[')
                ? new BenchFile { Rows = JsonSerializer.Deserialize(text, BenchJsonContext.Default.ListBenchRow) ?? [] }
                : JsonSerializer.Deserialize(text, BenchJsonContext.Default.BenchFile);
        }
        catch (JsonException e)
        {
            string where = e.LineNumber is long line ? $" at line {line + 1}, byte {e.BytePositionInLine + 1}" : "";
            string path = string.IsNullOrEmpty(e.Path) || e.Path == "$" ? "" : $" ({e.Path})";
            string problem = e.InnerException?.Message ?? e.Message.Split(" Path:")[0];
            throw new CliException($"{name}: not a valid bench JSON file{where}{path}: {CliContext.OneLine(problem)}");
        }
        if (file is null) throw new CliException($"{name}: empty JSON (expected an object with \"rows\"; see bench/SCHEMA.md)");
        if (file.SchemaVersion > SchemaVersion)
            throw new CliException($"{name}: schema_version {file.SchemaVersion} is newer than this flashattn reads ({SchemaVersion}); update flashattn");
        file.Rows ??= [];
        for (int i = 0; i < file.Rows.Count; i++) Check(file.Rows[i], $"{name}: rows[{i}]");
        return file;
    }

    private static void Check(BenchRow? row, string where)
    {
        if (row is null) throw new CliException($"{where}: expected an object; got null");
        void Require(bool ok, string what)
        {
            if (!ok) throw new CliException($"{where} ({(string.IsNullOrEmpty(row.Implementation) ? "?" : row.Implementation)}): {what}");
        }
        Require(!string.IsNullOrWhiteSpace(row.Implementation), "\"implementation\" is missing");
        Require(!string.IsNullOrWhiteSpace(row.Dtype), "\"dtype\" is missing");
        Require(row.Batch > 0, $"\"batch\" must be a positive integer; got {row.Batch}");
        Require(row.SeqlenQ > 0, $"\"seqlen_q\" must be a positive integer; got {row.SeqlenQ}");
        Require(row.SeqlenK > 0, $"\"seqlen_k\" must be a positive integer; got {row.SeqlenK}");
        Require(row.HeadsQ > 0, $"\"heads_q\" must be a positive integer; got {row.HeadsQ}");
        Require(row.HeadsK > 0, $"\"heads_k\" must be a positive integer; got {row.HeadsK}");
        Require(row.HeadDim > 0, $"\"head_dim\" must be a positive integer; got {row.HeadDim}");
        Require(row.Mask is "full" or "causal" or "window", $"\"mask\" must be \"full\", \"causal\" or \"window\"; got \"{row.Mask}\"");
        Require(row.Direction is "fwd" or "bwd", $"\"direction\" must be \"fwd\" or \"bwd\"; got \"{row.Direction}\"");
        Require(double.IsFinite(row.TimeMsMedian) && row.TimeMsMedian > 0, $"\"time_ms_median\" must be > 0; got {row.TimeMsMedian}");
        Require(double.IsFinite(row.Tflops) && row.Tflops >= 0, $"\"tflops\" must be ≥ 0; got {row.Tflops}");
        if (row.Seqlens is { } lens)
        {
            Require(lens.Count == row.Batch, $"\"seqlens\" must hold \"batch\" = {row.Batch} lengths; got {lens.Count}");
            Require(lens.All(l => l > 0), "\"seqlens\" must hold positive integers");
            Require(lens.Max() == row.SeqlenQ, $"\"seqlen_q\" must be the longest of \"seqlens\" ({lens.Max()}); got {row.SeqlenQ}");
        }
        // "device" is the kind ("cpu" or "cuda"); a file that puts the GPU's name there (and no "device_name") is read as cuda.
        if (row.Device is not ("cpu" or "cuda"))
        {
            if (string.IsNullOrWhiteSpace(row.DeviceName) && !string.IsNullOrWhiteSpace(row.Device)) row.DeviceName = row.Device;
            row.Device = "cuda";
        }
        if (string.IsNullOrWhiteSpace(row.DeviceName)) row.DeviceName = "unknown device";
    }
}

/// <summary>Writes files through a temporary sibling and a rename, so readers never see half a file and failures leave none.</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text) => Write(path, stream =>
    {
        using var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(false));
        writer.Write(text);
    });

    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
                write(stream);
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
