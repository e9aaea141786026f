namespace FlashAttention.Cuda.ContextParallel;

/// <summary>
/// The ring: at step t rank r computes against the K/V shard of rank r − t while the communication stream passes the
/// shards one rank on for step t + 1 (two buffers: one computed on, one received into). The forward merges each
/// step's partial O/LSE into float32 accumulators; the backward adds each step's dQ into a local float32 accumulator
/// and its dK/dV into float32 accumulators that travel with the K/V, one step behind, and arrive home after step N − 1.
/// Steps issue rank by rank in one loop, so one process may drive every rank (one NCCL group per transfer).
/// </summary>
internal static class RingSchedule
{
    public static void Forward(ContextParallelRun run) => Run(run, backward: false);

    public static void Backward(ContextParallelRun run) => Run(run, backward: true);

    private static void Run(ContextParallelRun run, bool backward)
    {
        int n = run.Size, es = run.ElementSize, lmax = run.MaxShardLength;
        long kvBytesMax = 2 * run.Bytes(lmax, run.HeadsK, es), gradBytesMax = 2 * run.Bytes(lmax, run.HeadsK, sizeof(float));
        long KvBytes(int source) => 2 * run.Bytes(run.ShardLength(source), run.HeadsK, es);
        long GradBytes(int source) => 2 * run.Bytes(run.ShardLength(source), run.HeadsK, sizeof(float));
        int Source(int rank, int step) => ((rank - step) % n + n) % n;

        var buffers = run.Ranks.Select(w =>
        {
            var s = w.State;
            int l = run.ShardLength(w.Rank);
            return new Buffers
            {
                Kv = [s.Scratch("ring-kv0", kvBytesMax), s.Scratch("ring-kv1", kvBytesMax)],
                Grad = backward ? [s.Scratch("ring-grad0", gradBytesMax), s.Scratch("ring-grad1", gradBytesMax)] : [0, 0],
                Acc = s.Scratch("ring-acc", run.Bytes(l, run.HeadsQ, sizeof(float))),
                AccLse = backward ? 0 : s.Scratch("ring-acc-lse", (long)run.Batch * run.HeadsQ * l * sizeof(float)),
                PartQ = s.Scratch("ring-part-q", run.Bytes(l, run.HeadsQ, es)),
                PartLse = backward ? 0 : s.Scratch("ring-part-lse", (long)run.Batch * run.HeadsQ * l * sizeof(float)),
                PartK = backward ? s.Scratch("ring-part-k", run.Bytes(lmax, run.HeadsK, es)) : 0,
                PartV = backward ? s.Scratch("ring-part-v", run.Bytes(lmax, run.HeadsK, es)) : 0,
            };
        }).ToArray();

        // Own K/V packed into the first buffer (the first send); step 0 computes on the caller's tensors.
        for (int i = 0; i < run.Ranks.Count; i++)
        {
            var w = run.Ranks[i];
            var (k, v) = KvViews(run, buffers[i].Kv[0], w.Rank);
            ContextParallelKernels.Copy(RowBlock.Of(w.Shard.Key), RowBlock.Of(k), w.Stream);
            ContextParallelKernels.Copy(RowBlock.Of(w.Shard.Value), RowBlock.Of(v), w.Stream);
            w.State.InputsReady.Record(w.Stream);
            w.State.InputsReady.MakeWait(w.State.CommStream);
        }

        // One ring exchange on the communication streams: every rank sends the slot step t used (of the two in slots) to
        // the next rank's other slot, once its comm stream has waited for mustFinish; arrived is recorded behind it.
        void PassOn(int t, Func<Buffers, nint[]> slots, Func<int, long> bytes, Func<RankState, CudaEvent?> mustFinish, Func<RankState, CudaEvent> arrived)
        {
            var parts = new List<TransferPart>();
            var receive = new List<long>();
            for (int i = 0; i < run.Ranks.Count; i++)
            {
                var w = run.Ranks[i];
                mustFinish(w.State)?.MakeWait(w.State.CommStream);
                parts.Add(new TransferPart(w.Rank, slots(buffers[i])[t % 2], slots(buffers[i])[(t + 1) % 2], bytes(Source(w.Rank, t)), w.State.CommStream));
                receive.Add(bytes(Source(w.Rank, t + 1)));
            }
            run.Group.Transport.RingExchange(parts, receive);
            foreach (var w in run.Ranks) arrived(w.State).Record(w.State.CommStream);
        }

        for (int t = 0; t < n; t++)
        {
            // The step's K/V came with the transfer issued last step; wait for it before that event is recorded again.
            if (t > 0)
                foreach (var w in run.Ranks) w.State.KvArrived.MakeWait(w.Stream);
            // Receiving overwrites the buffer step t − 1 computed on.
            if (t < n - 1) PassOn(t, b => b.Kv, KvBytes, s => t > 0 ? s.ComputeDone : null, s => s.KvArrived);

            for (int i = 0; i < run.Ranks.Count; i++)
            {
                var w = run.Ranks[i];
                var step = RingPlan.Step(run.SeqLen, n, w.Rank, t, run.Causal);
                var (k, v) = t == 0 ? (w.Shard.Key, w.Shard.Value) : KvViews(run, buffers[i].Kv[t % 2], step.Source);
                if (backward) BackwardStep(run, w, buffers[i], step, Views.Rows(k, step.Keys), Views.Rows(v, step.Keys), first: t == 0);
                else ForwardStep(run, w, buffers[i], step, Views.Rows(k, step.Keys), Views.Rows(v, step.Keys), first: t == 0);
                w.State.ComputeDone.Record(w.Stream);
            }

            // The dK/dV accumulator of the step's source moves on; after step N − 1 it reaches its owner.
            if (backward && n > 1) PassOn(t, b => b.Grad, GradBytes, s => s.GradientsAdded, s => s.GradientsArrived);
        }

        for (int i = 0; i < run.Ranks.Count; i++)
        {
            var w = run.Ranks[i];
            int l = run.ShardLength(w.Rank);
            w.State.CommDone.Record(w.State.CommStream);
            w.State.CommDone.MakeWait(w.Stream);
            if (!backward)
            {
                var acc = RowBlock.Of(run.Dense(buffers[i].Acc, l, run.HeadsQ, DataType.Float32), run.DenseLse(buffers[i].AccLse, l, run.HeadsQ));
                ContextParallelKernels.Copy(acc, RowBlock.Of(w.Shard.Output, w.Shard.LogSumExp), w.Stream);
                continue;
            }
            var g = w.Gradients!;
            ContextParallelKernels.Copy(RowBlock.Of(run.Dense(buffers[i].Acc, l, run.HeadsQ, DataType.Float32)), RowBlock.Of(g.QueryGradient), w.Stream);
            var (dk, dv) = GradViews(run, buffers[i].Grad[n == 1 ? 0 : n % 2], w.Rank);
            ContextParallelKernels.Copy(RowBlock.Of(dk), RowBlock.Of(g.KeyGradient), w.Stream);
            ContextParallelKernels.Copy(RowBlock.Of(dv), RowBlock.Of(g.ValueGradient), w.Stream);
        }
    }

    private static void ForwardStep(ContextParallelRun run, RankWork w, Buffers b, RingStep step, DeviceTensor k, DeviceTensor v, bool first)
    {
        int rows = step.Queries.Length, l = run.ShardLength(w.Rank);
        var partO = run.Dense(b.PartQ, rows, run.HeadsQ);
        var partLse = run.DenseLse(b.PartLse, rows, run.HeadsQ);
        CudaAttention.Forward(Views.Rows(w.Shard.Query, step.Queries), k, v, partO, partLse, run.Options with { Causal = step.Causal }, w.Stream);
        var acc = RowBlock.Of(Views.Rows(run.Dense(b.Acc, l, run.HeadsQ, DataType.Float32), step.Queries),
            Views.LseRows(run.DenseLse(b.AccLse, l, run.HeadsQ), step.Queries));
        // Step 0 covers every local row, so its part starts the accumulators.
        if (first) ContextParallelKernels.Copy(RowBlock.Of(partO, partLse), acc, w.Stream);
        else ContextParallelKernels.Merge(RowBlock.Of(partO, partLse), acc, w.Stream);
    }

    private static void BackwardStep(ContextParallelRun run, RankWork w, Buffers b, RingStep step, DeviceTensor k, DeviceTensor v, bool first)
    {
        var s = w.Shard;
        var g = w.Gradients!;
        int rows = step.Queries.Length, keys = step.Keys.Length, l = run.ShardLength(w.Rank);
        var dq = run.Dense(b.PartQ, rows, run.HeadsQ);
        var dk = run.Dense(b.PartK, keys, run.HeadsK);
        var dv = run.Dense(b.PartV, keys, run.HeadsK);
        // The final O and LSE make each step's gradients exact parts of the whole: P = exp(S − LSE), D = rowsum(dO ∘ O).
        CudaAttention.Backward(Views.Rows(s.Query, step.Queries), k, v, Views.Rows(s.Output, step.Queries), Views.Rows(g.OutputGradient, step.Queries),
            Views.LseRows(s.LogSumExp, step.Queries), dq, dk, dv, run.Options with { Causal = step.Causal }, w.Stream);
        var dqAcc = RowBlock.Of(Views.Rows(run.Dense(b.Acc, l, run.HeadsQ, DataType.Float32), step.Queries));
        if (first) ContextParallelKernels.Copy(RowBlock.Of(dq), dqAcc, w.Stream);
        else ContextParallelKernels.Add(RowBlock.Of(dq), dqAcc, w.Stream);

        var (dkAcc, dvAcc) = GradViews(run, b.Grad[first ? 0 : StepIndex(run, w.Rank, step.Source) % 2], step.Source);
        if (first)
        {
            ContextParallelKernels.Copy(RowBlock.Of(dk), RowBlock.Of(Views.Rows(dkAcc, step.Keys)), w.Stream);
            ContextParallelKernels.Copy(RowBlock.Of(dv), RowBlock.Of(Views.Rows(dvAcc, step.Keys)), w.Stream);
        }
        else
        {
            w.State.GradientsArrived.MakeWait(w.Stream);
            ContextParallelKernels.Add(RowBlock.Of(dk), RowBlock.Of(Views.Rows(dkAcc, step.Keys)), w.Stream);
            ContextParallelKernels.Add(RowBlock.Of(dv), RowBlock.Of(Views.Rows(dvAcc, step.Keys)), w.Stream);
        }
        w.State.GradientsAdded.Record(w.Stream);
    }

    /// <summary>The step at which <paramref name="rank"/> sees <paramref name="source"/>'s shard.</summary>
    private static int StepIndex(ContextParallelRun run, int rank, int source) => ((rank - source) % run.Size + run.Size) % run.Size;

    /// <summary>K then V of <paramref name="source"/>'s shard, packed densely at <paramref name="pointer"/>.</summary>
    private static (DeviceTensor K, DeviceTensor V) KvViews(ContextParallelRun run, nint pointer, int source)
    {
        int l = run.ShardLength(source);
        return (run.Dense(pointer, l, run.HeadsK), run.Dense(pointer + (nint)run.Bytes(l, run.HeadsK, run.ElementSize), l, run.HeadsK));
    }

    /// <summary>dK then dV (float32) of <paramref name="source"/>'s shard, packed densely at <paramref name="pointer"/>.</summary>
    private static (DeviceTensor K, DeviceTensor V) GradViews(ContextParallelRun run, nint pointer, int source)
    {
        int l = run.ShardLength(source);
        return (run.Dense(pointer, l, run.HeadsK, DataType.Float32), run.Dense(pointer + (nint)run.Bytes(l, run.HeadsK, sizeof(float)), l, run.HeadsK, DataType.Float32));
    }

    private sealed class Buffers
    {
        public required nint[] Kv { get; init; }
        public required nint[] Grad { get; init; }
        public required nint Acc { get; init; }
        public required nint AccLse { get; init; }
        public required nint PartQ { get; init; }
        public required nint PartLse { get; init; }
        public required nint PartK { get; init; }
        public required nint PartV { get; init; }
    }
}
