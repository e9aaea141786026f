using System.Diagnostics;
using System.Numerics.Tensors;
using FlashAttention.Cli.Info;
using FlashAttention.Cli.Terminal;
using FlashAttention.Numerics;

namespace FlashAttention.Cli.Bench;

/// <summary>
/// Times the library's CPU engine (<see cref="Attention.Forward{T}(ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, TensorSpan{T}, TensorSpan{float}, AttentionOptions?)"/>
/// and <see cref="Attention.Backward{T}"/>) with a stopwatch around each call, on dense (batch, seqlen, heads, head_dim)
/// tensors of fresh standard-normal values. Several input sets are rotated so that consecutive calls do not find their
/// inputs in cache (up to <see cref="RotationBytes"/> in all).
/// </summary>
public sealed class CpuBenchBackend : IBenchBackend
{
    /// <summary>Input bytes to rotate through (more than the last-level cache of common CPUs).</summary>
    public const long RotationBytes = 96L << 20;

    /// <summary>How long one FMA peak measurement runs (bench measures before and after the cases and keeps the larger).</summary>
    public static TimeSpan PeakDuration { get; set; } = TimeSpan.FromSeconds(0.8);

    public string Device => "cpu";
    public string Implementation => "flashattn";
    public DataType DefaultType => DataType.Float32;
    public int DefaultWarmup => 1;
    public int DefaultRepeats => 5;

    public bool IsAvailable(out string reason)
    {
        reason = "";
        return true;
    }

    public bool Supports(BenchCase benchCase, out string reason)
    {
        reason = "";
        if (benchCase.KvCache is not null)
        {
            reason = "the KV-cache cases time the GPU's CudaAttention.ForwardWithKvCache (--device cuda)";
            return false;
        }
        if (benchCase.Type is DataType.Float32 or DataType.Float16 or DataType.BFloat16) return true;
        reason = $"the CPU engine takes fp32, fp16 or bf16; got {DataTypes.ShortName(benchCase.Type)}";
        return false;
    }

    public BenchDeviceInfo DescribeDevice(double? knownPeakGflops) => new()
    {
        Device = Device,
        Name = MachineInfo.CpuModel,
        CpuCores = MachineInfo.LogicalCores,
        PeakGflops = knownPeakGflops ?? FmaPeak.Measure(PeakDuration).GflopsPerSecond,
    };

    public BenchMeasurement Run(BenchCase benchCase, BenchSettings settings, Action<string>? progress, CancellationToken cancellationToken)
        => benchCase.Type switch
        {
            DataType.Float32 => Run<float>(benchCase, settings, progress, cancellationToken),
            DataType.Float16 => Run<Half>(benchCase, settings, progress, cancellationToken),
            DataType.BFloat16 => Run<BFloat16>(benchCase, settings, progress, cancellationToken),
            _ => throw new CliException($"--dtype {DataTypes.ShortName(benchCase.Type)}: the CPU engine takes fp32, fp16 or bf16"),
        };

    private sealed class InputSet<T>(long qElements, long kElements, long lseElements, bool backward)
    {
        public readonly T[] Q = new T[qElements], K = new T[kElements], V = new T[kElements];
        public readonly T[]? O = backward ? new T[qElements] : null, DO = backward ? new T[qElements] : null;
        public readonly float[]? Lse = backward ? new float[lseElements] : null;
    }

    private static BenchMeasurement Run<T>(BenchCase c, BenchSettings s, Action<string>? progress, CancellationToken ct) where T : unmanaged
    {
        bool backward = c.Direction == BenchDirection.Backward;
        long qElements = (long)c.Batch * c.SeqLenQ * c.HeadsQ * c.HeadDim;
        long kElements = (long)c.Batch * c.SeqLenK * c.HeadsK * c.HeadDim;
        long lseElements = (long)c.Batch * c.HeadsQ * c.SeqLenQ;
        if (Math.Max(qElements, kElements) > Array.MaxLength)
            throw new CliException($"{c.Shape}: a tensor of {Math.Max(qElements, kElements)} elements is more than one .NET array holds ({Array.MaxLength})");
        int size = DataTypes.SizeOf(c.Type);
        long setBytes = (qElements * (backward ? 3 : 1) + 2 * kElements) * size + (backward ? lseElements * 4 : 0);
        int sets = (int)Math.Clamp((RotationBytes + setBytes - 1) / setBytes, 1, 4);
        long outputBytes = (qElements * size + lseElements * 4) + (backward ? (qElements + 2 * kElements) * size : 0);
        long needed = sets * setBytes + outputBytes;
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (needed > available * 0.8)
        {
            sets = 1;
            needed = setBytes + outputBytes;
            if (needed > available * 0.8)
                throw new CliException($"{c.Shape}: needs {needed / (1 << 20)} MiB of memory; this machine has {available / (1 << 20)} MiB");
        }

        var options = new AttentionOptions { Causal = c.Causal };
        nint[] qShape = [c.Batch, c.SeqLenQ, c.HeadsQ, c.HeadDim], kShape = [c.Batch, c.SeqLenK, c.HeadsK, c.HeadDim], lseShape = [c.Batch, c.HeadsQ, c.SeqLenQ];
        var output = new T[qElements];
        var lse = new float[lseElements];
        T[]? dq = backward ? new T[qElements] : null, dk = backward ? new T[kElements] : null, dv = backward ? new T[kElements] : null;

        progress?.Invoke($"preparing {sets} input set{(sets > 1 ? "s" : "")} of random values");
        var inputs = new InputSet<T>[sets];
        for (int i = 0; i < sets; i++)
        {
            ct.ThrowIfCancellationRequested();
            var set = inputs[i] = new InputSet<T>(qElements, kElements, lseElements, backward);
            int seed = HashCode.Combine(s.Seed, i);
            RandomTensors.FillNormal(set.Q, seed * 4 + 0);
            RandomTensors.FillNormal(set.K, seed * 4 + 1);
            RandomTensors.FillNormal(set.V, seed * 4 + 2);
            if (backward)
            {
                RandomTensors.FillNormal(set.DO!, seed * 4 + 3);
                Attention.Forward<T>(new ReadOnlyTensorSpan<T>(set.Q, qShape), new ReadOnlyTensorSpan<T>(set.K, kShape),
                    new ReadOnlyTensorSpan<T>(set.V, kShape), new TensorSpan<T>(set.O!, qShape), new TensorSpan<float>(set.Lse!, lseShape), options);
            }
        }

        void Call(InputSet<T> set)
        {
            if (!backward)
                Attention.Forward<T>(new ReadOnlyTensorSpan<T>(set.Q, qShape), new ReadOnlyTensorSpan<T>(set.K, kShape),
                    new ReadOnlyTensorSpan<T>(set.V, kShape), new TensorSpan<T>(output, qShape), new TensorSpan<float>(lse, lseShape), options);
            else
                Attention.Backward<T>(new ReadOnlyTensorSpan<T>(set.Q, qShape), new ReadOnlyTensorSpan<T>(set.K, kShape),
                    new ReadOnlyTensorSpan<T>(set.V, kShape), new ReadOnlyTensorSpan<T>(set.O!, qShape), new ReadOnlyTensorSpan<T>(set.DO!, qShape),
                    new ReadOnlyTensorSpan<float>(set.Lse!, lseShape), new TensorSpan<T>(dq!, qShape), new TensorSpan<T>(dk!, kShape),
                    new TensorSpan<T>(dv!, kShape), options);
        }

        progress?.Invoke($"{s.Warmup} warm-up call{(s.Warmup == 1 ? "" : "s")}, then {s.Repeats} timed");
        int call = 0;
        for (int i = 0; i < s.Warmup; i++)
        {
            ct.ThrowIfCancellationRequested();
            Call(inputs[call++ % sets]);
        }
        var times = new double[s.Repeats];
        var stopwatch = new Stopwatch();
        for (int i = 0; i < s.Repeats; i++)
        {
            ct.ThrowIfCancellationRequested();
            var set = inputs[call++ % sets];
            stopwatch.Restart();
            Call(set);
            times[i] = stopwatch.Elapsed.TotalMilliseconds;
        }
        return new BenchMeasurement(c, times);
    }
}
