using System.Runtime.InteropServices;

namespace FlashAttention.Cuda;

/// <summary>
/// Owns a device allocation (cuMemAlloc_v2). A <see cref="SafeHandle"/> frees it on <c>Dispose</c>, or from the
/// finalizer if the buffer is leaked, after making the owning context current on that thread.
/// </summary>
internal sealed unsafe class DeviceMemoryHandle : SafeHandle
{
    private readonly CudaContext _context;

    public DeviceMemoryHandle(CudaContext context, ulong address) : base(0, ownsHandle: true)
    {
        _context = context;
        SetHandle((nint)address);
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        // Never throws: this may run on the finalizer thread. A failure here (a context corrupted by a faulting
        // kernel, say) can only leak the allocation, which the process's teardown reclaims anyway.
        return _context.TryMakeCurrent(out var api) && api.cuMemFree_v2((ulong)handle) == 0;
    }
}

/// <summary>
/// A block of device memory owned by the caller: allocate, copy to and from host spans, fill, dispose. Freed on
/// <see cref="Dispose"/>, or safely by the finalizer when leaked. For memory owned by someone else, use a
/// <see cref="DeviceTensor"/> over its pointer instead.
/// </summary>
public sealed unsafe class DeviceBuffer : IDisposable
{
    private readonly DeviceMemoryHandle? _handle; // null for a zero-byte buffer (cuMemAlloc rejects size 0)

    /// <summary>Allocates <paramref name="byteCount"/> bytes on <paramref name="device"/> (device 0 when null). Contents are undefined.</summary>
    /// <exception cref="CudaException">cuMemAlloc_v2 failed, e.g. CUDA_ERROR_OUT_OF_MEMORY.</exception>
    public DeviceBuffer(long byteCount, CudaDevice? device = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteCount);
        Device = CudaDevice.OrDefault(device);
        ByteCount = byteCount;
        if (byteCount == 0) return;
        var api = Device.Context.MakeCurrent();
        ulong address;
        api.Check(api.cuMemAlloc_v2(&address, (nuint)byteCount), nameof(api.cuMemAlloc_v2), $"allocating {byteCount} bytes on device {Device.Ordinal}");
        _handle = new DeviceMemoryHandle(Device.Context, address);
    }

    /// <summary>The device the memory lives on.</summary>
    public CudaDevice Device { get; }

    /// <summary>Size in bytes.</summary>
    public long ByteCount { get; }

    /// <summary>The device address (CUdeviceptr) as a pointer-sized integer; 0 for an empty buffer.</summary>
    public nint Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle is { IsClosed: true }, this);
            return _handle?.DangerousGetHandle() ?? 0;
        }
    }

    /// <summary>The device address as CUdeviceptr.</summary>
    internal ulong Address => (ulong)Pointer;

    /// <summary>True after <see cref="Dispose"/>.</summary>
    public bool IsDisposed => _handle is { IsClosed: true };

    /// <summary>
    /// Copies <paramref name="source"/> into the buffer at <paramref name="byteOffset"/>. With a stream, the copy is
    /// ordered after the work already queued there; either way it has completed, and the span may be reused, when this
    /// returns.
    /// </summary>
    public void CopyFrom<T>(ReadOnlySpan<T> source, long byteOffset = 0, CudaStream? stream = null) where T : unmanaged
    {
        fixed (T* p = source) CopyHost(p, (long)source.Length * sizeof(T), byteOffset, toDevice: true, stream, nameof(source));
    }

    /// <summary>Copies bytes from the buffer at <paramref name="byteOffset"/> into <paramref name="destination"/>; complete when this returns.</summary>
    public void CopyTo<T>(Span<T> destination, long byteOffset = 0, CudaStream? stream = null) where T : unmanaged
    {
        fixed (T* p = destination) CopyHost(p, (long)destination.Length * sizeof(T), byteOffset, toDevice: false, stream, nameof(destination));
    }

    /// <summary>Copies <paramref name="destination"/>.Length bytes from any device address of <paramref name="device"/> (the lab reads launchers' workspaces).</summary>
    internal static void CopyToHost(CudaDevice device, nint address, Span<byte> destination)
    {
        if (destination.IsEmpty) return;
        var api = device.Context.MakeCurrent();
        fixed (byte* p = destination)
            api.Check(api.cuMemcpyDtoH_v2(p, (ulong)address, (nuint)destination.Length), nameof(api.cuMemcpyDtoH_v2), $"copying {destination.Length} bytes from the device");
    }

    // One host transfer either way. With a stream it is ordered after the stream's work, and waited for: the host memory
    // may be pinned (page-locked), for which the copy is truly asynchronous, and the caller may reuse it on return.
    private void CopyHost(void* host, long bytes, long byteOffset, bool toDevice, CudaStream? stream, string argument)
    {
        CheckRange(byteOffset, bytes, argument);
        if (bytes == 0) return;
        var api = Device.Context.MakeCurrent();
        ulong device = Address + (ulong)byteOffset;
        string what = toDevice ? $"copying {bytes} bytes to the device" : $"copying {bytes} bytes from the device";
        if (stream is null && toDevice) api.Check(api.cuMemcpyHtoD_v2(device, host, (nuint)bytes), nameof(api.cuMemcpyHtoD_v2), what);
        else if (stream is null) api.Check(api.cuMemcpyDtoH_v2(host, device, (nuint)bytes), nameof(api.cuMemcpyDtoH_v2), what);
        else
        {
            if (toDevice) api.Check(api.cuMemcpyHtoDAsync_v2(device, host, (nuint)bytes, stream.Handle), nameof(api.cuMemcpyHtoDAsync_v2), what);
            else api.Check(api.cuMemcpyDtoHAsync_v2(host, device, (nuint)bytes, stream.Handle), nameof(api.cuMemcpyDtoHAsync_v2), what);
            stream.Synchronize();
        }
    }

    /// <summary>Copies all of <paramref name="source"/> (no larger than this buffer) to the start of this buffer, device to device.</summary>
    public void CopyFrom(DeviceBuffer source) => CopyFrom(source, null);

    /// <summary>As <see cref="CopyFrom(DeviceBuffer)"/>, queued on <paramref name="stream"/> (asynchronous) when one is given.</summary>
    public void CopyFrom(DeviceBuffer source, CudaStream? stream)
    {
        ArgumentNullException.ThrowIfNull(source);
        CheckRange(0, source.ByteCount, nameof(source));
        if (source.ByteCount == 0) return;
        var api = Device.Context.MakeCurrent();
        if (stream is null)
            api.Check(api.cuMemcpyDtoD_v2(Address, source.Address, (nuint)source.ByteCount), nameof(api.cuMemcpyDtoD_v2), $"copying {source.ByteCount} bytes device to device");
        else
            api.Check(api.cuMemcpyDtoDAsync_v2(Address, source.Address, (nuint)source.ByteCount, stream.Handle), nameof(api.cuMemcpyDtoDAsync_v2), $"copying {source.ByteCount} bytes device to device");
    }

    /// <summary>Sets every byte to <paramref name="value"/>; queued on <paramref name="stream"/> when one is given (asynchronous), else synchronous.</summary>
    public void Fill(byte value, CudaStream? stream = null)
    {
        if (ByteCount == 0) return;
        var api = Device.Context.MakeCurrent();
        if (stream is null)
            api.Check(api.cuMemsetD8_v2(Address, value, (nuint)ByteCount), nameof(api.cuMemsetD8_v2), $"filling {ByteCount} bytes");
        else
            api.Check(api.cuMemsetD8Async(Address, value, (nuint)ByteCount, stream.Handle), nameof(api.cuMemsetD8Async), $"filling {ByteCount} bytes");
    }

    /// <summary>
    /// Sets every 32-bit word to <paramref name="value"/> (for poisoning outputs with a NaN pattern, for instance);
    /// the size must be a multiple of 4 bytes.
    /// </summary>
    public void Fill(uint value)
    {
        if (ByteCount % 4 != 0) throw new InvalidOperationException($"a 32-bit fill needs a size that is a multiple of 4 bytes; this buffer has {ByteCount}");
        if (ByteCount == 0) return;
        var api = Device.Context.MakeCurrent();
        api.Check(api.cuMemsetD32_v2(Address, value, (nuint)(ByteCount / 4)), nameof(api.cuMemsetD32_v2), $"filling {ByteCount / 4} words");
    }

    /// <summary>Frees the memory (idempotent). Work still queued that uses the buffer must have finished.</summary>
    public void Dispose() => _handle?.Dispose();

    private void CheckRange(long byteOffset, long bytes, string what)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (byteOffset < 0 || bytes < 0 || byteOffset > ByteCount - bytes)
            throw new ArgumentOutOfRangeException(what, $"{what}: {bytes} bytes at offset {byteOffset} do not fit a {ByteCount}-byte device buffer");
    }
}
