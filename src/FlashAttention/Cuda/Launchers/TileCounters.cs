namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// The two 32-bit counters of the forward kernel's dynamic tile schedule (tile_scheduler.cuh, <c>TileDispenser</c>),
/// one pair per (device, stream): launches on one stream run in order, and each launch leaves its pair at zero for
/// the next (its last CTA resets it), so the pair is cleared only once, on the stream, when it is created.
/// </summary>
internal static class TileCounters
{
    internal static readonly PerStream<DeviceBuffer> Counters = new();

    public static nint For(CudaDevice device, CudaStream? stream) => Counters.For(device, stream, () =>
    {
        var buffer = new DeviceBuffer(8, device);
        buffer.Fill(0, stream);  // queued before the first launch that reads it
        return buffer;
    }).Pointer;
}
