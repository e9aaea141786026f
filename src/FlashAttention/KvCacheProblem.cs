namespace FlashAttention;

/// <summary>
/// A validated KV-cache attention call (<see cref="AttentionValidation.ForwardWithKvCache"/>): the attention problem as
/// every backend sees it (query, output and LSE strides, heads, mask; key and value strides are the cache's, and
/// <see cref="AttentionProblem.SeqLenK"/> the longest key range the declared maximum allows), and the cache's geometry.
/// </summary>
internal sealed class KvCacheProblem
{
    public required AttentionProblem Attention { get; init; }

    /// <summary>Tokens appended to every sequence before attention (0: none).</summary>
    public required int SeqLenNew { get; init; }

    /// <summary>The declared maximum of the device-resident cache lengths (the kernels' guard and the split's sizing).</summary>
    public required int MaxCacheSeqLen { get; init; }

    /// <summary>Tokens one sequence's cache holds: the contiguous cache's length, or page-table row × page size.</summary>
    public required int Capacity { get; init; }

    /// <summary>Tokens per page; 0 for a contiguous cache.</summary>
    public required int PageSize { get; init; }

    /// <summary>Pages in the pool (paged); the batch for a contiguous cache.</summary>
    public required int NumPages { get; init; }

    /// <summary>Entries per page-table row (paged); 0 for a contiguous cache.</summary>
    public required int MaxPages { get; init; }

    /// <summary>Elements between page-table rows.</summary>
    public long PageTableStride { get; init; }

    /// <summary>Strides of the appended keys and values (batch, token, head).</summary>
    public TokenStrides NewK { get; init; }
    public TokenStrides NewV { get; init; }

    public bool Paged => PageSize > 0;
}
