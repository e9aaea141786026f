using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FlashAttention.Cli.Bench;
using FlashAttention.Cli.Files;
using FlashAttention.Cli.Terminal;

namespace FlashAttention.Cli.Commands;

/// <summary><c>flashattn bench</c>: times attention on a built-in problem, a list of shapes or the paper's grid.</summary>
internal static class BenchCommand
{
    /// <summary>The built-in problem (no shape options): fwd and bwd, fp32 on the CPU.</summary>
    public static class Defaults
    {
        public const int Batch = 1;
        public const int Heads = 8;
        public const int SeqLen = 2048;
        public const int HeadDim = 128;
        public const int VarlenCount = 64;
        public const int VarlenMin = 64;
        public const int VarlenMax = 4096;
        public const int VarlenSeed = 0;
    }

    public static Command Create() => Create(BenchBackends.All);

    /// <summary>The command over a given list of backends (tests pass fakes).</summary>
    public static Command Create(IReadOnlyList<IBenchBackend> backends)
    {
        string devices = string.Join('|', backends.Select(b => b.Device).Distinct());
        var device = new Option<string?>("--device") { Description = $"Where to run: {devices}. Default: the first usable of {string.Join(", ", backends.Select(b => b.Device))}." };
        var grid = new Option<string?>("--grid") { Description = "A named grid of cases instead of one shape: 'paper' (FlashAttention-3's: 16k tokens, hidden 2048, seqlen 512…16k, head dim 64/128/256, full and causal; --seqlen, --hdim and --causal (or --causal false: the full cases) narrow it) or 'decode' (one query per sequence against a KV cache, 32/8 heads, d128: b1 4k, b8 8k, b64 32k, b1 8k, b1 32k, b8 32k, each contiguous and in pages of 16 and 256 tokens, and with pages of 16 appending a token; --kv-len and --page-size narrow it)." };
        grid.AcceptOnlyFromAmong("paper", "decode");
        var decode = new Option<bool>("--decode") { Description = "Time attention against a KV cache (CudaAttention.ForwardWithKvCache): --seqlen queries per sequence (default 1) against --kv-len cached tokens, the cache contiguous or paged (--page-size), with --append. Forward only; the table adds the keys and values read per second." };
        var kvLen = new Option<int[]>("--kv-len") { Description = "--decode: cached tokens per sequence (default 4096); several values time each.", AllowMultipleArgumentsPerToken = true };
        var pageSize = new Option<int[]>("--page-size") { Description = "--decode: tokens per page, a multiple of 16, or 0 for a contiguous cache (default 0); several values time each.", AllowMultipleArgumentsPerToken = true };
        var append = new Option<bool>("--append") { Description = "--decode: each call first appends one new token per sequence to the cache in place." };
        var seqLen = new Option<int[]>("--seqlen") { Description = $"Sequence length(s), query and key (default {Defaults.SeqLen}).", AllowMultipleArgumentsPerToken = true };
        var seqLenK = new Option<int?>("--seqlen-k") { Description = "Key length when it differs from the query length." };
        var headDim = new Option<int[]>("--hdim") { Description = $"Head dim(s) (default {Defaults.HeadDim}).", AllowMultipleArgumentsPerToken = true };
        var heads = new Option<int?>("--heads") { Description = $"Query heads (default {Defaults.Heads})." };
        var headsK = new Option<int?>("--heads-k") { Description = "Key/value heads, dividing --heads (GQA/MQA); default: --heads." };
        var batch = new Option<int?>("--batch") { Description = $"Batch size (default {Defaults.Batch})." };
        var causal = new Option<bool>("--causal") { Description = "Causal mask (FLOPs halved)." };
        var dtype = new Option<string?>("--dtype") { Description = "Element type: fp32, fp16, bf16, or fp8 (GPU forward: the FP8 kernel alone, then end to end with the quantiser, then the quantiser's bandwidth beside a copy's; default: fp32 on the CPU, the backend's choice elsewhere)." };
        dtype.AcceptOnlyFromAmong("fp32", "fp16", "bf16", "fp8");
        var forward = new Option<bool>("--forward") { Description = "Time the forward pass (neither --forward nor --backward: both)." };
        var backward = new Option<bool>("--backward") { Description = "Time the backward pass, FLOPs 2.5× forward (neither --forward nor --backward: both)." };
        var warmup = new Option<int?>("--warmup") { Description = "Untimed calls per case (default: 1 on the CPU)." };
        var repeats = new Option<int?>("--repeats") { Description = "Timed samples per case; median, min and max are reported (default: 5 on the CPU, 30 on the GPU)." };
        var timing = new Option<string?>("--timing") { Description = "GPU: 'back-to-back' (default: CUDA events around a batch of calls queued behind a running one, per call; the host's queueing hidden as in the FlashAttention-3 paper's timings) or 'per-call' (events around one call from an idle stream: a lone call's latency, host queueing included)." };
        var json = new Option<string?>("--json") { Description = "Write the rows to this JSON file (schema: bench/SCHEMA.md).", HelpName = "FILE" };
        var compare = new Option<string[]>("--compare") { Description = "Peer results (bench JSON, e.g. from bench/peers/) to compare with: the table gains the best peer and the ratio.", HelpName = "FILE", AllowMultipleArgumentsPerToken = true };
        var seed = new Option<int?>("--seed") { Description = "Seed of the random inputs (default: a fresh one each run); with --varlen also of the drawn lengths (default 0 for those)." };
        var peak = new Option<double?>("--peak-gflops") { Description = "The CPU's fp32 FMA peak in GFLOP/s, to skip measuring it (see flashattn info)." };
        var deterministic = new Option<bool>("--deterministic") { Description = "GPU backward only: also time the deterministic mode (dQ added in a fixed order, bitwise reproducible gradients), to see what it costs." };
        var ablation = new Option<bool>("--ablation") { Description = "GPU forward only: also time the kernel with each of FlashAttention-3's ideas changed (intra-warpgroup overlap switched to what the d128 kernel does not do by default, no ping-pong, no warp specialisation), as in the paper's ablation table." };

        var varlen = new Option<bool>("--varlen") { Description = "GPU: time the variable-length call (CudaAttention.ForwardVarlen/BackwardVarlen) on one packed batch, query length = key length per sequence, lengths from --seqlens or drawn (--varlen-count, --varlen-min, --varlen-max, --seed; default 64 sequences of 64…4096 tokens, seed 0); FLOPs summed per sequence. Each varlen case is followed by our dense attention at the mean length with as many sequences (the same tokens) unless --no-dense." };
        var varlenLens = new Option<int[]>("--seqlens") { Description = "--varlen: each sequence's length, e.g. --seqlens 64 1200 4096 (instead of a drawn list).", AllowMultipleArgumentsPerToken = true };
        var varlenCount = new Option<int?>("--varlen-count") { Description = $"--varlen: sequences to draw (default {Defaults.VarlenCount})." };
        var varlenMin = new Option<int?>("--varlen-min") { Description = $"--varlen: shortest length drawn (default {Defaults.VarlenMin})." };
        var varlenMax = new Option<int?>("--varlen-max") { Description = $"--varlen: longest length drawn (default {Defaults.VarlenMax}); lengths are uniform integers from new Random(--seed, default 0)." };
        var noDense = new Option<bool>("--no-dense") { Description = "--varlen: leave out the dense comparison at the mean length." };

        var command = new Command("bench", $"""
            Time attention and print a table: median (min–max) time, GFLOP/s (CPU) or TFLOP/s (GPU), % of the measured
            fp32 FMA peak for CPU rows, and the best peer with our ratio to it when --compare is given.
            FLOPs are FlashAttention's count: 4·B·H·Sq·Sk·D, half for causal, 2.5× for backward (--varlen: 4·H·s²·D summed over the sequences).
            Without shape options it runs the built-in problem: b{Defaults.Batch} h{Defaults.Heads} s{Defaults.SeqLen} d{Defaults.HeadDim}, forward and backward
            (fp32 on the CPU). Inputs are fresh standard-normal values, rotated between calls.
            """)
        {
            device, grid, seqLen, seqLenK, headDim, heads, headsK, batch, causal, dtype, forward, backward, warmup, repeats, timing, json, compare, seed, peak, ablation, deterministic,
            decode, kvLen, pageSize, append, varlen, varlenLens, varlenCount, varlenMin, varlenMax, noDense,
        }.WithExamples(
            "flashattn bench",
            "flashattn bench --device cpu --seqlen 4096 --hdim 128 --heads 8",
            "flashattn bench --seqlen 512 1024 2048 --hdim 64 128 --causal --forward --json cpu.json",
            "flashattn bench --device cuda --grid paper --dtype bf16 --json h100.json --compare bench/peers/h100.json",
            "flashattn bench --device cuda --seqlen 8192 --hdim 128 --heads 16 --batch 2 --forward --ablation",
            "flashattn bench --device cuda --decode --batch 8 --heads 32 --heads-k 8 --kv-len 8192 --page-size 0 16 256",
            "flashattn bench --device cuda --grid decode --json decode.json",
            "flashattn bench --device cuda --varlen --causal --hdim 128 --heads 16 --json varlen.json",
            "flashattn bench --device cuda --varlen --seqlens 64 1200 4096 --forward");

        CommandActions.Set(command, (p, context) =>
        {
            var backend = ResolveBackend(backends, p.GetValue(device), context);
            var type = p.GetValue(dtype) is string dt ? ParseType(dt) : backend.DefaultType;
            var directions = (p.GetValue(forward), p.GetValue(backward)) switch
            {
                (true, false) => new[] { BenchDirection.Forward },
                (false, true) => new[] { BenchDirection.Backward },
                _ => new[] { BenchDirection.Forward, BenchDirection.Backward },
            };
            int[]? seqLens = NonEmpty(p.GetValue(seqLen)), headDims = NonEmpty(p.GetValue(headDim));
            foreach (int s in seqLens ?? []) Positive("--seqlen", s);
            foreach (int d in headDims ?? []) Positive("--hdim", d);

            int[]? kvLens = NonEmpty(p.GetValue(kvLen)), pageSizes = NonEmpty(p.GetValue(pageSize));
            bool decoding = p.GetValue(decode) || p.GetValue(grid) is "decode";
            if (!decoding && (kvLens is not null || pageSizes is not null || p.GetValue(append)))
                throw new CliException("--kv-len, --page-size and --append describe a KV cache; add --decode (or --grid decode)");
            if (decoding)
            {
                foreach (int k in kvLens ?? []) Positive("--kv-len", k);
                foreach (int page in pageSizes ?? [])
                    if (page < 0 || page % 16 != 0) throw new CliException($"--page-size: expected 0 (contiguous) or a multiple of 16; got {page}");
                if (p.GetValue(backward) || p.GetValue(ablation) || p.GetValue(deterministic))
                    throw new CliException("--decode: the KV-cache call is a forward pass; leave out --backward, --ablation and --deterministic");
                if (p.GetValue(seqLenK) is not null) throw new CliException("--decode: the keys are --kv-len (plus the appended token); leave out --seqlen-k");
                directions = [BenchDirection.Forward];
            }

            int[]? explicitLens = NonEmptyKeepingRepeats(p.GetValue(varlenLens));
            bool varlenDrawn = p.GetValue(varlenCount) is not null || p.GetValue(varlenMin) is not null || p.GetValue(varlenMax) is not null;
            if (!p.GetValue(varlen) && (explicitLens is not null || varlenDrawn || p.GetValue(noDense)))
                throw new CliException("--seqlens, --varlen-count, --varlen-min, --varlen-max and --no-dense describe a variable-length batch; add --varlen");

            IReadOnlyList<BenchCase> cases;
            if (p.GetValue(varlen))
            {
                // The options that set a dense shape or another call, refused by name.
                foreach (var (given, option, why) in new (bool, string, string)[]
                {
                    (p.GetValue(decode), "--decode", "a KV-cache call is not a varlen call"),
                    (p.GetValue(grid) is not null, "--grid", "the grids are dense shapes"),
                    (seqLens is not null, "--seqlen", "the lengths are --seqlens or drawn (--varlen-count/--varlen-min/--varlen-max)"),
                    (p.GetValue(seqLenK) is not null, "--seqlen-k", "each sequence's keys are as many as its queries"),
                    (p.GetValue(batch) is not null, "--batch", "the batch is the number of sequences"),
                    (p.GetValue(ablation), "--ablation", "the ablation variants are dense forward kernels"),
                    (type == DataType.Float8E4M3, "--dtype fp8", "the varlen kernels take bf16 or fp16"),
                })
                    if (given) throw new CliException($"{option}: not with --varlen ({why})");
                if (backend.Device == "cpu")
                    throw new CliException(p.GetValue(device) is null
                        ? "--varlen: times the GPU's varlen kernels, and no GPU is usable here (the default device fell back to cpu)"
                        : "--device cpu: not with --varlen (--varlen times the GPU's varlen kernels; use --device cuda)");
                if (explicitLens is not null && varlenDrawn)
                    throw new CliException("--seqlens: not with --varlen-count/--varlen-min/--varlen-max; give the lengths or draw them, not both");
                int[] lengths;
                if (explicitLens is not null)
                {
                    foreach (int l in explicitLens) Positive("--seqlens", l);
                    lengths = explicitLens;
                }
                else
                {
                    int count = Positive("--varlen-count", p.GetValue(varlenCount) ?? Defaults.VarlenCount);
                    int min = Positive("--varlen-min", p.GetValue(varlenMin) ?? Defaults.VarlenMin);
                    int max = Positive("--varlen-max", p.GetValue(varlenMax) ?? Defaults.VarlenMax);
                    if (min > max) throw new CliException($"--varlen-min: expected at most --varlen-max = {max}; got {min}");
                    lengths = VarlenLengths.Draw(count, min, max, p.GetValue(seed) ?? Defaults.VarlenSeed);
                }
                int h = Positive("--heads", p.GetValue(heads) ?? Defaults.Heads);
                int hk = Positive("--heads-k", p.GetValue(headsK) ?? h);
                if (h % hk != 0) throw new CliException($"--heads-k: expected a divisor of --heads = {h}; got {hk}");
                var list = new List<BenchCase>();
                foreach (var direction in directions)
                foreach (int d in headDims ?? [Defaults.HeadDim])
                {
                    var c = BenchCase.Varlen(lengths, h, hk, d, type, p.GetValue(causal), direction);
                    list.Add(c);
                    if (!p.GetValue(noDense)) list.Add(VarlenLengths.DenseAtMean(c));
                }
                cases = list;
                context.Progress($"varlen: {lengths.Length} sequences, {lengths.Min()}…{lengths.Max()} tokens, {lengths.Sum(l => (long)l)} in all" +
                                 (explicitLens is null ? $" (drawn with seed {p.GetValue(seed) ?? Defaults.VarlenSeed})" : ""));
            }
            else if (p.GetValue(grid) is "decode")
            {
                if (p.GetValue(batch) is not null || p.GetValue(heads) is not null || p.GetValue(headsK) is not null || seqLens is not null || headDims is not null || p.GetValue(append))
                    throw new CliException("--grid decode sets batch, heads, head dim and the append itself; use --kv-len and --page-size to narrow it");
                cases = BenchGrid.Decode(type, kvLens, pageSizes);
                if (cases.Count == 0)
                    throw new CliException($"--grid decode: no case left after --kv-len/--page-size; the grid has cache lengths {string.Join(", ", BenchGrid.DecodeShapes.Select(x => x.CacheLength).Distinct())} and page sizes {string.Join(", ", BenchGrid.DecodePageSizes)}");
            }
            else if (decoding)
            {
                int b = Positive("--batch", p.GetValue(batch) ?? 1);
                int h = Positive("--heads", p.GetValue(heads) ?? 32);
                int hk = Positive("--heads-k", p.GetValue(headsK) ?? (p.GetValue(heads) is null ? 8 : h));
                if (h % hk != 0) throw new CliException($"--heads-k: expected a divisor of --heads = {h}; got {hk}");
                var list = new List<BenchCase>();
                foreach (int d in headDims ?? [Defaults.HeadDim])
                foreach (int sq in seqLens ?? [1])
                foreach (int k in kvLens ?? [4096])
                foreach (int page in pageSizes ?? [0])
                {
                    var c = BenchGrid.DecodeCase(type, b, sq, h, hk, d, k, page, p.GetValue(append) ? 1 : 0);
                    list.Add(c with { Causal = p.GetValue(causal) });
                }
                cases = list;
            }
            else if (p.GetValue(grid) is "paper")
            {
                if (p.GetValue(batch) is not null || p.GetValue(heads) is not null || p.GetValue(headsK) is not null || p.GetValue(seqLenK) is not null)
                    throw new CliException("--grid paper sets batch, heads and lengths itself; use --seqlen, --hdim and --causal to narrow it");
                // --causal narrows the grid to its causal cases, --causal false to its full ones; absent, both.
                bool? onlyCausal = p.GetResult(causal) is { Implicit: false } ? p.GetValue(causal) : null;
                cases = BenchGrid.Paper(type, directions, seqLens, headDims, onlyCausal);
                if (cases.Count == 0)
                    throw new CliException($"--grid paper: no case left after --seqlen/--hdim; the grid has seqlen {string.Join(", ", BenchGrid.PaperSeqLens)} and head dim {string.Join(", ", BenchGrid.PaperHeadDims)}");
            }
            else
            {
                int b = Positive("--batch", p.GetValue(batch) ?? Defaults.Batch);
                int h = Positive("--heads", p.GetValue(heads) ?? Defaults.Heads);
                int hk = Positive("--heads-k", p.GetValue(headsK) ?? h);
                if (h % hk != 0) throw new CliException($"--heads-k: expected a divisor of --heads = {h}; got {hk}");
                int? sk = p.GetValue(seqLenK) is int k ? Positive("--seqlen-k", k) : null;
                var list = new List<BenchCase>();
                foreach (var direction in directions)
                foreach (int d in headDims ?? [Defaults.HeadDim])
                foreach (int s in seqLens ?? [Defaults.SeqLen])
                    list.Add(new BenchCase(b, s, sk ?? s, h, hk, d, type, p.GetValue(causal), direction));
                cases = list;
            }
            if (p.GetValue(grid) is not null)
            {
                // A named grid may hold cases this backend cannot run (e.g. a head dim without a backward kernel): skip
                // those, say so, and time the rest. Explicit shapes must all be supported.
                var skipped = cases.Where(c => !backend.Supports(c, out _)).ToList();
                foreach (var c in skipped)
                {
                    backend.Supports(c, out string why);
                    context.Warn($"skipping {c}: {why}");
                }
                cases = cases.Except(skipped).ToList();
                if (cases.Count == 0) throw new CliException("--grid: this backend supports none of the grid's cases");
            }
            foreach (var c in cases)
                if (!backend.Supports(c, out string why)) throw new CliException($"{c}: {why}");
            // The backends to time each case with: ours, then (with --ablation) our kernel with each idea switched off.
            var variants = new List<IBenchBackend> { backend };
            if (p.GetValue(ablation))
            {
                if (backend is not CudaBenchBackend) throw new CliException("--ablation: the ablation variants are GPU kernels; use --device cuda");
                if (directions.Contains(BenchDirection.Backward)) throw new CliException("--ablation: the ablation variants are forward kernels; add --forward");
                variants.AddRange(CudaBenchBackend.AblationVariants());
            }
            if (type == DataType.Float8E4M3)
            {
                if (backend is not CudaBenchBackend) throw new CliException("--dtype fp8: the FP8 kernel runs on the GPU; use --device cuda");
                variants.AddRange(CudaBenchBackend.Fp8Variants());
            }
            if (p.GetValue(deterministic))
            {
                if (backend is not CudaBenchBackend) throw new CliException("--deterministic: the CPU engine is always deterministic; the option times the GPU's deterministic backward (--device cuda)");
                if (directions.Contains(BenchDirection.Forward)) throw new CliException("--deterministic: the mode concerns the backward pass; add --backward");
                variants.Add(new CudaBenchBackend(deterministic: true));
            }

            var settings = new BenchSettings(
                NonNegative("--warmup", p.GetValue(warmup) ?? backend.DefaultWarmup),
                Positive("--repeats", p.GetValue(repeats) ?? backend.DefaultRepeats),
                p.GetValue(seed) ?? Random.Shared.Next(),
                ParseTiming(p.GetValue(timing), backend));

            // Read peers first: a bad file should fail before minutes of timing.
            var peerRows = new List<BenchRow>();
            foreach (string file in p.GetValue(compare) ?? []) peerRows.AddRange(BenchJson.Load(file).Rows);
            string? jsonPath = p.GetValue(json);
            if (jsonPath is not null)
                OutputPaths.Check((p.GetValue(compare) ?? []).Select(f => ("--compare", f)).ToList(), [("--json", jsonPath)]);

            double? knownPeak = p.GetValue(peak);
            if (knownPeak is double kp && !(kp > 0)) throw new CliException($"--peak-gflops: expected a value > 0; got {kp}");
            if (backend.Device == "cpu" && knownPeak is null) context.Progress("measuring the CPU's fp32 FMA peak…");
            var deviceInfo = backend.DescribeDevice(knownPeak);
            context.Progress($"{backend.Implementation} on {backend.Device}: {deviceInfo.Name}" +
                             (deviceInfo.PeakGflops is double pk ? $", fp32 FMA peak {pk:F0} GFLOP/s" : ""));
            if (backend.Device == "cpu" && cases.Count > 4 && deviceInfo.PeakGflops is double cpuPeak)
            {
                double seconds = cases.Sum(c => c.Flops) * (settings.Warmup + settings.Repeats) / (0.3e9 * cpuPeak);
                if (seconds > 120)
                    context.Warn($"{cases.Count} cases on the CPU: roughly {FormatDuration(seconds)} at 30% of peak (the paper grid is meant for GPUs)");
            }

            string commit = GitCommit.Current();
            // The command line as typed after "flashattn" (the verb is a token of its own).
            string note = $"flashattn {string.Join(' ', p.Tokens.Select(t => t.Value))}".TrimEnd();
            var rows = new List<BenchRow>();
            var total = Stopwatch.StartNew();
            try
            {
                for (int i = 0; i < cases.Count * variants.Count; i++)
                {
                    var c = cases[i / variants.Count];
                    var variant = variants[i % variants.Count];
                    string label = $"[{i + 1}/{cases.Count * variants.Count}] {c}{(variants.Count > 1 ? " " + variant.Implementation : "")}";
                    context.Progress($"{label}…");
                    var m = variant.Run(c, settings, line => context.Progress($"{label}: {line}"), CancellationToken.None);
                    var row = BenchRows.From(m, deviceInfo, variant.Implementation, settings, commit, DateTimeOffset.UtcNow);
                    if (m.BytesMoved is double bytes)
                    {
                        // A memory-bound pass: its bandwidth against a copy's in the same run, not TFLOP/s.
                        row.Flops = 0;
                        row.Tflops = 0;
                        row.BandwidthTbps = Math.Round(bytes / (m.MedianMs * 1e-3) / 1e12, 4);
                        row.CopyTbps = (variant as CudaBenchBackend)?.CopyTbps();
                    }
                    rows.Add(row);
                    // Saved after every case: a run cut short (a time limit on the GPU machine, Ctrl+C) keeps what it measured.
                    if (jsonPath is not null) BenchJson.Save(jsonPath, new BenchFile { Rows = rows, Note = note });
                    context.Progress($"{label}: {row.TimeMsMedian.ToString("G4", CultureInfo.InvariantCulture)} ms, " +
                                     (row.BandwidthTbps is double tbps ? $"{tbps.ToString("F2", CultureInfo.InvariantCulture)} TB/s ({(100 * tbps / (row.CopyTbps ?? double.NaN)).ToString("F0", CultureInfo.InvariantCulture)}% of a copy's {row.CopyTbps?.ToString("F2", CultureInfo.InvariantCulture)})"
                                         : $"{BenchTable.Speed(row.Tflops, row.Device == "cpu")} {(row.Device == "cpu" ? "GFLOP/s" : "TFLOP/s")}") +
                                     (row.HostMsMedian is double host ? $" (host {(host * 1000).ToString("F1", CultureInfo.InvariantCulture)} µs to queue a call)" : ""));
                }
            }
            finally
            {
                foreach (var v in variants) (v as IDisposable)?.Dispose();
            }

            string peakText = "";
            if (deviceInfo.PeakGflops is double firstPeak)
            {
                double finalPeak = firstPeak;
                if (knownPeak is null)
                {
                    // Measured again after the cases and the larger kept: a measurement that shared the cores with
                    // another process reads low, and a peak is only a yardstick if it is a ceiling.
                    context.Progress("measuring the fp32 FMA peak again…");
                    if (backend.DescribeDevice(null).PeakGflops is double again) finalPeak = Math.Max(firstPeak, again);
                }
                peakText = $" · fp32 FMA peak {finalPeak:F0} GFLOP/s" + (knownPeak is null ? $" (best of before {firstPeak:F0} and after the cases)" : " (--peak-gflops)");
                if (BenchRows.ApplyPeak(rows, finalPeak) is { } above)
                    context.Warn($"% of peak not shown: {above.Direction} {above.Mask} {above.Dtype} {BenchNames.Shape(above.Batch, above.HeadsQ, above.HeadsK, above.SeqlenQ, above.SeqlenK, above.HeadDim)} ran at {above.Tflops * 1000:F0} GFLOP/s, above " +
                        (knownPeak is null
                            ? $"the fp32 FMA peak measured before and after the cases ({finalPeak:F0} GFLOP/s), so both measurements were slowed (another process on these cores?); rerun on a quiet machine or give the peak with --peak-gflops"
                            : $"--peak-gflops {finalPeak:G}; expected the machine's fp32 FMA peak (flashattn info measures it)"));
            }

            if (peerRows.Count > 0)
            {
                int matched = BenchRows.AttachPeers(rows, peerRows, context.Warn);
                if (matched == 0) context.Warn("no peer row matches a measured case (same device kind, dtype, shape, mask and direction)");
            }
            context.Console.Write(BenchTable.Build(rows));
            string how = backend.Device == "cpu" ? $"{settings.Repeats} timed calls"
                : settings.Timing == BenchTiming.BackToBack ? $"{settings.Repeats} samples of calls queued back to back"
                : $"{settings.Repeats} lone calls timed";
            context.Out.WriteLine($"{deviceInfo.Name}{peakText} · commit {commit} · {how} after {settings.Warmup} warm-up · total {total.Elapsed.TotalSeconds:F1} s");
            if (jsonPath is not null)
            {
                BenchJson.Save(jsonPath, new BenchFile { Rows = rows, Note = note });
                context.Out.WriteLine($"wrote {rows.Count} rows to {jsonPath}");
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    private static IBenchBackend ResolveBackend(IReadOnlyList<IBenchBackend> backends, string? device, CliContext context)
    {
        if (device is not null)
        {
            var chosen = backends.FirstOrDefault(b => string.Equals(b.Device, device, StringComparison.OrdinalIgnoreCase))
                ?? throw new CliException($"--device {device}: no such backend in this build; available: {string.Join(", ", backends.Select(b => b.Device))}", ExitCodes.DeviceUnavailable);
            if (!chosen.IsAvailable(out string reason))
                throw new CliException($"--device {device}: not usable here: {reason}", ExitCodes.DeviceUnavailable);
            return chosen;
        }
        foreach (var b in backends)
        {
            if (b.IsAvailable(out string reason)) return b;
            context.Progress($"{b.Device}: not usable ({reason}); trying the next device");
        }
        throw new CliException("no usable device", ExitCodes.DeviceUnavailable);
    }

    internal static DataType ParseType(string name) => name.ToLowerInvariant() switch
    {
        "fp32" or "float32" => DataType.Float32,
        "fp16" or "float16" => DataType.Float16,
        "bf16" or "bfloat16" => DataType.BFloat16,
        "fp8" or "e4m3" => DataType.Float8E4M3,
        _ => throw new CliException($"--dtype: expected fp32, fp16, bf16 or fp8; got '{name}'"),
    };

    internal static BenchTiming ParseTiming(string? name, IBenchBackend backend) => name?.ToLowerInvariant() switch
    {
        null => BenchTiming.BackToBack,
        _ when backend.Device == "cpu" => throw new CliException("--timing: CPU calls are synchronous and timed one by one; the option is for the GPU (--device cuda)"),
        "back-to-back" => BenchTiming.BackToBack,
        "per-call" => BenchTiming.PerCall,
        _ => throw new CliException($"--timing: expected back-to-back or per-call; got '{name}'"),
    };

    private static int[]? NonEmpty(int[]? values) => values is { Length: > 0 } ? values.Distinct().ToArray() : null;

    // A list of sequence lengths keeps its repeats: two sequences of one length are two sequences.
    private static int[]? NonEmptyKeepingRepeats(int[]? values) => values is { Length: > 0 } ? values : null;

    private static int Positive(string option, int value)
        => value > 0 ? value : throw new CliException($"{option}: expected a positive integer; got {value}");

    private static int NonNegative(string option, int value)
        => value >= 0 ? value : throw new CliException($"{option}: expected 0 or more; got {value}");

    internal static void CheckWritable(string path, string option)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is null || !Directory.Exists(dir)) throw new CliException($"{option} {path}: the folder {dir} does not exist");
        if (Directory.Exists(path)) throw new CliException($"{option} {path}: is a folder; expected a file name");
    }

    private static string FormatDuration(double seconds) => seconds switch
    {
        < 120 => $"{seconds:F0} s",
        < 7200 => $"{seconds / 60:F0} min",
        _ => $"{seconds / 3600:F1} h",
    };
}
