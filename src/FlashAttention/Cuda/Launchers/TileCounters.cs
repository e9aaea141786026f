using System.Runtime.CompilerServices;

namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// The two 32-bit counters of the forward kernel's dynamic tile schedule (tile_scheduler.cuh, <c>TileDispenser</c>),
/// one pair per (device, stream): launches on one stream run in order, and each launch leaves its pair at zero for
/// the next (its last CTA resets it), so the pair is cleared only once, on the stream, when it is created.
/// </summary>
internal static class TileCounters
{
    private static readonly ConditionalWeakTable<CudaDevice, Dictionary<nint, DeviceBuffer>> PerDevice = new();

    public static nint For(CudaDevice device, CudaStream? stream)
    {
        var byStream = PerDevice.GetOrCreateValue(device);
        lock (byStream)
        {
            nint key = stream?.Handle ?? 0;
            if (!byStream.TryGetValue(key, out var buffer))
            {
                buffer = new DeviceBuffer(8, device);
                buffer.Fill(0, stream);  // queued before the first launch that reads it
                byStream[key] = buffer;
            }
            return buffer.Pointer;
        }
    }
}
