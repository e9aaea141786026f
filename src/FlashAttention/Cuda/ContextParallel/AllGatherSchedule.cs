namespace FlashAttention.Cuda.ContextParallel;

/// <summary>
/// All-gather: every rank gathers all K/V shards (padded to the longest shard, rank-major, as NCCL's all-gather
/// concatenates them), puts the chunks back in sequence order, and attends with each local query chunk against the
/// keys it may see: under the causal mask the chunk [a, b) against keys [0, b), which bottom-right alignment makes
/// exact (its row i sits at position a + i), so no merge is needed. The backward sums dK/dV of both chunks in float32
/// in sequence order, lays them out rank-major and reduce-scatters them, so each rank receives its shard's sum.
/// </summary>
internal static class AllGatherSchedule
{
    public static void Forward(ContextParallelRun run)
    {
        var gathered = Gather(run);
        for (int i = 0; i < run.Ranks.Count; i++)
        {
            var w = run.Ranks[i];
            var (k, v) = gathered[i];
            foreach (var (chunk, local) in LocalChunks(run, w.Rank))
            {
                var keys = RingPlan.GatheredKeys(chunk, run.SeqLen, run.Causal);
                var s = w.Shard;
                CudaAttention.Forward(Views.Rows(s.Query, local), Views.Rows(k, keys), Views.Rows(v, keys), Views.Rows(s.Output, local),
                    Views.LseRows(s.LogSumExp, local), run.Options, w.Stream);
            }
        }
    }

    public static void Backward(ContextParallelRun run)
    {
        var gathered = Gather(run);
        int lmax = run.MaxShardLength;
        long blockBytes = 2 * run.Bytes(lmax, run.HeadsK, sizeof(float));
        var parts = new List<TransferPart>();
        for (int i = 0; i < run.Ranks.Count; i++)
        {
            var w = run.Ranks[i];
            var st = w.State;
            var s = w.Shard;
            var g = w.Gradients!;
            var (k, v) = gathered[i];
            var dkAcc = run.Dense(st.Scratch("ag-dk", run.Bytes(run.SeqLen, run.HeadsK, sizeof(float))), run.SeqLen, run.HeadsK, DataType.Float32);
            var dvAcc = run.Dense(st.Scratch("ag-dv", run.Bytes(run.SeqLen, run.HeadsK, sizeof(float))), run.SeqLen, run.HeadsK, DataType.Float32);
            Zero(dkAcc, w.Stream);
            Zero(dvAcc, w.Stream);
            var dkPart = st.Scratch("ag-dk-part", run.Bytes(run.SeqLen, run.HeadsK, run.ElementSize));
            var dvPart = st.Scratch("ag-dv-part", run.Bytes(run.SeqLen, run.HeadsK, run.ElementSize));
            foreach (var (chunk, local) in LocalChunks(run, w.Rank))
            {
                var keys = RingPlan.GatheredKeys(chunk, run.SeqLen, run.Causal);
                var dk = run.Dense(dkPart, keys.Length, run.HeadsK);
                var dv = run.Dense(dvPart, keys.Length, run.HeadsK);
                CudaAttention.Backward(Views.Rows(s.Query, local), Views.Rows(k, keys), Views.Rows(v, keys), Views.Rows(s.Output, local),
                    Views.Rows(g.OutputGradient, local), Views.LseRows(s.LogSumExp, local), Views.Rows(g.QueryGradient, local), dk, dv, run.Options, w.Stream);
                ContextParallelKernels.Add(RowBlock.Of(dk), RowBlock.Of(Views.Rows(dkAcc, keys)), w.Stream);
                ContextParallelKernels.Add(RowBlock.Of(dv), RowBlock.Of(Views.Rows(dvAcc, keys)), w.Stream);
            }
            // Sequence order → rank-major blocks (dK then dV of each rank's shard, padded), as reduce-scatter hands them out.
            nint send = st.Scratch("ag-rs-send", run.Size * blockBytes);
            for (int source = 0; source < run.Size; source++)
            {
                var (dkBlock, dvBlock) = Block(run, send + (nint)(source * blockBytes), lmax, DataType.Float32);
                foreach (var (chunk, shardRows) in ShardChunks(run, source))
                {
                    ContextParallelKernels.Copy(RowBlock.Of(Views.Rows(dkAcc, chunk)), RowBlock.Of(Views.Rows(dkBlock, shardRows)), w.Stream);
                    ContextParallelKernels.Copy(RowBlock.Of(Views.Rows(dvAcc, chunk)), RowBlock.Of(Views.Rows(dvBlock, shardRows)), w.Stream);
                }
            }
            st.ComputeDone.Record(w.Stream);
            st.ComputeDone.MakeWait(st.CommStream);
            parts.Add(new TransferPart(w.Rank, send, st.Scratch("ag-rs-receive", blockBytes), blockBytes, st.CommStream));
        }
        run.Group.Transport.ReduceScatterSum(parts);
        for (int i = 0; i < run.Ranks.Count; i++)
        {
            var w = run.Ranks[i];
            w.State.CommDone.Record(w.State.CommStream);
            w.State.CommDone.MakeWait(w.Stream);
            int l = run.ShardLength(w.Rank);
            var (dk, dv) = Block(run, parts[i].Receive, lmax, DataType.Float32);
            ContextParallelKernels.Copy(RowBlock.Of(Views.Rows(dk, new SequenceRange(0, l))), RowBlock.Of(w.Gradients!.KeyGradient), w.Stream);
            ContextParallelKernels.Copy(RowBlock.Of(Views.Rows(dv, new SequenceRange(0, l))), RowBlock.Of(w.Gradients!.ValueGradient), w.Stream);
        }
    }

    /// <summary>Every local rank's K and V of the whole sequence, in sequence order, on its compute stream when it returns.</summary>
    private static (DeviceTensor K, DeviceTensor V)[] Gather(ContextParallelRun run)
    {
        int lmax = run.MaxShardLength;
        long blockBytes = 2 * run.Bytes(lmax, run.HeadsK, run.ElementSize);
        var parts = new List<TransferPart>();
        foreach (var w in run.Ranks)
        {
            nint send = w.State.Scratch("ag-send", blockBytes);
            var (k, v) = Block(run, send, lmax, run.Type);
            var rows = new SequenceRange(0, run.ShardLength(w.Rank));
            ContextParallelKernels.Copy(RowBlock.Of(w.Shard.Key), RowBlock.Of(Views.Rows(k, rows)), w.Stream);
            ContextParallelKernels.Copy(RowBlock.Of(w.Shard.Value), RowBlock.Of(Views.Rows(v, rows)), w.Stream);
            w.State.InputsReady.Record(w.Stream);
            w.State.InputsReady.MakeWait(w.State.CommStream);
            parts.Add(new TransferPart(w.Rank, send, w.State.Scratch("ag-receive", run.Size * blockBytes), blockBytes, w.State.CommStream));
        }
        run.Group.Transport.AllGather(parts);
        var result = new (DeviceTensor, DeviceTensor)[run.Ranks.Count];
        for (int i = 0; i < run.Ranks.Count; i++)
        {
            var w = run.Ranks[i];
            w.State.KvArrived.Record(w.State.CommStream);
            w.State.KvArrived.MakeWait(w.Stream);
            var k = run.Dense(w.State.Scratch("ag-k", run.Bytes(run.SeqLen, run.HeadsK, run.ElementSize)), run.SeqLen, run.HeadsK);
            var v = run.Dense(w.State.Scratch("ag-v", run.Bytes(run.SeqLen, run.HeadsK, run.ElementSize)), run.SeqLen, run.HeadsK);
            for (int source = 0; source < run.Size; source++)
            {
                var (kBlock, vBlock) = Block(run, parts[i].Receive + (nint)(source * blockBytes), lmax, run.Type);
                foreach (var (chunk, shardRows) in ShardChunks(run, source))
                {
                    ContextParallelKernels.Copy(RowBlock.Of(Views.Rows(kBlock, shardRows)), RowBlock.Of(Views.Rows(k, chunk)), w.Stream);
                    ContextParallelKernels.Copy(RowBlock.Of(Views.Rows(vBlock, shardRows)), RowBlock.Of(Views.Rows(v, chunk)), w.Stream);
                }
            }
            result[i] = (k, v);
        }
        return result;
    }

    /// <summary>The query blocks a rank attends with: each chunk under the causal mask, the whole shard without it.</summary>
    private static IEnumerable<(SequenceRange Chunk, SequenceRange Local)> LocalChunks(ContextParallelRun run, int rank)
    {
        var (a, b) = ContextParallelLayout.Shard(run.SeqLen, run.Size, rank);
        if (!run.Causal)
        {
            yield return (new SequenceRange(0, run.SeqLen), new SequenceRange(0, a.Length + b.Length));
            yield break;
        }
        yield return (a, new SequenceRange(0, a.Length));
        yield return (b, new SequenceRange(a.Length, b.Length));
    }

    /// <summary>A rank's two chunks: their rows in the sequence and in its shard.</summary>
    private static (SequenceRange Chunk, SequenceRange ShardRows)[] ShardChunks(ContextParallelRun run, int rank)
    {
        var (a, b) = ContextParallelLayout.Shard(run.SeqLen, run.Size, rank);
        return [(a, new SequenceRange(0, a.Length)), (b, new SequenceRange(a.Length, b.Length))];
    }

    /// <summary>K (or dK) then V (or dV) of one rank-major block of <paramref name="rows"/> padded rows.</summary>
    private static (DeviceTensor K, DeviceTensor V) Block(ContextParallelRun run, nint pointer, int rows, DataType type)
        => (run.Dense(pointer, rows, run.HeadsK, type), run.Dense(pointer + (nint)run.Bytes(rows, run.HeadsK, DataTypes.SizeOf(type)), rows, run.HeadsK, type));

    private static unsafe void Zero(DeviceTensor t, CudaStream stream)
    {
        var api = stream.Device.Context.MakeCurrent();
        long bytes = t.ElementCount * DataTypes.SizeOf(t.Type);
        api.Check(api.cuMemsetD8Async(t.Address, 0, (nuint)bytes, stream.Handle), nameof(api.cuMemsetD8Async));
    }
}
