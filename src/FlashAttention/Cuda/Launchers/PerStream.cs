using System.Runtime.CompilerServices;

namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// One <typeparamref name="T"/> per (device, stream): launch state that work queued on one stream may share, since
/// the stream runs it in order (the null stream is one key too). Entries live as long as their device.
/// </summary>
internal sealed class PerStream<T> where T : class
{
    private readonly ConditionalWeakTable<CudaDevice, Dictionary<nint, T>> _perDevice = new();

    public T For(CudaDevice device, CudaStream? stream, Func<T> create)
    {
        var byStream = _perDevice.GetOrCreateValue(device);
        lock (byStream)
        {
            nint key = stream?.Handle ?? 0;
            if (!byStream.TryGetValue(key, out var value)) byStream[key] = value = create();
            return value;
        }
    }
}
