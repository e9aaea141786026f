using System.Diagnostics;
using FlashAttention.Cuda;
using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;
using FlashAttention.Lab;
using FlashAttention.Lab.Tuning;
using FlashAttention.Numerics;

namespace FlashAttention.Cli.Bench;

/// <summary>
/// Times our Hopper kernels (<see cref="CudaAttention"/>) with CUDA events, after warm-up (which also compiles or loads
/// the kernel): around batches of calls queued back to back, or around each lone call (<see cref="BenchTiming"/>). Inputs are standard-normal values uploaded from one host pool, in enough sets to
/// rotate through more than twice the L2 cache, so no call finds its inputs in L2. With an <see cref="Ablation"/>, the
/// kernel runs with one of FlashAttention-3's ideas switched off (the paper's ablation table).
/// </summary>
public sealed class CudaBenchBackend : IBenchBackend, IDisposable
{
    private readonly Dictionary<DataType, ushort[]> _pools = new();
    private CudaDevice? _device;

    internal CudaBenchBackend(ForwardAblation? ablation = null, bool deterministic = false, Fp8Timing fp8 = Fp8Timing.Kernel)
    {
        Ablation = ablation;
        Deterministic = deterministic;
        Fp8 = fp8;
    }

    /// <summary>What an FP8 case (dtype e4m3) times.</summary>
    internal enum Fp8Timing
    {
        /// <summary>The FP8 kernel alone, on operands quantised once beforehand (the kernel's TFLOP/s).</summary>
        Kernel,
        /// <summary>CudaAttention.Forward with Precision = Fp8 from bf16: the quantiser's three passes and the kernel.</summary>
        EndToEnd,
        /// <summary>The quantiser alone (a row with its bandwidth, bytes read and written over time, not TFLOP/s).</summary>
        Quantiser,
    }

    internal Fp8Timing Fp8 { get; }

    /// <summary>The FP8 end-to-end and quantiser timings beside the kernel's, for <c>bench --dtype fp8</c>.</summary>
    internal static IReadOnlyList<CudaBenchBackend> Fp8Variants() => [new(fp8: Fp8Timing.EndToEnd), new(fp8: Fp8Timing.Quantiser)];

    public CudaBenchBackend() : this(null) { }

    internal ForwardAblation? Ablation { get; }

    /// <summary>Backward with <see cref="AttentionOptions.Deterministic"/> (dQ added in a fixed order), to measure its cost.</summary>
    internal bool Deterministic { get; }

    public string Device => "cuda";
    public string Implementation => Ablation is not null ? $"flashattn ({Ablation.Name})" : Deterministic ? "flashattn (deterministic)"
        : Fp8 switch { Fp8Timing.EndToEnd => "flashattn (fp8 end to end)", Fp8Timing.Quantiser => "flashattn (fp8 quantiser)", _ => "flashattn" };
    public DataType DefaultType => DataType.BFloat16;
    public int DefaultWarmup => 5;
    public int DefaultRepeats => 30;

    /// <summary>The same kernel with each ablation switch, for <c>bench --ablation</c>.</summary>
    internal static IReadOnlyList<CudaBenchBackend> AblationVariants() => [.. ForwardAblation.PaperTable.Select(a => new CudaBenchBackend(a))];

    public bool IsAvailable(out string reason)
    {
        var report = CudaEnvironment.Probe();
        reason = report.UnavailableMessage ?? "";
        return report.IsUsable;
    }

    public bool Supports(BenchCase c, out string reason)
    {
        reason = "";
        var dims = c.Direction == BenchDirection.Forward ? ForwardVariants.HeadDims : BackwardVariants.HeadDims;
        if (c.Type == DataType.Float8E4M3)
        {
            if (c.Direction == BenchDirection.Backward) reason = "the FP8 kernel is a forward kernel";
            else if (Array.IndexOf(FlashAttention.Cuda.Variants.Fp8Variants.HeadDims, c.HeadDim) < 0)
                reason = $"the FP8 kernel supports head dim {string.Join(", ", FlashAttention.Cuda.Variants.Fp8Variants.HeadDims)}; got {c.HeadDim}";
            else if (Ablation is not null || Deterministic) reason = "the ablation and deterministic variants are BF16 kernels";
            return reason.Length == 0;
        }
        if (Fp8 != Fp8Timing.Kernel)
            reason = "the FP8 end-to-end and quantiser timings are of FP8 cases (--dtype fp8)";
        else if (c.Type is not (DataType.BFloat16 or DataType.Float16))
            reason = $"the GPU kernels take bf16, fp16 or fp8; got {DataTypes.ShortName(c.Type)}";
        else if (Array.IndexOf(dims, c.HeadDim) < 0)
            reason = $"the GPU {(c.Direction == BenchDirection.Forward ? "forward" : "backward")} kernels support head dim {string.Join(", ", dims)}; got {c.HeadDim}";
        else if (c.KvCache is { } kv && (kv.PageSize < 0 || kv.PageSize % 16 != 0))
            reason = $"pages of a multiple of 16 tokens, or 0 for a contiguous cache; got {kv.PageSize}";
        else if (c.SeqLens is not null && Ablation is not null)
            reason = "the ablation variants are dense forward kernels";
        else if (c.SeqLens is not null && Deterministic && c.Direction == BenchDirection.Forward)
            reason = "the deterministic mode concerns the backward pass";
        else if (c.KvCache is not null && (c.Direction == BenchDirection.Backward || Ablation is not null || Deterministic))
            reason = "the KV-cache call is a forward pass of the default kernels";
        else if (Ablation is not null && c.Direction == BenchDirection.Backward)
            reason = "the ablation variants are forward kernels";
        else if (Ablation is not null && LabSetup.CurrentTuning.WithAblation(Ablation).Forward(c.HeadDim, c.SeqLenK, c.Causal) == LabSetup.CurrentTuning.Forward(c.HeadDim, c.SeqLenK, c.Causal))
            reason = $"ablation {Ablation.Name} is the default kernel at head dim {c.HeadDim}";
        return reason.Length == 0;
    }

    private double? _copyTbps;

    /// <summary>
    /// A device-to-device copy of 1 GiB (bytes read and written over the best of five timed copies), measured once per
    /// run: the ceiling memory-bound passes are held to.
    /// </summary>
    internal double CopyTbps()
    {
        if (_copyTbps is double known) return known;
        var device = _device ??= CudaDevice.Get(0);
        using var a = new DeviceBuffer(1L << 30, device);
        using var b = new DeviceBuffer(1L << 30, device);
        a.Fill(1);
        using var stream = new CudaStream(device);
        using var start = new CudaEvent(device);
        using var end = new CudaEvent(device);
        double best = double.MaxValue;
        for (int i = 0; i < 6; i++)
        {
            start.Record(stream);
            b.CopyFrom(a, stream);
            end.Record(stream);
            end.Synchronize();
            if (i > 0) best = Math.Min(best, CudaEvent.ElapsedMilliseconds(start, end));
        }
        return (_copyTbps = Math.Round(2.0 * (1L << 30) / (best * 1e-3) / 1e12, 3)).Value;
    }

    public BenchDeviceInfo DescribeDevice(double? knownPeakGflops)
    {
        var device = _device ??= CudaDevice.Get(0);
        var report = CudaEnvironment.Probe();
        return new BenchDeviceInfo
        {
            Device = Device,
            Name = device.Name,
            SmCount = device.MultiprocessorCount,
            SmClockMhz = device.ClockRateKHz / 1000.0,
            MemClockMhz = device.MemoryClockRateKHz / 1000.0,
            DriverVersion = device.DriverVersionText,
            NvrtcVersion = report.NvrtcVersion,
            ComputeCapability = device.ComputeCapability.ToString(),
        };
    }

    public BenchMeasurement Run(BenchCase c, BenchSettings s, Action<string>? progress, CancellationToken ct)
    {
        if (c.KvCache is not null) return RunKvCache(c, s, progress, ct);
        if (c.SeqLens is not null) return RunVarlen(c, s, progress, ct);
        // The ablation reaches the kernel through the one seam: a policy installed for this case.
        using var ablation = Ablation is null ? null : VariantPolicy.Install(LabSetup.CurrentTuning.WithAblation(Ablation));
        var device = _device ??= CudaDevice.Get(0);
        bool backward = c.Direction == BenchDirection.Backward;
        long[] qShape = [c.Batch, c.SeqLenQ, c.HeadsQ, c.HeadDim], kShape = [c.Batch, c.SeqLenK, c.HeadsK, c.HeadDim];
        long[] lseShape = [c.Batch, c.HeadsQ, c.SeqLenQ];
        long setBytes = AttentionSetBytes(qShape, kShape, backward);
        int sets = RotatingSets(device, setBytes, most: 4);

        bool fp8 = c.Type == DataType.Float8E4M3;
        var inputType = fp8 ? DataType.BFloat16 : c.Type;  // FP8 cases start from bf16, as a caller's activations do
        var pool = Pool(inputType, s.Seed);
        var inputs = new List<InputSet>();
        using var stream = new CudaStream(device);
        var options = new AttentionOptions { Causal = c.Causal, Deterministic = Deterministic, Precision = fp8 ? AttentionPrecision.Fp8 : AttentionPrecision.Default };
        try
        {
            progress?.Invoke($"{sets} input set{(sets > 1 ? "s" : "")} of {setBytes / (1 << 20)} MiB");
            for (int i = 0; i < sets; i++)
            {
                var set = new InputSet(device, inputType, qShape, kShape, lseShape, backward);
                set.Q.Upload(pool, i * 7919L);
                set.K.Upload(pool, i * 7919L + 104729);
                set.V.Upload(pool, i * 7919L + 1299709);
                if (fp8) set.QuantizeFp8(options, stream, device);
                if (backward)
                {
                    set.DO!.Upload(pool, i * 7919L + 15485863);
                    CudaAttention.Forward(set.Q.Tensor, set.K.Tensor, set.V.Tensor, set.O.Tensor, set.Lse, options, stream);
                }
                inputs.Add(set);
            }
            stream.Synchronize();

            void Call(InputSet set)
            {
                if (fp8 && Fp8 != Fp8Timing.EndToEnd)
                {
                    var f = set.Fp8!;
                    if (Fp8 == Fp8Timing.Kernel) Fp8ForwardLauncher.Attend(f.Problem, f.Plan, f.Operands, set.O.Tensor.ToLayout("output"), set.Lse.ToLayout("logSumExp"), stream, device);
                    else f.Requantize(set, stream, device);
                }
                else if (!backward)
                    CudaAttention.Forward(set.Q.Tensor, set.K.Tensor, set.V.Tensor, set.O.Tensor, set.Lse, options, stream, device);
                else
                    CudaAttention.Backward(set.Q.Tensor, set.K.Tensor, set.V.Tensor, set.O.Tensor, set.DO!.Tensor, set.Lse,
                        set.DQ!.Tensor, set.DK!.Tensor, set.DV!.Tensor, options, stream);
            }

            return Measure(c, s, i => Call(inputs[i % sets]), stream, device, ct,
                bytesMoved: fp8 && Fp8 == Fp8Timing.Quantiser ? inputs[0].Fp8!.QuantiserBytes : null);
        }
        finally
        {
            foreach (var set in inputs) set.Dispose();
        }
    }

    /// <summary>
    /// Times <paramref name="call"/> (given the call's index, to rotate input sets): warm-up, then samples of calls queued
    /// back to back behind a lead call, or lone calls, as <see cref="BenchSettings.Timing"/> says.
    /// </summary>
    private static BenchMeasurement Measure(BenchCase c, BenchSettings s, Action<int> call, CudaStream stream, CudaDevice device, CancellationToken ct,
        double? bytesMoved = null)
    {
        int next = 0;
        for (int i = 0; i < s.Warmup; i++) call(next++);
        stream.Synchronize();
        using var start = new CudaEvent(device);
        using var end = new CudaEvent(device);

        // One lone call from an idle stream (host queueing included).
        double TimeLoneCall(out double hostMs)
        {
            int index = next++;
            start.Record(stream);
            long queued = Stopwatch.GetTimestamp();
            call(index);
            hostMs = Stopwatch.GetElapsedTime(queued).TotalMilliseconds;
            end.Record(stream);
            end.Synchronize();
            return CudaEvent.ElapsedMilliseconds(start, end);
        }

        int perSample = 1;
        if (s.Timing == BenchTiming.BackToBack)
        {
            // The batch size from the fastest of three lone calls (the same rule as bench/peers/sdpa_peers.py).
            double fastest = double.MaxValue;
            for (int i = 0; i < 3; i++) fastest = Math.Min(fastest, TimeLoneCall(out _));
            perSample = BenchSettings.CallsPerSample(fastest);
        }
        var times = new double[s.Repeats];
        var hostTimes = new double[s.Repeats];
        for (int i = 0; i < s.Repeats; i++)
        {
            ct.ThrowIfCancellationRequested();
            if (s.Timing == BenchTiming.PerCall)
            {
                times[i] = TimeLoneCall(out hostTimes[i]);
                continue;
            }
            // A lead call, untimed, keeps the GPU busy while the sample's calls are queued behind it: the events
            // then bracket GPU work only, as long as queueing a call takes less time than running one.
            call(next++);
            start.Record(stream);
            long queued = Stopwatch.GetTimestamp();
            for (int j = 0; j < perSample; j++) call(next++);
            hostTimes[i] = Stopwatch.GetElapsedTime(queued).TotalMilliseconds / perSample;
            end.Record(stream);
            end.Synchronize();
            times[i] = CudaEvent.ElapsedMilliseconds(start, end) / perSample;
        }
        return new BenchMeasurement(c, times, hostTimes, s.Timing, perSample, BytesMoved: bytesMoved);
    }

    /// <summary>
    /// A decode case: every sequence holds the cached tokens (its length on the device), the cache contiguous or in pages
    /// handed out in random order over the pool; each call attends with ForwardWithKvCache (appending first when the case
    /// says so, always at the same position). Sets of caches rotate through more than twice L2 (up to 8 sets: a decode
    /// step's cache would not sit in L2 between steps of a real model); bench/peers/sdpa_peers.py --decode does the same.
    /// </summary>
    private BenchMeasurement RunKvCache(BenchCase c, BenchSettings s, Action<string>? progress, CancellationToken ct)
    {
        var kv = c.KvCache!;
        var device = _device ??= CudaDevice.Get(0);
        int capacity = kv.CacheLength + kv.AppendLength;
        int maxPages = kv.PageSize > 0 ? (capacity + kv.PageSize - 1) / kv.PageSize : 0;
        long[] qShape = [c.Batch, c.SeqLenQ, c.HeadsQ, c.HeadDim], lseShape = [c.Batch, c.HeadsQ, c.SeqLenQ];
        long[] cacheShape = kv.PageSize > 0 ? [(long)c.Batch * maxPages, kv.PageSize, c.HeadsK, c.HeadDim] : [c.Batch, capacity, c.HeadsK, c.HeadDim];
        long[] newShape = [c.Batch, kv.AppendLength, c.HeadsK, c.HeadDim];
        long setBytes = 2 * Elements(cacheShape) * 2 + 2 * Elements(qShape) * 2;
        int sets = RotatingSets(device, setBytes, most: 8);

        var pool = Pool(c.Type, s.Seed);
        var rng = new Random(s.Seed);
        var inputs = new List<KvCacheSet>();
        using var stream = new CudaStream(device);
        var options = new AttentionOptions { Causal = c.Causal };
        try
        {
            progress?.Invoke($"{sets} cache set{(sets > 1 ? "s" : "")} of {setBytes / (1 << 20)} MiB");
            for (int i = 0; i < sets; i++)
            {
                var set = new KvCacheSet(device, c.Type, qShape, cacheShape, newShape, lseShape, c.Batch, maxPages);
                set.Q.Upload(pool, i * 7919L);
                set.K.Upload(pool, i * 7919L + 104729);
                set.V.Upload(pool, i * 7919L + 1299709);
                set.NewK?.Upload(pool, i * 7919L + 15485863);
                set.NewV?.Upload(pool, i * 7919L + 32452843);
                set.Lens.Upload(Enumerable.Repeat(kv.CacheLength, c.Batch).ToArray());
                // Pages in random order over the pool, as a serving loop's allocator leaves them after a while.
                set.PageTable?.Upload(Enumerable.Range(0, c.Batch * maxPages).OrderBy(_ => rng.Next()).ToArray());
                inputs.Add(set);
            }
            void Call(KvCacheSet set) => CudaAttention.ForwardWithKvCache(set.Q.Tensor, set.K.Tensor, set.V.Tensor, set.Lens, set.O.Tensor, set.Lse,
                options, set.NewK?.Tensor, set.NewV?.Tensor, set.PageTable is null ? null : (DeviceTensor)set.PageTable, maxCacheSeqLen: kv.CacheLength,
                stream: stream, device: device);
            // Once checked: the lengths and pages the timed calls use keep the contract.
            var first = inputs[0];
            CudaAttention.ForwardWithKvCache(first.Q.Tensor, first.K.Tensor, first.V.Tensor, first.Lens, first.O.Tensor, first.Lse, options,
                first.NewK?.Tensor, first.NewV?.Tensor, first.PageTable is null ? null : (DeviceTensor)first.PageTable, kv.CacheLength,
                checkDeviceInputs: true, stream: stream, device: device);
            return Measure(c, s, i => Call(inputs[i % sets]), stream, device, ct);
        }
        finally
        {
            foreach (var set in inputs) set.Dispose();
        }
    }

    /// <summary>
    /// A variable-length case: the sequences packed as (total, heads, d), one set of int32 offsets on the device (queries
    /// and keys alike), each call CudaAttention.ForwardVarlen or BackwardVarlen with the longest length. Input sets rotate
    /// through more than twice L2, as for dense cases; the first set's offsets are checked on the device once.
    /// </summary>
    private BenchMeasurement RunVarlen(BenchCase c, BenchSettings s, Action<string>? progress, CancellationToken ct)
    {
        var lens = c.SeqLens!;
        var device = _device ??= CudaDevice.Get(0);
        bool backward = c.Direction == BenchDirection.Backward;
        long total = c.TotalTokens;
        long[] qShape = [total, c.HeadsQ, c.HeadDim], kShape = [total, c.HeadsK, c.HeadDim], lseShape = [c.HeadsQ, total];
        long setBytes = AttentionSetBytes(qShape, kShape, backward);
        int sets = RotatingSets(device, setBytes, most: 4);

        var offsets = new int[lens.Count + 1];
        for (int i = 0; i < lens.Count; i++) offsets[i + 1] = checked(offsets[i] + lens[i]);
        var pool = Pool(c.Type, s.Seed);
        var inputs = new List<InputSet>();
        using var stream = new CudaStream(device);
        using var cuSeqLens = CudaTensor<int>.FromHost(offsets, [offsets.Length], device);
        DeviceTensor cu = cuSeqLens;
        var options = new AttentionOptions { Causal = c.Causal, Deterministic = Deterministic };
        try
        {
            progress?.Invoke($"{sets} input set{(sets > 1 ? "s" : "")} of {setBytes / (1 << 20)} MiB");
            for (int i = 0; i < sets; i++)
            {
                var set = new InputSet(device, c.Type, qShape, kShape, lseShape, backward);
                set.Q.Upload(pool, i * 7919L);
                set.K.Upload(pool, i * 7919L + 104729);
                set.V.Upload(pool, i * 7919L + 1299709);
                // Once per set, untimed: the offsets checked on the device, and (backward) O and LSE to differentiate.
                CudaAttention.ForwardVarlen(set.Q.Tensor, set.K.Tensor, set.V.Tensor, cu, cu, c.SeqLenQ, c.SeqLenK, set.O.Tensor, set.Lse,
                    options, checkDeviceInputs: i == 0, stream: stream, device: device);
                if (backward) set.DO!.Upload(pool, i * 7919L + 15485863);
                inputs.Add(set);
            }
            stream.Synchronize();

            void Call(InputSet set)
            {
                if (!backward)
                    CudaAttention.ForwardVarlen(set.Q.Tensor, set.K.Tensor, set.V.Tensor, cu, cu, c.SeqLenQ, c.SeqLenK, set.O.Tensor, set.Lse,
                        options, stream: stream, device: device);
                else
                    CudaAttention.BackwardVarlen(set.Q.Tensor, set.K.Tensor, set.V.Tensor, set.O.Tensor, set.DO!.Tensor, set.Lse, cu, cu,
                        c.SeqLenQ, c.SeqLenK, set.DQ!.Tensor, set.DK!.Tensor, set.DV!.Tensor, options, stream: stream, device: device);
            }
            return Measure(c, s, i => Call(inputs[i % sets]), stream, device, ct);
        }
        finally
        {
            foreach (var set in inputs) set.Dispose();
        }
    }

    private static long Elements(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    // q, k, v and o, and dO for the backward, in 2-byte elements.
    private static long AttentionSetBytes(long[] qShape, long[] kShape, bool backward)
    {
        long qBytes = Elements(qShape) * 2, kBytes = Elements(kShape) * 2;
        return 2 * qBytes + 2 * kBytes + (backward ? qBytes : 0);
    }

    /// <summary>
    /// How many sets of <paramref name="setBytes"/> to rotate through so that together they exceed twice the L2 cache
    /// (no call finds its inputs in L2): at most <paramref name="most"/>, and no more than half the free memory holds.
    /// </summary>
    private static int RotatingSets(CudaDevice device, long setBytes, int most)
    {
        long rotate = 2L * Math.Max(device.L2CacheBytes, 50 << 20);
        var (free, _) = device.GetMemoryInfo();
        int sets = (int)Math.Clamp((rotate + setBytes - 1) / setBytes, 1, most);
        while (sets > 1 && sets * setBytes > free / 2) sets--;
        return sets;
    }

    // One pool of random 16-bit values per type (2^26 elements, 128 MiB), generated once; tensors upload slices of it
    // starting at different offsets, so every tensor holds fresh-looking normal values without regenerating per case.
    private ushort[] Pool(DataType type, int seed)
    {
        if (_pools.TryGetValue(type, out var pool)) return pool;
        var values = new float[1 << 26];
        RandomTensors.FillNormal(values, seed);
        pool = new ushort[values.Length];
        Parallel.For(0, values.Length / 4096, chunk =>
        {
            for (int i = chunk * 4096; i < (chunk + 1) * 4096; i++)
                pool[i] = type == DataType.BFloat16 ? BFloat16.RoundToBits(values[i]) : BitConverter.HalfToUInt16Bits((Half)values[i]);
        });
        return _pools[type] = pool;
    }

    private sealed class DeviceArray(CudaDevice device, DataType type, long[] shape) : IDisposable
    {
        public readonly DeviceBuffer Buffer = new(shape.Aggregate(1L, (a, b) => a * b) * DataTypes.SizeOf(type), device);
        public DeviceTensor Tensor => DeviceTensor.Contiguous(Buffer.Pointer, type, shape);

        /// <summary>Fills the tensor from the pool, wrapping around, starting at <paramref name="offset"/>.</summary>
        public void Upload(ushort[] pool, long offset)
        {
            long count = Buffer.ByteCount / 2, done = 0;
            int start = (int)(offset % pool.Length);
            while (done < count)
            {
                int n = (int)Math.Min(count - done, pool.Length - start);
                Buffer.CopyFrom<ushort>(pool.AsSpan(start, n), done * 2);
                done += n;
                start = 0;
            }
        }

        public void Dispose() => Buffer.Dispose();
    }

    private sealed class InputSet : IDisposable
    {
        public readonly DeviceArray Q, K, V, O;
        public readonly DeviceArray? DO, DQ, DK, DV;
        private readonly DeviceBuffer _lse;
        private readonly long[] _lseShape;

        public InputSet(CudaDevice device, DataType type, long[] qShape, long[] kShape, long[] lseShape, bool backward)
        {
            Q = new(device, type, qShape);
            K = new(device, type, kShape);
            V = new(device, type, kShape);
            O = new(device, type, qShape);
            _lseShape = lseShape;
            _lse = new DeviceBuffer(lseShape.Aggregate(1L, (a, b) => a * b) * 4, device);
            if (backward)
            {
                DO = new(device, type, qShape);
                DQ = new(device, type, qShape);
                DK = new(device, type, kShape);
                DV = new(device, type, kShape);
            }
        }

        public DeviceTensor Lse => DeviceTensor.Contiguous(_lse.Pointer, DataType.Float32, _lseShape);

        /// <summary>The FP8 operands of this set, quantised once (the kernel-alone and quantiser timings).</summary>
        public Fp8Operands? Fp8 { get; private set; }

        public void QuantizeFp8(AttentionOptions options, CudaStream stream, CudaDevice device)
        {
            var (q, k, v) = (Q.Tensor.ToLayout("query"), K.Tensor.ToLayout("key"), V.Tensor.ToLayout("value"));
            var problem = AttentionValidation.Forward(q, k, v, O.Tensor.ToLayout("output"), Lse.ToLayout("logSumExp"), options);
            var plan = new Fp8ForwardLauncher.Plan(problem);
            var buffer = new DeviceBuffer(Fp8ForwardLauncher.Workspace.Bytes(plan), device);
            Fp8 = new Fp8Operands(buffer, problem, plan, Fp8ForwardLauncher.Workspace.Layout(buffer.Pointer, plan));
            Fp8.Requantize(this, stream, device);
        }

        public void Dispose()
        {
            foreach (var a in new[] { Q, K, V, O, DO, DQ, DK, DV }) a?.Dispose();
            _lse.Dispose();
            Fp8?.Buffer.Dispose();
        }
    }

    private sealed record Fp8Operands(DeviceBuffer Buffer, AttentionProblem Problem, Fp8ForwardLauncher.Plan Plan, Fp8ForwardLauncher.Operands Operands)
    {
        public void Requantize(InputSet set, CudaStream stream, CudaDevice device)
            => Fp8ForwardLauncher.Quantize(Problem, Plan, Operands, set.Q.Tensor.ToLayout("query"), set.K.Tensor.ToLayout("key"),
                set.V.Tensor.ToLayout("value"), incoherent: true, hadamardSeed: 0, stream, device);

        /// <summary>What the quantiser reads and writes: bf16 Q, K, V in, E4M3 codes and float32 descales out.</summary>
        public double QuantiserBytes
        {
            get
            {
                var p = Problem;
                double q = (double)p.Batch * p.SeqLenQ * p.HeadsQ * p.HeadDim, kv = (double)p.Batch * p.SeqLenK * p.HeadsK * p.HeadDim;
                double descales = 4.0 * p.Batch * (p.HeadsQ * Plan.QBlocks + 2.0 * p.HeadsK * Plan.KvBlocks);
                return 2 * (q + 2 * kv) + (q + 2 * kv) + descales;
            }
        }
    }

    public void Dispose() { }

    private sealed class KvCacheSet : IDisposable
    {
        public readonly DeviceArray Q, K, V, O;
        public readonly DeviceArray? NewK, NewV;
        public readonly CudaTensor<int> Lens;
        public readonly CudaTensor<int>? PageTable;
        private readonly DeviceBuffer _lse;
        private readonly long[] _lseShape;

        public KvCacheSet(CudaDevice device, DataType type, long[] qShape, long[] cacheShape, long[] newShape, long[] lseShape, int batch, int maxPages)
        {
            Q = new(device, type, qShape);
            K = new(device, type, cacheShape);
            V = new(device, type, cacheShape);
            O = new(device, type, qShape);
            if (newShape[1] > 0)
            {
                NewK = new(device, type, newShape);
                NewV = new(device, type, newShape);
            }
            Lens = new CudaTensor<int>(device, null, batch);
            if (maxPages > 0) PageTable = new CudaTensor<int>(device, null, batch, maxPages);
            _lseShape = lseShape;
            _lse = new DeviceBuffer(lseShape.Aggregate(1L, (a, b) => a * b) * 4, device);
        }

        public DeviceTensor Lse => DeviceTensor.Contiguous(_lse.Pointer, DataType.Float32, _lseShape);

        public void Dispose()
        {
            foreach (var a in new[] { Q, K, V, O, NewK, NewV }) a?.Dispose();
            Lens.Dispose();
            PageTable?.Dispose();
            _lse.Dispose();
        }
    }
}
