using System.Runtime.CompilerServices;

namespace FlashAttention.Cuda;

/// <summary>
/// A CUDA stream: work queued on one stream runs in order. Create one (owned, destroyed on <see cref="Dispose"/>), or
/// wrap a stream someone else created with <see cref="FromHandle"/> (TorchSharp's current stream, say) so our kernels
/// are ordered with theirs. A null <see cref="CudaStream"/> argument anywhere in the library means the legacy default
/// stream (handle 0).
/// </summary>
public sealed unsafe class CudaStream : IDisposable
{
    private const uint NonBlockingFlag = 1; // CU_STREAM_NON_BLOCKING: no implicit synchronisation with the legacy default stream
    private readonly bool _owned;
    private nint _handle;
    private StrongBox<StreamKey>? _key;  // boxed: a reference is published atomically to threads sharing the stream

    /// <summary>Creates a stream on <paramref name="device"/> (device 0 when null).</summary>
    /// <param name="device">The device whose primary context owns the stream.</param>
    /// <param name="nonBlocking">True (the default) for a stream that does not synchronise with the legacy default stream.</param>
    public CudaStream(CudaDevice? device = null, bool nonBlocking = true)
    {
        Device = CudaDevice.OrDefault(device);
        var api = Device.Context.MakeCurrent();
        nint handle;
        api.Check(api.cuStreamCreate(&handle, nonBlocking ? NonBlockingFlag : 0), nameof(api.cuStreamCreate));
        _handle = handle;
        _owned = true;
    }

    private CudaStream(CudaDevice device, nint handle)
    {
        Device = device;
        _handle = handle;
        _owned = false;
    }

    /// <summary>Wraps a CUstream created elsewhere (on <paramref name="device"/>'s primary context); disposing the wrapper does not destroy it.</summary>
    public static CudaStream FromHandle(nint handle, CudaDevice? device = null) => new(CudaDevice.OrDefault(device), handle);

    /// <summary>The device the stream belongs to.</summary>
    public CudaDevice Device { get; }

    /// <summary>The CUstream handle (0 is the legacy default stream).</summary>
    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_owned && _handle == 0, this);
            return _handle;
        }
    }

    /// <summary>
    /// The key of the state the library keeps for this stream (<see cref="StreamKey"/>): the driver's stream ID, asked
    /// for once, on first use (the handle where the driver has no cuStreamGetId or cannot answer for this stream).
    /// </summary>
    internal StreamKey Key
    {
        get
        {
            if (_key is { } known) return known.Value;
            nint handle = Handle;
            var key = handle == 0 ? StreamKey.LegacyDefault : KeyFromDriver(Device.Context.MakeCurrent(), handle);
            _key = new StrongBox<StreamKey>(key);
            return key;
        }
    }

    private static StreamKey KeyFromDriver(CudaDriverApi api, nint handle)
    {
        ulong id = 0;
        bool known = api.cuStreamGetId != null && api.cuStreamGetId(handle, &id) == 0;
        return StreamKey.From(handle, known ? id : null);
    }

    /// <summary>The last kernel launched on this stream through the library, named in errors reported when the stream synchronises.</summary>
    internal string? LastLaunch { get; set; }

    /// <summary>Waits for all work queued on the stream; throws the first asynchronous error (naming the last kernel launched here).</summary>
    public void Synchronize()
    {
        var api = Device.Context.MakeCurrent();
        int result = api.cuStreamSynchronize(Handle);
        if (result != 0) throw api.Error(result, nameof(api.cuStreamSynchronize), LastLaunch is null ? null : $"(last kernel launched on this stream: {LastLaunch})");
    }

    /// <summary>
    /// Destroys an owned stream (queued work still completes) and frees the scratch memory the library kept for it;
    /// when there was some, first waits for the stream's work, which may still be reading it. Does nothing for a
    /// wrapped stream: whoever created it decides when it ends, so what the library keeps for it stays until the
    /// device goes (keyed by the driver's stream ID, it is never handed to another stream).
    /// </summary>
    public void Dispose()
    {
        if (!_owned || _handle == 0) return;
        List<object> released = [];
        if (Device.Context.TryMakeCurrent(out var api))
        {
            // The key is looked up even if this object never asked for it: a FromHandle wrapper of the same stream
            // may have kept state under the driver's ID.
            released = StreamScopedStates.Release(Device, _key?.Value ?? KeyFromDriver(api, _handle));
            // Dispose does not throw: a stream whose work failed reports that on its last Synchronize, and its scratch
            // memory is freed all the same.
            if (released.Count > 0) api.cuStreamSynchronize(_handle);
            api.cuStreamDestroy_v2(_handle);
        }
        _handle = 0;
        foreach (var value in released) (value as IDisposable)?.Dispose();
    }

    /// <summary>The handle of <paramref name="stream"/>, 0 (legacy default stream) for null.</summary>
    internal static nint HandleOf(CudaStream? stream) => stream?.Handle ?? 0;
}

/// <summary>
/// A CUDA event: a marker queued on a stream, used to time GPU work (<see cref="ElapsedMilliseconds"/>) or to wait
/// for it.
/// </summary>
public sealed unsafe class CudaEvent : IDisposable
{
    private const uint BlockingSyncFlag = 1;  // CU_EVENT_BLOCKING_SYNC
    private const uint DisableTimingFlag = 2; // CU_EVENT_DISABLE_TIMING
    private nint _handle;

    /// <summary>Creates an event on <paramref name="device"/> (device 0 when null).</summary>
    /// <param name="device">The device whose primary context owns the event.</param>
    /// <param name="timing">True (the default) to allow timing; false makes a cheaper event for ordering only.</param>
    /// <param name="blockingSync">True to make <see cref="Synchronize"/> sleep instead of spin.</param>
    public CudaEvent(CudaDevice? device = null, bool timing = true, bool blockingSync = false)
    {
        Device = CudaDevice.OrDefault(device);
        var api = Device.Context.MakeCurrent();
        nint handle;
        uint flags = (timing ? 0 : DisableTimingFlag) | (blockingSync ? BlockingSyncFlag : 0);
        api.Check(api.cuEventCreate(&handle, flags), nameof(api.cuEventCreate));
        _handle = handle;
    }

    /// <summary>The device the event belongs to.</summary>
    public CudaDevice Device { get; }

    /// <summary>The CUevent handle.</summary>
    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle == 0, this);
            return _handle;
        }
    }

    /// <summary>Queues the event on <paramref name="stream"/> (the legacy default stream when null).</summary>
    public void Record(CudaStream? stream = null)
    {
        var api = Device.Context.MakeCurrent();
        api.Check(api.cuEventRecord(Handle, CudaStream.HandleOf(stream)), nameof(api.cuEventRecord));
    }

    /// <summary>Makes later work on <paramref name="stream"/> wait (on the GPU) for the work queued before this event's last <see cref="Record"/>.</summary>
    public void MakeWait(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var api = stream.Device.Context.MakeCurrent();
        api.Check(api.cuStreamWaitEvent(stream.Handle, Handle, 0), nameof(api.cuStreamWaitEvent));
    }

    /// <summary>Waits until the work queued before the event's last <see cref="Record"/> has finished.</summary>
    public void Synchronize()
    {
        var api = Device.Context.MakeCurrent();
        api.Check(api.cuEventSynchronize(Handle), nameof(api.cuEventSynchronize));
    }

    /// <summary>Milliseconds between two recorded and completed events (resolution about 0.5 µs).</summary>
    public static float ElapsedMilliseconds(CudaEvent start, CudaEvent end)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(end);
        var api = start.Device.Context.MakeCurrent();
        float ms;
        api.Check(api.cuEventElapsedTime(&ms, start.Handle, end.Handle), nameof(api.cuEventElapsedTime));
        return ms;
    }

    /// <summary>
    /// Times <paramref name="work"/> on <paramref name="stream"/>: records an event before and after it, waits for the
    /// second, and returns the GPU time between them in milliseconds. The work must queue onto the same stream.
    /// </summary>
    public static float Time(CudaStream? stream, Action work, CudaDevice? device = null)
    {
        ArgumentNullException.ThrowIfNull(work);
        device ??= stream?.Device;
        using var start = new CudaEvent(device);
        using var end = new CudaEvent(device);
        start.Record(stream);
        work();
        end.Record(stream);
        end.Synchronize();
        return ElapsedMilliseconds(start, end);
    }

    /// <summary>Destroys the event (idempotent).</summary>
    public void Dispose()
    {
        if (_handle == 0) return;
        if (Device.Context.TryMakeCurrent(out var api)) api.cuEventDestroy_v2(_handle);
        _handle = 0;
    }
}
