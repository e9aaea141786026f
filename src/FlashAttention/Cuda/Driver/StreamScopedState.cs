namespace FlashAttention.Cuda;

/// <summary>How a <see cref="StreamKey"/> names its stream.</summary>
internal enum StreamKeyKind
{
    /// <summary>The legacy default stream (handle 0, a null <see cref="CudaStream"/>).</summary>
    LegacyDefault,
    /// <summary>The driver's stream ID (cuStreamGetId): unique for the life of the program, never given to another stream.</summary>
    DriverId,
    /// <summary>The CUstream handle, where the driver has no cuStreamGetId: a destroyed stream's handle can be handed out again.</summary>
    Handle,
}

/// <summary>
/// Names a stream for the state the library keeps per stream (the forward's tile counters, the backward's workspace).
/// Two streams must never share a key: work on different streams runs concurrently, and shared scratch memory would
/// be a race. A handle is not enough for that: after cuStreamDestroy the driver may give the same handle to a new
/// stream while the old one's work is still running. So streams are keyed by the driver's ID, and the handle only
/// where the driver lacks cuStreamGetId (owned streams release their state when disposed, which covers that case).
/// One stream may end up with two keys (the driver answered for one wrapper of it and not for another, during graph
/// capture say); that only costs a second copy of the state, used in stream order.
/// </summary>
internal readonly record struct StreamKey(StreamKeyKind Kind, ulong Value)
{
    /// <summary>The key of the legacy default stream.</summary>
    public static readonly StreamKey LegacyDefault = new(StreamKeyKind.LegacyDefault, 0);

    /// <summary>The key of the stream with <paramref name="handle"/>, given its driver ID when the driver reported one.</summary>
    public static StreamKey From(nint handle, ulong? driverId) =>
        handle == 0 ? LegacyDefault
        : driverId is { } id ? new StreamKey(StreamKeyKind.DriverId, id)
        : new StreamKey(StreamKeyKind.Handle, (ulong)handle);

    /// <summary>The key of <paramref name="stream"/> (the legacy default stream for null).</summary>
    public static StreamKey Of(CudaStream? stream) => stream?.Key ?? LegacyDefault;
}

/// <summary>State the library keeps per (device, stream), which can be released when its stream goes away.</summary>
internal interface IStreamScopedState
{
    /// <summary>Removes and returns what is kept for <paramref name="key"/> on <paramref name="device"/>, or null.</summary>
    object? Release(object device, StreamKey key);
}

/// <summary>
/// Every <see cref="IStreamScopedState"/> of the library, so that disposing an owned <see cref="CudaStream"/> frees
/// what was kept for it (otherwise each stream a program creates and disposes would leave its buffers behind until
/// the device object is collected).
/// </summary>
internal static class StreamScopedStates
{
    private static readonly List<IStreamScopedState> All = [];

    /// <summary>Adds <paramref name="state"/> to the registry (called once per state holder, from its constructor).</summary>
    public static void Register(IStreamScopedState state)
    {
        lock (All) All.Add(state);
    }

    /// <summary>Removes what every registered holder keeps for <paramref name="key"/> on <paramref name="device"/>; returns it, for the caller to dispose once the stream's work has finished.</summary>
    public static List<object> Release(object device, StreamKey key)
    {
        IStreamScopedState[] holders;
        lock (All) holders = [.. All];
        var released = new List<object>();
        foreach (var holder in holders)
            if (holder.Release(device, key) is { } value) released.Add(value);
        return released;
    }
}
