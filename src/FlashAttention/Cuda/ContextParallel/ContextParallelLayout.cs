namespace FlashAttention.Cuda.ContextParallel;

/// <summary>Rows <see cref="Start"/> … <see cref="Start"/> + <see cref="Length"/> − 1 of a sequence.</summary>
public readonly record struct SequenceRange(int Start, int Length)
{
    /// <summary>One past the last row.</summary>
    public int End => Start + Length;
}

/// <summary>
/// How a sequence is sharded over the ranks of context parallelism: zigzag, for causal load balance. The sequence is
/// cut into 2N chunks (the first S mod 2N one row longer); rank r holds chunk r and chunk 2N−1−r, in that order, so
/// every rank has as many visible (query, key) pairs under the causal mask. Full attention shards the same way.
/// </summary>
public static class ContextParallelLayout
{
    /// <summary>The 2N chunks of a sequence of <paramref name="seqLen"/> rows over <paramref name="ranks"/> ranks.</summary>
    public static SequenceRange[] Chunks(int seqLen, int ranks)
    {
        Validate(seqLen, ranks);
        int count = 2 * ranks, size = seqLen / count, longer = seqLen % count;
        var chunks = new SequenceRange[count];
        int start = 0;
        for (int c = 0; c < count; c++)
        {
            int length = size + (c < longer ? 1 : 0);
            chunks[c] = new SequenceRange(start, length);
            start += length;
        }
        return chunks;
    }

    /// <summary>The two chunks rank <paramref name="rank"/> holds, in shard order: chunk r, then chunk 2N−1−r.</summary>
    public static (SequenceRange First, SequenceRange Second) Shard(int seqLen, int ranks, int rank)
    {
        var chunks = Chunks(seqLen, ranks);
        if (rank < 0 || rank >= ranks) throw new AttentionArgumentException(nameof(rank), $"rank: expected 0 … {ranks - 1}; got {rank}");
        return (chunks[rank], chunks[2 * ranks - 1 - rank]);
    }

    /// <summary>Rows of rank <paramref name="rank"/>'s shard (the length of its query, key and value shards).</summary>
    public static int ShardLength(int seqLen, int ranks, int rank)
    {
        var (a, b) = Shard(seqLen, ranks, rank);
        return a.Length + b.Length;
    }

    internal static void Validate(int seqLen, int ranks)
    {
        if (ranks < 1) throw new AttentionArgumentException(nameof(ranks), $"ranks: expected at least 1; got {ranks}");
        if (seqLen < 2 * ranks)
            throw new AttentionArgumentException(nameof(seqLen), $"seqLen: zigzag sharding over {ranks} ranks cuts the sequence into {2 * ranks} chunks, so it needs at least {2 * ranks} rows; got {seqLen}");
    }
}

/// <summary>
/// One step of rank r's ring: the K/V shard of rank <see cref="Source"/> against a block of the local queries. Under
/// the causal mask, zigzag chunks make every (query chunk i, key chunk j) pair fully visible (i &gt; j), the causal
/// diagonal (i == j: one chunk against itself, equal lengths, so the plain causal kernel is exact) or skipped (i &lt; j),
/// and a step's visible pairs form one rectangle: the kernels need no position offsets.
/// </summary>
/// <param name="Source">The rank whose K/V shard this step uses.</param>
/// <param name="Queries">Rows of the local query shard.</param>
/// <param name="Keys">Rows of the source's key shard.</param>
/// <param name="Causal">True for the local step under the causal mask: the shard against itself, causal in shard order.</param>
internal readonly record struct RingStep(int Source, SequenceRange Queries, SequenceRange Keys, bool Causal);

/// <summary>The ring's schedule: which K/V shard each rank sees at each step, and which rows meet.</summary>
internal static class RingPlan
{
    /// <summary>
    /// Rank r's step t (0 … N−1) sees the shard of rank (r − t) mod N (K/V move one rank forward per step). Causal:
    /// step 0 is the local shard, causal in shard order (chunk r before chunk 2N−1−r, as in the sequence); from a lower
    /// rank s only its first chunk is visible, to both local chunks; from a higher rank only the local second chunk sees
    /// anything, and it sees both of s's chunks. Each step holds half the local shard's pairs of a full step.
    /// </summary>
    public static RingStep Step(int seqLen, int ranks, int rank, int step, bool causal)
    {
        int source = ((rank - step) % ranks + ranks) % ranks;
        var (mine1, mine2) = ContextParallelLayout.Shard(seqLen, ranks, rank);
        var (theirs1, theirs2) = ContextParallelLayout.Shard(seqLen, ranks, source);
        var allMine = new SequenceRange(0, mine1.Length + mine2.Length);
        var allTheirs = new SequenceRange(0, theirs1.Length + theirs2.Length);
        if (!causal) return new RingStep(source, allMine, allTheirs, false);
        if (source == rank) return new RingStep(source, allMine, allTheirs, true);
        if (source < rank) return new RingStep(source, allMine, new SequenceRange(0, theirs1.Length), false);
        return new RingStep(source, new SequenceRange(mine1.Length, mine2.Length), allTheirs, false);
    }

    /// <summary>All N steps of rank <paramref name="rank"/>.</summary>
    public static RingStep[] Steps(int seqLen, int ranks, int rank, bool causal)
        => Enumerable.Range(0, ranks).Select(t => Step(seqLen, ranks, rank, t, causal)).ToArray();

    /// <summary>
    /// The all-gather strategy's calls for one local chunk: with every K/V chunk gathered in sequence order, the query
    /// chunk [a, b) attends to keys [0, b) under the causal mask (bottom-right alignment puts its row i at position a + i,
    /// exactly), or to all keys without it.
    /// </summary>
    public static SequenceRange GatheredKeys(SequenceRange queryChunk, int seqLen, bool causal)
        => causal ? new SequenceRange(0, queryChunk.End) : new SequenceRange(0, seqLen);
}
