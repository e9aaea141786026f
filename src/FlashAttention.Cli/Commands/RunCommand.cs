using System.CommandLine;
using System.Diagnostics;
using System.Numerics.Tensors;
using FlashAttention.Cli.Bench;
using FlashAttention.Cli.Files;
using FlashAttention.Cli.Npy;
using FlashAttention.Cli.Terminal;
using FlashAttention.Cuda;
using FlashAttention.Numerics;

namespace FlashAttention.Cli.Commands;

/// <summary><c>flashattn run</c>: attention on tensors from NumPy .npy files, on the CPU engine or the GPU.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var q = new Option<string>("--q") { Description = "Query .npy: (batch, seqlen_q, heads_q, head_dim) or (seqlen_q, heads_q, head_dim).", Required = true, HelpName = "FILE" };
        var k = new Option<string>("--k") { Description = "Key .npy: (batch, seqlen_k, heads_k, head_dim) or (seqlen_k, heads_k, head_dim); heads_k divides heads_q.", Required = true, HelpName = "FILE" };
        var v = new Option<string>("--v") { Description = "Value .npy, shaped like the key.", Required = true, HelpName = "FILE" };
        var output = new Option<string>("--out") { Description = "Output .npy, shaped like the query, in the query's dtype.", Required = true, HelpName = "FILE" };
        var lse = new Option<string?>("--lse") { Description = "Also write the row log-sum-exp (float32, natural log): (batch, heads_q, seqlen_q), or (heads_q, seqlen_q) for rank-3 inputs.", HelpName = "FILE" };
        var causal = new Option<bool>("--causal") { Description = "Causal mask, aligned to the bottom-right corner when seqlen_q ≠ seqlen_k." };
        var windowLeft = new Option<int>("--window-left") { Description = "Sliding window: keys visible left of the diagonal (-1 = unbounded).", DefaultValueFactory = _ => -1 };
        var windowRight = new Option<int>("--window-right") { Description = "Sliding window: keys visible right of the diagonal (-1 = unbounded).", DefaultValueFactory = _ => -1 };
        var softcap = new Option<float>("--softcap") { Description = "Softcap: scores become cap·tanh(s/cap) (0 = off)." };
        var scale = new Option<float?>("--scale") { Description = "Softmax scale (default 1/sqrt(head_dim))." };
        var device = new Option<string>("--device") { Description = "cpu (the CPU engine, any element type) or cuda (the Hopper kernels: float16 or bfloat16, head dim 64, 128 or 256).", DefaultValueFactory = _ => "cpu" };
        device.AcceptOnlyFromAmong("cpu", "cuda");
        var dtype = new Option<string>("--dtype") { Description = "Precision of the matrix products: 'input' (the files' element type) or 'fp8' (with --device cuda: Q, K and V quantised to E4M3 on the GPU, per block of tokens, Q and K rotated first (incoherent processing), and the FP8 kernel; O in the files' 16-bit type).", DefaultValueFactory = _ => "input" };
        dtype.AcceptOnlyFromAmong("input", "fp8");
        var cuSeqLensQ = new Option<string?>("--cu-seqlens-q") { Description = "Variable-length batch: int32 .npy of batch + 1 cumulative query offsets starting at 0 and ending at total_q; q, k and v are then packed (total, heads, head_dim) and the LSE (heads_q, total_q). Alone, the keys use the same offsets.", HelpName = "FILE" };
        var cuSeqLensK = new Option<string?>("--cu-seqlens-k") { Description = "With --cu-seqlens-q: the keys' offsets (batch + 1, int32, ending at total_k) when they differ from the queries'.", HelpName = "FILE" };
        var noIncoherent = new Option<bool>("--no-incoherent") { Description = "With --dtype fp8: skip the Hadamard rotation of Q and K (the plain block-quantised path)." };

        var command = new Command("run", $"""
            Compute attention O = softmax(scale · Q Kᵀ + mask) V on tensors read from NumPy .npy files (CPU engine, or the
            GPU with --device cuda) and write O (and optionally the log-sum-exp) as .npy. Layout (batch, seqlen, heads, head_dim), C order;
            rank 3 (seqlen, heads, head_dim) means batch 1. Element types: {NpyDescr.AcceptedText}.
            bfloat16 has no NumPy type: pass its raw bits as uint16, e.g. (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16),
            or an ml_dtypes.bfloat16 array (saved as '<V2'). O is written with the query's dtype and descr.
            q, k and v must share one element type. Nothing is written when anything fails.
            With --cu-seqlens-q (int32 offsets, '<i4'), q, k and v are variable-length batches packed as (total, heads, head_dim),
            sequence b owning rows cu[b] … cu[b+1]−1, and the LSE is (heads_q, total_q).
            """)
        {
            q, k, v, output, lse, causal, windowLeft, windowRight, softcap, scale, device, dtype, noIncoherent, cuSeqLensQ, cuSeqLensK,
        }.WithExamples(
            "flashattn run --q q.npy --k k.npy --v v.npy --out o.npy",
            "flashattn run --q q.npy --k k.npy --v v.npy --out o.npy --device cuda --causal   # bf16/fp16 on a Hopper GPU",
            "flashattn run --q q.npy --k k.npy --v v.npy --out o.npy --device cuda --dtype fp8   # FP8 forward from bf16/fp16 files",
            "flashattn run --q q.npy --k k.npy --v v.npy --out o.npy --lse lse.npy --causal",
            "flashattn run --q q.npy --k k.npy --v v.npy --out o.npy --window-left 256 --window-right 0 --softcap 30",
            "flashattn run --q q.npy --k k.npy --v v.npy --out o.npy --lse lse.npy --cu-seqlens-q cu.npy --causal   # packed (total, heads, d)",
            "python3 scripts/numpy_attention_check.py      # compare with NumPy's attention on random files");

        CommandActions.Set(command, (p, context) =>
        {
            string qPath = p.GetValue(q)!, kPath = p.GetValue(k)!, vPath = p.GetValue(v)!, outPath = p.GetValue(output)!;
            string? lsePath = p.GetValue(lse);
            string? cuQPath = p.GetValue(cuSeqLensQ), cuKPath = p.GetValue(cuSeqLensK);
            if (cuKPath is not null && cuQPath is null)
                throw new CliException("--cu-seqlens-k: needs --cu-seqlens-q (the queries' offsets); give both, or --cu-seqlens-q alone when keys and queries share offsets");
            var inputs = new List<(string, string)> { ("--q", qPath), ("--k", kPath), ("--v", vPath) };
            if (cuQPath is not null) inputs.Add(("--cu-seqlens-q", cuQPath));
            if (cuKPath is not null) inputs.Add(("--cu-seqlens-k", cuKPath));
            // Before anything is read: an output that is an input (by any path or link) is refused, and nothing is written.
            OutputPaths.Check(inputs, lsePath is null ? [("--out", outPath)] : [("--out", outPath), ("--lse", lsePath)]);
            var options = new AttentionOptions
            {
                Causal = p.GetValue(causal),
                WindowLeft = p.GetValue(windowLeft),
                WindowRight = p.GetValue(windowRight),
                Softcap = p.GetValue(softcap),
                SoftmaxScale = p.GetValue(scale),
                Precision = p.GetValue(dtype) == "fp8" ? AttentionPrecision.Fp8 : AttentionPrecision.Default,
                IncoherentProcessing = !p.GetValue(noIncoherent),
            };

            bool onGpu = p.GetValue(device) == "cuda";
            if (options.Precision == AttentionPrecision.Fp8 && !onGpu)
                throw new CliException("--dtype fp8: the FP8 kernel runs on the GPU; add --device cuda (the CPU engine computes in the files' type)");
            if (p.GetValue(noIncoherent) && options.Precision != AttentionPrecision.Fp8)
                throw new CliException("--no-incoherent: applies to --dtype fp8 only");
            if (cuQPath is not null && options.Precision == AttentionPrecision.Fp8)
                throw new CliException("--dtype fp8: not with --cu-seqlens-q (the variable-length kernels compute in the files' 16-bit type)");
            CudaDevice? gpu = null;
            if (onGpu)
            {
                // Before reading the inputs: a machine without a usable GPU is told so at once.
                var env = CudaEnvironment.Probe();
                if (!env.IsUsable) throw new CliException($"--device cuda: not usable here: {env.UnavailableMessage}", ExitCodes.DeviceUnavailable);
                gpu = CudaDevice.Get(env.SupportedDeviceOrdinal ?? 0);
            }

            var query = NpyFile.Read(qPath);
            var key = NpyFile.Read(kPath);
            var value = NpyFile.Read(vPath);
            ExpectLayout(query, qPath);
            foreach (var (array, path) in new[] { (key, kPath), (value, vPath) })
            {
                ExpectLayout(array, path);
                if (array.ElementType != query.ElementType)
                    throw new NpyFormatException(path, $"dtype '{array.Descr}' ({array.ElementType}) differs from {qPath}'s '{query.Descr}' ({query.ElementType}); expected q, k and v to share one element type");
                if (array.Rank != query.Rank)
                    throw new NpyFormatException(path, $"rank {array.Rank} with shape {NpyArray.ShapeText(array.Shape)}, but {qPath} has rank {query.Rank}; expected the same layout for q, k and v");
            }

            if (cuQPath is not null)
                return RunVarlen(context, gpu, query, key, value, qPath, kPath, vPath, outPath, lsePath, cuQPath, cuKPath, options);

            bool batched = query.Rank == 4;
            long[] qShape = batched ? query.Shape : [1, .. query.Shape];
            long[] kShape = batched ? key.Shape : [1, .. key.Shape];
            long[] vShape = batched ? value.Shape : [1, .. value.Shape];
            var o = NpyArray.Create(query.Descr, query.Shape);
            long[] lseShape = batched ? [qShape[0], qShape[2], qShape[1]] : [qShape[2], qShape[1]];
            var logSumExp = NpyArray.Create("<f4", lseShape);

            double flops = FlopCount.Forward((int)Math.Min(qShape[0], int.MaxValue), (int)Math.Min(qShape[2], int.MaxValue),
                (int)Math.Min(qShape[1], int.MaxValue), (int)Math.Min(kShape[1], int.MaxValue), (int)Math.Min(qShape[3], int.MaxValue), false);
            if (flops > 5e9)
                context.Progress($"computing attention: batch {qShape[0]}, seqlen {qShape[1]}×{kShape[1]}, heads {qShape[2]}/{kShape[2]}, head dim {qShape[3]}, {query.ElementType}…");
            var files = new Dictionary<string, string> { ["query"] = qPath, ["key"] = kPath, ["value"] = vPath, ["output"] = outPath, ["logSumExp"] = lsePath ?? "(lse)" };
            double seconds = Timed(files, () =>
            {
                switch (query.ElementType)
                {
                    case NpyElementType.Float32 when gpu is not null:
                        throw new CliException($"--q {qPath}: dtype '{query.Descr}' (float32); the GPU kernels take float16 or bfloat16{(options.Precision == AttentionPrecision.Fp8 ? " inputs to quantise" : " (use --device cpu for float32)")}");
                    case NpyElementType.Float32: Forward<float>(query, key, value, o, logSumExp, qShape, kShape, vShape, lseShape, batched, options); break;
                    case NpyElementType.Float16 when gpu is not null: ForwardOnGpu<Half>(gpu, query, key, value, o, logSumExp, qShape, kShape, vShape, lseShape, batched, options); break;
                    case NpyElementType.Float16: Forward<Half>(query, key, value, o, logSumExp, qShape, kShape, vShape, lseShape, batched, options); break;
                    default:
                        if (gpu is not null) ForwardOnGpu<BFloat16>(gpu, query, key, value, o, logSumExp, qShape, kShape, vShape, lseShape, batched, options);
                        else Forward<BFloat16>(query, key, value, o, logSumExp, qShape, kShape, vShape, lseShape, batched, options);
                        break;
                }
            });
            WriteOutputs(context, outPath, o, lsePath, logSumExp);
            context.Out.WriteLine($"attention took {seconds * 1e3:F1} ms on {(gpu is null ? "the CPU" : gpu.Name)}" +
                (gpu is null ? $" ({flops / seconds / 1e9:F1} GFLOP/s by the full-attention count)" : " (copies and the first call's kernel compile or cache load included; flashattn bench times the kernels)"));
            return ExitCodes.Ok;
        });
        return command;
    }

    // The attention call's seconds; an argument error names the file or option the argument came from.
    private static double Timed(Dictionary<string, string> files, Action attention)
    {
        var watch = Stopwatch.StartNew();
        try
        {
            attention();
        }
        catch (AttentionArgumentException e)
        {
            throw Translate(e, files);
        }
        return watch.Elapsed.TotalSeconds;
    }

    // The library names the argument ("key: expected …"); the message says which file or option that is.
    private static CliException Translate(AttentionArgumentException e, Dictionary<string, string> files)
    {
        string message = e.Message;
        if (e.ParamName is { } name && files.TryGetValue(name, out string? file) && message.StartsWith(name + ":", StringComparison.Ordinal))
            message = $"{name} ({file}){message[name.Length..]}";
        else if (e.ParamName == "options")
            message = message.Replace("options.Precision", "--dtype").Replace("options.SoftmaxScale", "--scale").Replace("options.Softcap", "--softcap")
                .Replace("options.WindowLeft", "--window-left").Replace("options.WindowRight", "--window-right").Replace("Causal = true", "--causal");
        return new CliException(message);
    }

    // Both files go to temporary names first and are renamed together: a failure leaves neither.
    private static void WriteOutputs(CliContext context, string outPath, NpyArray o, string? lsePath, NpyArray logSumExp)
    {
        var outputs = new List<(string Path, NpyArray Array)> { (outPath, o) };
        if (lsePath is not null) outputs.Add((lsePath, logSumExp));
        var temps = new List<string>();
        try
        {
            foreach (var (path, array) in outputs)
            {
                string temp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
                temps.Add(temp);
                NpyFile.Write(temp, array);
            }
            for (int i = 0; i < outputs.Count; i++) File.Move(temps[i], outputs[i].Path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            foreach (string temp in temps) try { File.Delete(temp); } catch (IOException) { }
            throw new CliException($"cannot write the output: {CliContext.OneLine(e.Message)}", ExitCodes.Failure);
        }
        foreach (var (path, array) in outputs)
            context.Out.WriteLine($"wrote {path}: shape {NpyArray.ShapeText(array.Shape)} '{array.Descr}'");
    }

    /// <summary>
    /// A packed variable-length batch: q (total_q, heads_q, d), k and v (total_k, heads_k, d), offsets from int32 files
    /// (checked here, so both devices refuse bad ones with the option's name); O like q, LSE (heads_q, total_q).
    /// </summary>
    private static int RunVarlen(CliContext context, CudaDevice? gpu, NpyArray query, NpyArray key, NpyArray value,
        string qPath, string kPath, string vPath, string outPath, string? lsePath, string cuQPath, string? cuKPath, AttentionOptions options)
    {
        if (query.Rank != 3)
            throw new CliException($"--cu-seqlens-q: expects q, k and v packed as (total, heads, head_dim); {qPath} has shape {NpyArray.ShapeText(query.Shape)}");
        int[] cuQ = ReadOffsets("--cu-seqlens-q", cuQPath, query.Shape[0], "q's total_q");
        int[] cuK = cuKPath is null ? cuQ : ReadOffsets("--cu-seqlens-k", cuKPath, key.Shape[0], "k's total_k");
        if (cuKPath is null && key.Shape[0] != query.Shape[0])
            throw new CliException($"--cu-seqlens-q: the keys share the queries' offsets, so expected {kPath} to hold total_q = {query.Shape[0]} rows; got {key.Shape[0]} (give the keys' offsets with --cu-seqlens-k)");
        if (cuK.Length != cuQ.Length)
            throw new CliException($"--cu-seqlens-k {cuKPath}: expected {cuQ.Length} offsets (batch + 1, as --cu-seqlens-q has); got {cuK.Length}");

        var o = NpyArray.Create(query.Descr, query.Shape);
        long[] lseShape = [query.Shape[1], query.Shape[0]];
        var logSumExp = NpyArray.Create("<f4", lseShape);
        int maxQ = 0, maxK = 0;
        double flops = 0;
        for (int b = 0; b + 1 < cuQ.Length; b++)
        {
            int sq = cuQ[b + 1] - cuQ[b], sk = cuK[b + 1] - cuK[b];
            (maxQ, maxK) = (Math.Max(maxQ, sq), Math.Max(maxK, sk));
            flops += FlopCount.Forward(1, (int)query.Shape[1], sq, sk, (int)query.Shape[2], false);
        }
        if (flops > 5e9)
            context.Progress($"computing attention: {cuQ.Length - 1} sequences, {query.Shape[0]}×{key.Shape[0]} tokens, heads {query.Shape[1]}/{key.Shape[1]}, head dim {query.Shape[2]}, {query.ElementType}…");
        var files = new Dictionary<string, string>
        {
            ["query"] = qPath, ["key"] = kPath, ["value"] = vPath, ["output"] = outPath, ["logSumExp"] = lsePath ?? "(lse)",
            ["cuSeqLensQ"] = "--cu-seqlens-q " + cuQPath, ["cuSeqLensK"] = cuKPath is null ? "--cu-seqlens-q " + cuQPath : "--cu-seqlens-k " + cuKPath,
        };
        double seconds = Timed(files, () =>
        {
            switch (query.ElementType)
            {
                case NpyElementType.Float32 when gpu is not null:
                    throw new CliException($"--q {qPath}: dtype '{query.Descr}' (float32); the GPU kernels take float16 or bfloat16 (use --device cpu for float32)");
                case NpyElementType.Float32: ForwardVarlen<float>(query, key, value, o, logSumExp, cuQ, cuK, options); break;
                case NpyElementType.Float16 when gpu is not null: ForwardVarlenOnGpu<Half>(gpu, query, key, value, o, logSumExp, cuQ, cuK, maxQ, maxK, options); break;
                case NpyElementType.Float16: ForwardVarlen<Half>(query, key, value, o, logSumExp, cuQ, cuK, options); break;
                default:
                    if (gpu is not null) ForwardVarlenOnGpu<BFloat16>(gpu, query, key, value, o, logSumExp, cuQ, cuK, maxQ, maxK, options);
                    else ForwardVarlen<BFloat16>(query, key, value, o, logSumExp, cuQ, cuK, options);
                    break;
            }
        });
        WriteOutputs(context, outPath, o, lsePath, logSumExp);
        context.Out.WriteLine($"attention over {cuQ.Length - 1} sequences took {seconds * 1e3:F1} ms on {(gpu is null ? "the CPU" : gpu.Name)}" +
            (gpu is null ? $" ({flops / seconds / 1e9:F1} GFLOP/s by the full-attention count per sequence)" : " (copies and the first call's kernel compile or cache load included; flashattn bench --varlen times the kernels)"));
        return ExitCodes.Ok;
    }

    /// <summary>An offsets file: int32, rank 1, at least two entries, 0 first, non-decreasing, <paramref name="total"/> last.</summary>
    private static int[] ReadOffsets(string option, string path, long total, string totalText)
    {
        (long[] shape, int[] cu) read;
        try
        {
            read = NpyFile.ReadInt32(path);
        }
        catch (NpyFormatException e)
        {
            throw new CliException($"{option} {e.Message}");
        }
        var (shape, values) = read;
        if (shape.Length != 1 || values.Length < 2)
            throw new CliException($"{option} {path}: shape {NpyArray.ShapeText(shape)}; expected rank 1 (batch + 1,) with at least 2 offsets");
        if (values[0] != 0) throw new CliException($"{option} {path}: expected the first offset to be 0; got {values[0]}");
        for (int i = 1; i < values.Length; i++)
            if (values[i] < values[i - 1])
                throw new CliException($"{option} {path}: expected non-decreasing offsets; got [{i}] = {values[i]} < [{i - 1}] = {values[i - 1]}");
        if (values[^1] != total) throw new CliException($"{option} {path}: expected the last offset to equal {totalText} = {total}; got {values[^1]}");
        return values;
    }

    private static void ForwardVarlen<T>(NpyArray q, NpyArray k, NpyArray v, NpyArray o, NpyArray lse, int[] cuQ, int[] cuK, AttentionOptions options) where T : unmanaged
        => Attention.ForwardVarlen<T>(
            new ReadOnlyTensorSpan<T>(q.AsSpan<T>(), Lengths(q.Shape)),
            new ReadOnlyTensorSpan<T>(k.AsSpan<T>(), Lengths(k.Shape)),
            new ReadOnlyTensorSpan<T>(v.AsSpan<T>(), Lengths(v.Shape)),
            cuQ, cuK,
            new TensorSpan<T>(o.AsSpan<T>(), Lengths(o.Shape)),
            new TensorSpan<float>(lse.AsSpan<float>(), Lengths(lse.Shape)),
            options);

    // Offsets uploaded and checked on the device too (checkDeviceInputs), longest lengths from the host's copy.
    private static void ForwardVarlenOnGpu<T>(CudaDevice device, NpyArray q, NpyArray k, NpyArray v, NpyArray o, NpyArray lse,
        int[] cuQ, int[] cuK, int maxQ, int maxK, AttentionOptions options) where T : unmanaged
    {
        using var dq = CudaTensor<T>.FromHost(q.AsSpan<T>(), q.Shape, device);
        using var dk = CudaTensor<T>.FromHost(k.AsSpan<T>(), k.Shape, device);
        using var dv = CudaTensor<T>.FromHost(v.AsSpan<T>(), v.Shape, device);
        using var dCuQ = CudaTensor<int>.FromHost(cuQ, [cuQ.Length], device);
        using var dCuK = CudaTensor<int>.FromHost(cuK, [cuK.Length], device);
        using var dOut = new CudaTensor<T>(device, null, o.Shape);
        using var dLse = new CudaTensor<float>(device, null, lse.Shape);
        CudaAttention.ForwardVarlen(dq, dk, dv, dCuQ, dCuK, maxQ, maxK, dOut, dLse, options, checkDeviceInputs: true, device: device);
        device.Synchronize();
        dOut.Download(o.AsSpan<T>());
        dLse.Download(lse.AsSpan<float>());
    }

    private static void ExpectLayout(NpyArray array, string path)
    {
        if (array.Rank is not (3 or 4))
            throw new NpyFormatException(path, $"shape {NpyArray.ShapeText(array.Shape)} has rank {array.Rank}; expected (batch, seqlen, heads, head_dim) or (seqlen, heads, head_dim)");
        foreach (long length in array.Shape)
            if (length > int.MaxValue)
                throw new NpyFormatException(path, $"shape {NpyArray.ShapeText(array.Shape)}: a length exceeds {int.MaxValue}");
    }

    private static void Forward<T>(NpyArray q, NpyArray k, NpyArray v, NpyArray o, NpyArray lse,
        long[] qShape, long[] kShape, long[] vShape, long[] lseShape, bool batched, AttentionOptions options) where T : unmanaged
    {
        long[] lse4 = batched ? lseShape : [1, .. lseShape];
        Attention.Forward<T>(
            new ReadOnlyTensorSpan<T>(q.AsSpan<T>(), Lengths(qShape)),
            new ReadOnlyTensorSpan<T>(k.AsSpan<T>(), Lengths(kShape)),
            new ReadOnlyTensorSpan<T>(v.AsSpan<T>(), Lengths(vShape)),
            new TensorSpan<T>(o.AsSpan<T>(), Lengths(qShape)),
            new TensorSpan<float>(lse.AsSpan<float>(), Lengths(lse4)),
            options);
    }

    // The same problem on the GPU: inputs copied to device memory, O and LSE copied back. The kernels' own checks
    // (head dim, alignment, strides) give an AttentionArgumentException naming the argument, as on the CPU.
    private static void ForwardOnGpu<T>(CudaDevice device, NpyArray q, NpyArray k, NpyArray v, NpyArray o, NpyArray lse,
        long[] qShape, long[] kShape, long[] vShape, long[] lseShape, bool batched, AttentionOptions options) where T : unmanaged
    {
        long[] lse4 = batched ? lseShape : [1, .. lseShape];
        using var dq = CudaTensor<T>.FromHost(q.AsSpan<T>(), qShape, device);
        using var dk = CudaTensor<T>.FromHost(k.AsSpan<T>(), kShape, device);
        using var dv = CudaTensor<T>.FromHost(v.AsSpan<T>(), vShape, device);
        using var dOut = new CudaTensor<T>(device, null, qShape);
        using var dLse = new CudaTensor<float>(device, null, lse4);
        CudaAttention.Forward(dq, dk, dv, dOut, dLse, options, device: device);
        device.Synchronize();
        dOut.Download(o.AsSpan<T>());
        dLse.Download(lse.AsSpan<float>());
    }

    private static nint[] Lengths(long[] shape) => shape.Select(l => (nint)l).ToArray();
}
