namespace FlashAttention.Cuda.ContextParallel;

/// <summary>
/// NCCL's unique id (128 opaque bytes): made once by <see cref="NcclCommunicator.CreateUniqueId"/> on one process and
/// handed to every other (over MPI, a file, a socket: the caller's choice) before <see cref="NcclCommunicator.CreateRank"/>.
/// </summary>
public readonly struct NcclUniqueId
{
    private readonly byte[]? _bytes;

    private NcclUniqueId(byte[] bytes) => _bytes = bytes;

    /// <summary>The id from the 128 bytes another process sent.</summary>
    public static NcclUniqueId FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != NcclApi.UniqueIdBytes)
            throw new AttentionArgumentException(nameof(bytes), $"bytes: an NCCL unique id is {NcclApi.UniqueIdBytes} bytes; got {bytes.Length}");
        return new(bytes.ToArray());
    }

    /// <summary>The 128 bytes to send to the other processes.</summary>
    public byte[] ToArray() => (_bytes ?? new byte[NcclApi.UniqueIdBytes]).ToArray();

    internal unsafe NcclUniqueIdBlob ToBlob()
    {
        var blob = new NcclUniqueIdBlob();
        if (_bytes is { } b)
            for (int i = 0; i < b.Length; i++) blob.Bytes[i] = b[i];
        return blob;
    }

    internal static unsafe NcclUniqueId FromBlob(in NcclUniqueIdBlob blob)
    {
        var bytes = new byte[NcclApi.UniqueIdBytes];
        for (int i = 0; i < bytes.Length; i++) bytes[i] = blob.Bytes[i];
        return new(bytes);
    }
}

/// <summary>
/// An NCCL communicator: one rank of a group of GPUs that exchange data. Made for every GPU of this process at once
/// (<see cref="CreateAll"/>), by rank from a unique id the caller distributes (<see cref="CreateRank"/>, one process
/// per GPU), or wrapped from a handle the caller owns (<see cref="FromHandle"/>, never destroyed here). NCCL is loaded
/// on first use (<c>libnccl.so.2</c>, 2.18 or newer; <c>FLASHATTN_NCCL</c> names a file). Before the first communicator
/// is made, <c>NCCL_NVLS_ENABLE=0</c> is set in the process environment unless the user set it: NVLink multicast is
/// left off.
/// </summary>
public sealed unsafe class NcclCommunicator : IDisposable
{
    /// <summary>The environment variable that switches NVLink SHARP (multicast) on or off in NCCL.</summary>
    public const string NvlsVariable = "NCCL_NVLS_ENABLE";

    private readonly bool _owned;
    private nint _handle;

    private NcclCommunicator(nint handle, CudaDevice device, int rank, int size, bool owned)
    {
        _handle = handle;
        Device = device;
        Rank = rank;
        Size = size;
        _owned = owned;
    }

    /// <summary>The GPU this rank runs on.</summary>
    public CudaDevice Device { get; }

    /// <summary>This communicator's rank, 0 … <see cref="Size"/> − 1.</summary>
    public int Rank { get; }

    /// <summary>Number of ranks in the group.</summary>
    public int Size { get; }

    /// <summary>The <c>ncclComm_t</c> handle.</summary>
    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle == 0, this);
            return _handle;
        }
    }

    /// <summary>The version of the NCCL that is loaded (loading it if needed), e.g. "2.27.3".</summary>
    public static string NcclVersion => NcclApi.Instance.VersionText;

    /// <summary>One communicator per device, ranks in list order, for a process that drives all of them (<c>ncclCommInitAll</c>).</summary>
    public static IReadOnlyList<NcclCommunicator> CreateAll(IReadOnlyList<CudaDevice> devices)
    {
        ArgumentNullException.ThrowIfNull(devices);
        if (devices.Count == 0) throw new AttentionArgumentException(nameof(devices), "devices: at least one GPU is needed");
        if (devices.Select(d => d.Ordinal).Distinct().Count() != devices.Count)
            throw new AttentionArgumentException(nameof(devices), $"devices: each GPU may appear once; got ordinals {string.Join(", ", devices.Select(d => d.Ordinal))}");
        var api = Prepare();
        var handles = new nint[devices.Count];
        var ordinals = devices.Select(d => d.Ordinal).ToArray();
        foreach (var d in devices) d.Context.MakeCurrent();
        devices[0].Context.MakeCurrent();
        fixed (nint* h = handles)
        fixed (int* o = ordinals)
            api.Check(api.ncclCommInitAll(h, devices.Count, o), nameof(api.ncclCommInitAll), $"for devices {string.Join(", ", ordinals)}");
        return devices.Select((d, i) => new NcclCommunicator(handles[i], d, i, devices.Count, owned: true)).ToArray();
    }

    /// <summary>A fresh unique id (<c>ncclGetUniqueId</c>), made by one process and sent to all the others.</summary>
    public static NcclUniqueId CreateUniqueId()
    {
        var api = Prepare();
        NcclUniqueIdBlob blob;
        api.Check(api.ncclGetUniqueId(&blob), nameof(api.ncclGetUniqueId));
        return NcclUniqueId.FromBlob(blob);
    }

    /// <summary>This process's rank of a group of <paramref name="rankCount"/> (<c>ncclCommInitRank</c>); blocks until every rank has joined.</summary>
    public static NcclCommunicator CreateRank(NcclUniqueId id, int rankCount, int rank, CudaDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (rankCount < 1) throw new AttentionArgumentException(nameof(rankCount), $"rankCount: expected at least 1; got {rankCount}");
        if (rank < 0 || rank >= rankCount) throw new AttentionArgumentException(nameof(rank), $"rank: expected 0 … {rankCount - 1}; got {rank}");
        var api = Prepare();
        device.Context.MakeCurrent();  // NCCL takes the current device
        nint handle;
        api.Check(api.ncclCommInitRank(&handle, rankCount, id.ToBlob(), rank), nameof(api.ncclCommInitRank), $"for rank {rank} of {rankCount} on device {device.Ordinal}");
        return new NcclCommunicator(handle, device, rank, rankCount, owned: true);
    }

    /// <summary>Wraps a communicator the caller made (from PyTorch or its own NCCL calls); <see cref="Dispose"/> leaves it alive.</summary>
    public static NcclCommunicator FromHandle(nint handle, CudaDevice? device = null)
    {
        if (handle == 0) throw new AttentionArgumentException(nameof(handle), "handle: expected an ncclComm_t; got null");
        var api = NcclApi.Instance;
        int rank, size, ordinal;
        api.Check(api.ncclCommUserRank(handle, &rank), nameof(api.ncclCommUserRank), null, handle);
        api.Check(api.ncclCommCount(handle, &size), nameof(api.ncclCommCount), null, handle);
        api.Check(api.ncclCommCuDevice(handle, &ordinal), nameof(api.ncclCommCuDevice), null, handle);
        if (device is not null && device.Ordinal != ordinal)
            throw new AttentionArgumentException(nameof(device), $"device: the communicator runs on device {ordinal}; got device {device.Ordinal}");
        return new NcclCommunicator(handle, device ?? CudaDevice.Get(ordinal), rank, size, owned: false);
    }

    /// <summary>The loaded NCCL, after the one-time environment set-up every communicator is made under.</summary>
    private static NcclApi Prepare()
    {
        EnvironmentPrepared.Value.ToString();
        return NcclApi.Instance;
    }

    private static readonly Lazy<bool> EnvironmentPrepared = new(() => NativeEnvironment.SetIfUnset(NvlsVariable, "0"));

    /// <summary>Throws the communicator's asynchronous error, if NCCL recorded one (a peer failed, a timeout).</summary>
    public void CheckAsyncError()
    {
        var api = NcclApi.Instance;
        int state;
        api.Check(api.ncclCommGetAsyncError(Handle, &state), nameof(api.ncclCommGetAsyncError), null, Handle);
        if (state is not (0 or 7)) throw api.Error(state, "ncclCommGetAsyncError", $"on rank {Rank} (device {Device.Ordinal})", Handle);
    }

    /// <summary>Destroys an owned communicator (idempotent); a wrapped one is left to its owner.</summary>
    public void Dispose()
    {
        if (_handle == 0) return;
        if (_owned && NcclApi.TryGetInstance(out _) is { } api)
        {
            Device.Context.TryMakeCurrent(out _);
            api.ncclCommDestroy(_handle);
        }
        _handle = 0;
    }

    /// <summary>"rank 1 of 2 on device 1".</summary>
    public override string ToString() => $"rank {Rank} of {Size} on device {Device.Ordinal}";
}
