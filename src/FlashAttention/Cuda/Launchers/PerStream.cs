using System.Runtime.CompilerServices;

namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// One <typeparamref name="T"/> per (device, stream): launch state that work queued on one stream may share, since
/// the stream runs it in order (the legacy default stream is one key too). Streams are told apart by
/// <see cref="StreamKey"/>, never by a handle the driver could reuse. An entry lives until its owned stream is
/// disposed (which waits for the stream's work and then disposes the entry if it is <see cref="IDisposable"/>), or
/// as long as its device.
/// </summary>
internal sealed class PerStream<T> : IStreamScopedState where T : class
{
    private readonly ConditionalWeakTable<object, Dictionary<StreamKey, T>> _perDevice = new();

    public PerStream() => StreamScopedStates.Register(this);

    /// <summary>The entry of <paramref name="stream"/> on <paramref name="device"/>, made by <paramref name="create"/> the first time.</summary>
    public T For(CudaDevice device, CudaStream? stream, Func<T> create) => For(device, StreamKey.Of(stream), create);

    /// <summary>The entry of the stream <paramref name="key"/> names on <paramref name="device"/> (any object standing for a device).</summary>
    internal T For(object device, StreamKey key, Func<T> create)
    {
        var byStream = _perDevice.GetOrCreateValue(device);
        lock (byStream)
        {
            if (!byStream.TryGetValue(key, out var value)) byStream[key] = value = create();
            return value;
        }
    }

    /// <summary>How many streams have an entry on <paramref name="device"/>.</summary>
    internal int Count(object device)
    {
        if (!_perDevice.TryGetValue(device, out var byStream)) return 0;
        lock (byStream) return byStream.Count;
    }

    /// <inheritdoc/>
    public object? Release(object device, StreamKey key)
    {
        if (!_perDevice.TryGetValue(device, out var byStream)) return null;
        lock (byStream) return byStream.Remove(key, out var value) ? value : null;
    }
}
