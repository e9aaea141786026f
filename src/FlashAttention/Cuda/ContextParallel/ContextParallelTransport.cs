namespace FlashAttention.Cuda.ContextParallel;

/// <summary>One local rank's part of a collective: its buffers, on its communication stream.</summary>
/// <param name="Rank">The rank.</param>
/// <param name="Send">Device address sent (ring: to rank + 1; gather: this rank's block; reduce-scatter: N blocks).</param>
/// <param name="Receive">Device address received into (ring: from rank − 1; gather: N blocks; reduce-scatter: one block).</param>
/// <param name="Bytes">Ring: bytes sent and received; gather: one block's bytes; reduce-scatter: one block's bytes (float32).</param>
/// <param name="Stream">The rank's communication stream.</param>
internal readonly record struct TransferPart(int Rank, nint Send, nint Receive, long Bytes, CudaStream Stream);

/// <summary>
/// How the ranks of context parallelism exchange data: NCCL (<see cref="NcclTransport"/>), or device copies between
/// virtual ranks on one GPU (<see cref="SimulatedTransport"/>), so the whole schedule is checked where one GPU is all
/// there is. Every call covers all ranks this process drives, in one NCCL group.
/// </summary>
internal interface IContextParallelTransport
{
    int Size { get; }
    /// <summary>The ring step: each rank sends to rank + 1 and receives from rank − 1 (the byte counts may differ per rank).</summary>
    void RingExchange(IReadOnlyList<TransferPart> parts, IReadOnlyList<long> receiveBytes);
    /// <summary>All-gather of equal blocks, rank-major.</summary>
    void AllGather(IReadOnlyList<TransferPart> parts);
    /// <summary>Reduce-scatter (sum) of float32 blocks: rank r receives the sum of every rank's block r.</summary>
    void ReduceScatterSum(IReadOnlyList<TransferPart> parts);
}

/// <summary>The ranks of NCCL communicators this process drives (all of one group).</summary>
internal sealed unsafe class NcclTransport(IReadOnlyList<NcclCommunicator> communicators) : IContextParallelTransport
{
    private readonly Dictionary<int, NcclCommunicator> _byRank = communicators.ToDictionary(c => c.Rank);

    public int Size => communicators[0].Size;

    public void RingExchange(IReadOnlyList<TransferPart> parts, IReadOnlyList<long> receiveBytes)
        => Group("ring exchange", parts, (api, p, i) =>
        {
            var comm = _byRank[p.Rank];
            api.Check(api.ncclSend(p.Send, (nuint)p.Bytes, NcclApi.Uint8, (p.Rank + 1) % Size, comm.Handle, p.Stream.Handle), nameof(api.ncclSend), $"rank {p.Rank}", comm.Handle);
            api.Check(api.ncclRecv(p.Receive, (nuint)receiveBytes[i], NcclApi.Uint8, (p.Rank + Size - 1) % Size, comm.Handle, p.Stream.Handle), nameof(api.ncclRecv), $"rank {p.Rank}", comm.Handle);
        });

    public void AllGather(IReadOnlyList<TransferPart> parts)
        => Group("all-gather", parts, (api, p, _) =>
        {
            var comm = _byRank[p.Rank];
            api.Check(api.ncclAllGather(p.Send, p.Receive, (nuint)p.Bytes, NcclApi.Uint8, comm.Handle, p.Stream.Handle), nameof(api.ncclAllGather), $"rank {p.Rank}", comm.Handle);
        });

    public void ReduceScatterSum(IReadOnlyList<TransferPart> parts)
        => Group("reduce-scatter", parts, (api, p, _) =>
        {
            var comm = _byRank[p.Rank];
            api.Check(api.ncclReduceScatter(p.Send, p.Receive, (nuint)(p.Bytes / sizeof(float)), NcclApi.Float32, NcclApi.Sum, comm.Handle, p.Stream.Handle),
                nameof(api.ncclReduceScatter), $"rank {p.Rank}", comm.Handle);
        });

    // One thread driving several ranks must put their calls in one group, or the first blocking call waits forever.
    private static void Group(string what, IReadOnlyList<TransferPart> parts, Action<NcclApi, TransferPart, int> call)
    {
        var api = NcclApi.Instance;
        api.Check(api.ncclGroupStart(), nameof(api.ncclGroupStart), what);
        try
        {
            for (int i = 0; i < parts.Count; i++)
            {
                parts[i].Stream.Device.Context.MakeCurrent();
                call(api, parts[i], i);
            }
        }
        finally
        {
            api.Check(api.ncclGroupEnd(), nameof(api.ncclGroupEnd), what);
        }
    }
}

/// <summary>
/// N virtual ranks on one GPU: the same schedule, with device copies in place of NCCL. All ranks share one
/// communication stream (<see cref="ContextParallelGroup"/> gives it to each), so every rank's waits precede the copies.
/// </summary>
internal sealed unsafe class SimulatedTransport(int size) : IContextParallelTransport
{
    public int Size => size;

    public void RingExchange(IReadOnlyList<TransferPart> parts, IReadOnlyList<long> receiveBytes)
    {
        var byRank = parts.ToDictionary(p => p.Rank);
        for (int i = 0; i < parts.Count; i++)
        {
            var p = parts[i];
            var from = byRank[(p.Rank + size - 1) % size];
            if (from.Bytes != receiveBytes[i])
                throw new InvalidOperationException($"rank {from.Rank} sends {from.Bytes} bytes; rank {p.Rank} expects {receiveBytes[i]}");
            Copy(p.Stream, p.Receive, from.Send, from.Bytes);
        }
    }

    public void AllGather(IReadOnlyList<TransferPart> parts)
    {
        foreach (var to in parts)
            foreach (var from in parts)
                Copy(to.Stream, to.Receive + (nint)(from.Rank * from.Bytes), from.Send, from.Bytes);
    }

    public void ReduceScatterSum(IReadOnlyList<TransferPart> parts)
    {
        foreach (var to in parts)
        {
            var first = parts.Single(p => p.Rank == 0);
            Copy(to.Stream, to.Receive, first.Send + (nint)(to.Rank * to.Bytes), to.Bytes);
            var block = FloatBlock(to.Receive, to.Bytes);
            foreach (var from in parts.Where(p => p.Rank != 0))
                ContextParallelKernels.Add(FloatBlock(from.Send + (nint)(to.Rank * to.Bytes), to.Bytes), block, to.Stream);
        }
    }

    // A float32 block seen as rows of 64 values (every block is a multiple of 64 floats: head dims are 64, 128 or 256).
    private static RowBlock FloatBlock(nint pointer, long bytes)
        => new(pointer, DataType.Float32, 1, checked((int)(bytes / sizeof(float) / 64)), 1, 64, 0, 64, 64);

    private static void Copy(CudaStream stream, nint to, nint from, long bytes)
    {
        if (bytes == 0) return;
        var api = stream.Device.Context.MakeCurrent();
        api.Check(api.cuMemcpyDtoDAsync_v2((ulong)to, (ulong)from, (nuint)bytes, stream.Handle), nameof(api.cuMemcpyDtoDAsync_v2), $"({bytes} bytes, simulated transfer)");
    }
}
