namespace FlashAttention.Cuda;

/// <summary>
/// A native library's API, loaded on first use and kept for the process: the API, or the reason there is none.
/// The load runs once, so a missing library is looked for once and every caller gets the same reason.
/// </summary>
internal sealed class LazyApi<TApi>(Func<(TApi?, CudaUnavailableException?)> load) where TApi : class
{
    private readonly Lazy<(TApi? Api, CudaUnavailableException? Error)> _loaded = new(load);

    /// <summary>The loaded API; throws <see cref="CudaUnavailableException"/> with the reason when there is none.</summary>
    public TApi Instance => _loaded.Value.Api ?? throw _loaded.Value.Error!;

    /// <summary>The API, or null with the reason; never throws.</summary>
    public TApi? TryGet(out CudaUnavailableException? error)
    {
        (var api, error) = _loaded.Value;
        return api;
    }
}
