namespace FlashAttention.Cpu;

/// <summary>
/// Runs independent work items on all cores, one item at a time from a shared counter. Unlike
/// <see cref="Parallel.For(int, int, Action{int})"/>'s growing chunks, this keeps a few large items (the backward's
/// per-head tasks) evenly spread. Which thread runs an item never changes what the item computes.
/// </summary>
internal static class ParallelWork
{
    public static void For(int count, Action<int> body)
    {
        if (count <= 0) return;
        int workers = Math.Min(count, Environment.ProcessorCount);
        if (workers == 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        int next = -1;
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count) body(i);
        });
    }
}
