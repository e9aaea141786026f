namespace FlashAttention.Cuda.ContextParallel;

/// <summary>
/// The ranks of context parallelism this process drives, and what the library keeps for each: a communication stream
/// (K/V and gradient transfers overlap the compute on the caller's stream), ordering events and scratch memory, reused
/// from call to call. Made from NCCL communicators (all GPUs of this process with <see cref="NcclCommunicator.CreateAll"/>,
/// or this process's one rank); the communicators stay the caller's. Calls on one group must not overlap.
/// </summary>
public sealed class ContextParallelGroup : IDisposable
{
    private readonly Dictionary<int, RankState> _ranks;
    private readonly CudaStream? _sharedStream;

    private ContextParallelGroup(IContextParallelTransport transport, IReadOnlyList<(int Rank, CudaDevice Device)> ranks, bool simulated)
    {
        Transport = transport;
        IsSimulated = simulated;
        if (simulated) _sharedStream = new CudaStream(ranks[0].Device);
        _ranks = ranks.ToDictionary(r => r.Rank, r => new RankState(r.Rank, r.Device, _sharedStream));
    }

    /// <summary>The ranks of <paramref name="communicators"/> (one group, each rank at most once) as one context-parallel group.</summary>
    public static ContextParallelGroup Create(IReadOnlyList<NcclCommunicator> communicators)
    {
        ArgumentNullException.ThrowIfNull(communicators);
        if (communicators.Count == 0) throw new AttentionArgumentException(nameof(communicators), "communicators: at least one is needed");
        int size = communicators[0].Size;
        if (communicators.Any(c => c.Size != size) || communicators.Select(c => c.Rank).Distinct().Count() != communicators.Count)
            throw new AttentionArgumentException(nameof(communicators), $"communicators: expected distinct ranks of one group; got {string.Join(", ", communicators)}");
        return new ContextParallelGroup(new NcclTransport(communicators), communicators.Select(c => (c.Rank, c.Device)).ToArray(), simulated: false);
    }

    /// <summary><paramref name="ranks"/> virtual ranks on one GPU, exchanging by device copies: the schedule checked without NCCL.</summary>
    internal static ContextParallelGroup Simulated(CudaDevice device, int ranks)
    {
        if (ranks < 1) throw new AttentionArgumentException(nameof(ranks), $"ranks: expected at least 1; got {ranks}");
        return new ContextParallelGroup(new SimulatedTransport(ranks), Enumerable.Range(0, ranks).Select(r => (r, device)).ToArray(), simulated: true);
    }

    internal IContextParallelTransport Transport { get; }

    /// <summary>True for virtual ranks on one GPU.</summary>
    internal bool IsSimulated { get; }

    /// <summary>Number of ranks in the whole group (across processes).</summary>
    public int Size => Transport.Size;

    /// <summary>The ranks this process drives.</summary>
    public IReadOnlyList<int> LocalRanks => _ranks.Keys.Order().ToArray();

    /// <summary>The GPU of local rank <paramref name="rank"/>.</summary>
    public CudaDevice DeviceOf(int rank) => State(rank).Device;

    internal RankState State(int rank) => _ranks.TryGetValue(rank, out var s) ? s
        : throw new AttentionArgumentException(nameof(rank), $"rank: this process drives ranks {string.Join(", ", LocalRanks)}; got {rank}");

    /// <summary>Frees the scratch memory, events and streams (after waiting for their work).</summary>
    public void Dispose()
    {
        foreach (var s in _ranks.Values) s.Dispose();
        _sharedStream?.Dispose();
    }
}

/// <summary>One local rank's stream, events and scratch.</summary>
internal sealed class RankState : IDisposable
{
    private readonly Dictionary<string, DeviceBuffer> _scratch = new(StringComparer.Ordinal);
    private readonly CudaStream? _ownStream;

    public RankState(int rank, CudaDevice device, CudaStream? sharedStream)
    {
        Rank = rank;
        Device = device;
        _ownStream = sharedStream is null ? new CudaStream(device) : null;
        CommStream = sharedStream ?? _ownStream!;
        InputsReady = new CudaEvent(device, timing: false);
        KvArrived = new CudaEvent(device, timing: false);
        ComputeDone = new CudaEvent(device, timing: false);
        GradientsArrived = new CudaEvent(device, timing: false);
        GradientsAdded = new CudaEvent(device, timing: false);
        CommDone = new CudaEvent(device, timing: false);
    }

    public int Rank { get; }
    public CudaDevice Device { get; }
    public CudaStream CommStream { get; }
    /// <summary>Recorded on the compute stream when the inputs (and packed send buffers) are ready.</summary>
    public CudaEvent InputsReady { get; }
    /// <summary>Recorded on the communication stream when the next step's K/V has arrived.</summary>
    public CudaEvent KvArrived { get; }
    /// <summary>Recorded on the compute stream when a step stops reading its K/V buffer.</summary>
    public CudaEvent ComputeDone { get; }
    /// <summary>Recorded on the communication stream when the travelling dK/dV accumulator has arrived.</summary>
    public CudaEvent GradientsArrived { get; }
    /// <summary>Recorded on the compute stream when a step has added into the travelling dK/dV accumulator.</summary>
    public CudaEvent GradientsAdded { get; }
    /// <summary>Recorded on the communication stream after the call's last transfer.</summary>
    public CudaEvent CommDone { get; }

    /// <summary>A scratch buffer of at least <paramref name="bytes"/>, kept for later calls (grown when too small).</summary>
    public nint Scratch(string name, long bytes)
    {
        bytes = Math.Max(bytes, 256);
        if (_scratch.TryGetValue(name, out var b) && b.ByteCount >= bytes) return b.Pointer;
        if (b is not null)
        {
            Device.Synchronize();  // the old buffer may still be in use by queued work
            b.Dispose();
        }
        var fresh = new DeviceBuffer(bytes, Device);
        _scratch[name] = fresh;
        return fresh.Pointer;
    }

    public void Dispose()
    {
        if (_scratch.Count > 0) Device.Synchronize();
        foreach (var b in _scratch.Values) b.Dispose();
        _scratch.Clear();
        foreach (var e in new[] { InputsReady, KvArrived, ComputeDone, GradientsArrived, GradientsAdded, CommDone }) e.Dispose();
        _ownStream?.Dispose();
    }
}
