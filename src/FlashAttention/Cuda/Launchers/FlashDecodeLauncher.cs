using FlashAttention.Cuda.Variants;

namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// Launches the decode family (decode/): one launch of the decode kernel over (sequence, KV head, m-block, split) units,
/// which also appends the new keys and values into the cache and, when the key range is split, merges the splits (the
/// last to finish does). A KV-cache call with no queries runs the append kernel alone (kv_cache.cu). The plain forward's
/// decode-shaped calls run the decode kernel on their K and V as a contiguous cache every sequence of which is full. In
/// checked mode the cache's device-resident lengths and page table are checked by a kernel of their own first, and a
/// violation throws before anything is written; otherwise the kernels' guards keep every access inside the tensors
/// given. The kernels launch as programmatic dependents of the kernel before them
/// (<see cref="VariantPolicy.DecodeProgrammaticLaunch"/>): each waits for it (<c>griddepcontrol.wait</c>) before touching
/// memory, so only their launch overlaps its tail.
/// </summary>
internal static class FlashDecodeLauncher
{
    /// <summary>KV-cache attention on a validated problem.</summary>
    public static void Launch(KvCacheProblem kv, in TensorLayout q, in TensorLayout kCache, in TensorLayout vCache, in TensorLayout seqLens,
        TensorLayout? pageTable, TensorLayout? kNew, TensorLayout? vNew, in TensorLayout o, TensorLayout? lse, bool checkDeviceInputs,
        CudaStream? stream, CudaDevice device)
    {
        var p = kv.Attention;
        if (p.Batch == 0) return;
        var variant = VariantPolicy.Current.Decode(p.HeadDim);
        var scratch = DecodeScratch.For(device, stream);
        var cacheArgs = new KvCacheParams
        {
            Batch = p.Batch, SeqLenNew = kv.SeqLenNew, HeadsK = p.HeadsK, MaxSeqLen = kv.MaxCacheSeqLen, PageSize = kv.PageSize,
            NumPages = kv.NumPages, MaxPages = kv.MaxPages,
            SeqLens = (nint)seqLens.Address, PageTable = pageTable is { } t ? (nint)t.Address : 0, PageTableStride = kv.PageTableStride,
            KNew = kNew is { } kn ? (nint)kn.Address : 0, KNewStrideB = kv.NewK.Batch, KNewStrideS = kv.NewK.Sequence, KNewStrideH = kv.NewK.Head,
            VNew = vNew is { } vn ? (nint)vn.Address : 0, VNewStrideB = kv.NewV.Batch, VNewStrideS = kv.NewV.Sequence, VNewStrideH = kv.NewV.Head,
            KCache = (nint)kCache.Address, KCacheStrideB = p.K.Batch, KCacheStrideS = p.K.Sequence, KCacheStrideH = p.K.Head,
            VCache = (nint)vCache.Address, VCacheStrideB = p.V.Batch, VCacheStrideS = p.V.Sequence, VCacheStrideH = p.V.Head,
            Error = scratch.Error,
        };
        var cache = Compiler.KernelModuleCache.For(device);
        if (checkDeviceInputs) CheckDeviceInputs(kv, cacheArgs, scratch, cache, stream);
        if (p.SeqLenQ == 0)
        {
            if (kv.SeqLenNew == 0) return;
            var append = KernelCatalog.DecodeEntry(p.Type, variant).Append;
            cache.GetKernel(append.Spec, append.NameExpression)
                .Launch(new LaunchConfig(p.Batch * kv.SeqLenNew, 128, 0, stream, ProgrammaticDependency: VariantPolicy.Current.DecodeProgrammaticLaunch),
                    new KernelArguments().Add(cacheArgs));
            return;
        }
        Attend(kv, cacheArgs, variant, q, kCache, vCache, o, lse, scratch, stream, device);
    }

    /// <summary>The plain forward's decode-shaped call (<see cref="DecodeVariants.TakesForward"/>): K and V as a full contiguous cache.</summary>
    public static void LaunchDense(AttentionProblem p, in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        TensorLayout? lse, CudaStream? stream, CudaDevice device)
    {
        if (p.Batch == 0 || p.SeqLenQ == 0) return;
        var kv = new KvCacheProblem
        {
            Attention = p, SeqLenNew = 0, MaxCacheSeqLen = p.SeqLenK, Capacity = p.SeqLenK, PageSize = 0, NumPages = p.Batch, MaxPages = 0,
        };
        var variant = VariantPolicy.Current.Decode(p.HeadDim);
        var scratch = DecodeScratch.For(device, stream);
        Attend(kv, new KvCacheParams { Error = scratch.Error }, variant, q, k, v, o, lse, scratch, stream, device);
    }

    /// <summary>Rows of a TMA box of K or V: whole pages' worth that divide the key block, or the block when contiguous.</summary>
    internal static int BoxRows(int pageSize, int blockN) => pageSize > 0 ? (int)System.Numerics.BigInteger.GreatestCommonDivisor(pageSize, blockN) : blockN;

    /// <summary>The launch geometry of the decode kernel: m-blocks per (sequence, KV head), splits of each key range.</summary>
    internal static (int MBlocks, int Splits) Geometry(AttentionProblem p, DecodeVariant variant, int multiprocessors, VariantPolicy policy)
    {
        int rows = p.SeqLenQ * p.GroupSize;
        int mBlocks = (rows + DecodeVariant.BlockM - 1) / DecodeVariant.BlockM;
        long units = (long)p.Batch * p.HeadsK * mBlocks;
        int keyBlocks = (int)((p.SeqLenK + (long)variant.BlockN - 1) / variant.BlockN);
        int splits = Math.Clamp(policy.DecodeSplits(units, keyBlocks, multiprocessors * variant.CtasPerSm), 1, DecodeVariants.MaxSplits);
        return (mBlocks, splits);
    }

    private static void Attend(KvCacheProblem kv, in KvCacheParams cacheArgs, DecodeVariant variant, in TensorLayout q, in TensorLayout kCache,
        in TensorLayout vCache, in TensorLayout o, TensorLayout? lse, DecodeScratch scratch, CudaStream? stream, CudaDevice device)
    {
        var p = kv.Attention;
        var policy = VariantPolicy.Current;
        var (mBlocks, splits) = Geometry(p, variant, device.MultiprocessorCount, policy);
        long rowsTotal = (long)p.Batch * p.SeqLenQ * p.HeadsQ;
        var (oPartial, lsePartial, counters) = splits > 1
            ? scratch.Partials(device, stream, splits, rowsTotal, p.HeadDim, (long)p.Batch * p.HeadsK * mBlocks)
            : (0, 0, 0);
        int boxRows = BoxRows(kv.PageSize, variant.BlockN);
        bool softcap = p.Softcap > 0;
        var args = new DecodeParams
        {
            Batch = p.Batch, SeqLenQ = p.SeqLenQ, HeadsQ = p.HeadsQ, HeadsK = p.HeadsK, Group = p.GroupSize,
            Rows = p.SeqLenQ * p.GroupSize, NumMBlocks = mBlocks, NumSplits = splits,
            SeqLenK = p.SeqLenK, SeqLenNew = kv.SeqLenNew, MaxSeqLen = kv.MaxCacheSeqLen,
            WindowLeft = p.WindowLeft, WindowRight = p.WindowRight,
            PageSize = kv.PageSize, BoxRows = boxRows, NumPages = kv.NumPages, MaxPages = kv.MaxPages,
            HasSoftcap = softcap ? 1 : 0,
            SoftcapPremul = softcap ? p.Scale / p.Softcap : 0f,
            ScoreScale = softcap ? p.Softcap : p.Scale,
            ScoreScaleLog2 = (softcap ? p.Softcap : p.Scale) * 1.4426950408889634f,
            SeqLens = cacheArgs.SeqLens, PageTable = cacheArgs.PageTable, PageTableStride = kv.PageTableStride,
            Q = (nint)q.Address, QStrideB = p.Q.Batch, QStrideS = p.Q.Sequence, QStrideH = p.Q.Head,
            O = (nint)o.Address, OStrideB = p.O.Batch, OStrideS = p.O.Sequence, OStrideH = p.O.Head,
            Lse = lse is { } l ? (nint)l.Address : 0, LseStrideB = p.Lse.Batch, LseStrideH = p.Lse.Head, LseStrideS = p.Lse.Query,
            OPartial = oPartial, LsePartial = lsePartial, SplitCounters = counters,
            Error = scratch.Error,
        };
        var entry = KernelCatalog.DecodeEntry(p.Type, variant);
        var cache = Compiler.KernelModuleCache.For(device);
        var kernel = cache.GetKernel(entry.Main.Spec, entry.Main.NameExpression);
        // Two CTAs of about 100 KB each need the largest carveout; the driver's default may pick one that holds only one.
        if (variant.CtasPerSm > 1) kernel.PreferLargestSharedMemoryCarveout();
        var arguments = new KernelArguments()
            .Add(args)
            .Add(cacheArgs)
            .Add(AttentionTensorMaps.Tokens(kCache, (uint)boxRows, device))
            .Add(AttentionTensorMaps.Tokens(vCache, (uint)boxRows, device));
        long grid = (long)p.Batch * p.HeadsK * mBlocks * splits;
        bool dependent = policy.DecodeProgrammaticLaunch;
        kernel.Launch(new LaunchConfig((int)grid, DecodeVariant.Threads, variant.SharedMemoryBytes, stream, ProgrammaticDependency: dependent), arguments);
    }

    /// <summary>The checked mode: the check kernel, a synchronisation, and the first violation as an exception.</summary>
    private static void CheckDeviceInputs(KvCacheProblem kv, in KvCacheParams cacheArgs, DecodeScratch scratch, Compiler.KernelModuleCache cache,
        CudaStream? stream)
    {
        var p = kv.Attention;
        scratch.ErrorBuffer.Fill(0, stream);
        cache.GetKernel(KernelCatalog.KvCheckEntry.Spec, KernelCatalog.KvCheckEntry.NameExpression)
            .Launch(new LaunchConfig(p.Batch, 128, 0, stream), new KernelArguments().Add(cacheArgs));
        Span<int> words = stackalloc int[4];
        scratch.ErrorBuffer.CopyTo(words, 0, stream);  // waits for the check (a synchronous copy on the legacy stream)
        if (words[0] == 0) return;
        scratch.ErrorBuffer.Fill(0, stream);
        throw DescribeViolation(kv, words[0], words[1], words[2], words[3]);
    }

    /// <summary>The exception for a recorded contract violation (<c>fa::KvError</c>): the argument, the entry and what was expected.</summary>
    internal static AttentionArgumentException DescribeViolation(KvCacheProblem kv, int code, int batch, int index, int value) => code switch
    {
        1 => new AttentionArgumentException("cacheSeqLens",
            $"cacheSeqLens[{batch}] = {value}: expected 0 … {kv.MaxCacheSeqLen} (maxCacheSeqLen; the cache holds {kv.Capacity} tokens per sequence" +
            (kv.SeqLenNew > 0 ? $" and {kv.SeqLenNew} are appended" : "") + "); nothing was written"),
        2 => new AttentionArgumentException("pageTable",
            $"pageTable[{batch}, {index}] = {value}: expected a page of keyCache, 0 … {kv.NumPages - 1}; nothing was written"),
        _ => new AttentionArgumentException("cacheSeqLens", $"cacheSeqLens: the device check reported code {code} (sequence {batch}, entry {index}, value {value})"),
    };

    /// <summary>The state the decode family keeps per (device, stream): the guards' error word, the splits' partial results and counters.</summary>
    internal sealed class DecodeScratch : IDisposable
    {
        internal static readonly PerStream<DecodeScratch> Scratches = new();
        private DeviceBuffer? _partials;
        private DeviceBuffer? _counters;

        private DecodeScratch(CudaDevice device, CudaStream? stream)
        {
            ErrorBuffer = new DeviceBuffer(16, device);
            ErrorBuffer.Fill(0, stream);  // queued before the first launch that may write it
        }

        /// <summary>{code, sequence, index, value} of the first contract violation a kernel met (decode_params.cuh).</summary>
        public DeviceBuffer ErrorBuffer { get; }

        public nint Error => ErrorBuffer.Pointer;

        public static DecodeScratch For(CudaDevice device, CudaStream? stream) => Scratches.For(device, stream, () => new DecodeScratch(device, stream));

        /// <summary>
        /// The partial O (float32, splits × rows × head dim) and LSE (splits × rows), grown as needed, and the splits'
        /// counters (one int per row block; zero between calls: the last split of each resets its own).
        /// </summary>
        public (nint O, nint Lse, nint Counters) Partials(CudaDevice device, CudaStream? stream, int splits, long rows, int headDim, long rowBlocks)
        {
            lock (this)
            {
                static long Align(long bytes) => (bytes + 255) & ~255L;
                long oBytes = Align(splits * rows * headDim * 4), lseBytes = Align(splits * rows * 4);
                if (_partials is null || _partials.ByteCount < oBytes + lseBytes)
                {
                    // The previous buffer may still be read by work queued on this stream: let it finish first.
                    SynchronizeQueued(device, stream);
                    _partials?.Dispose();
                    _partials = new DeviceBuffer(Math.Max(oBytes + lseBytes, 1 << 20), device);
                }
                if (_counters is null || _counters.ByteCount < rowBlocks * 4)
                {
                    SynchronizeQueued(device, stream);
                    _counters?.Dispose();
                    _counters = new DeviceBuffer(Math.Max(rowBlocks * 4, 4096), device);
                    _counters.Fill(0, stream);  // queued before the launch that counts in it
                }
                return (_partials.Pointer, _partials.Pointer + (nint)oBytes, _counters.Pointer);
            }
        }

        private static void SynchronizeQueued(CudaDevice device, CudaStream? stream)
        {
            if (stream is not null) stream.Synchronize();
            else device.Synchronize();
        }

        /// <summary>Frees the buffers (called when the stream is disposed, after its work has finished).</summary>
        public void Dispose()
        {
            lock (this)
            {
                _partials?.Dispose();
                _partials = null;
                _counters?.Dispose();
                _counters = null;
                ErrorBuffer.Dispose();
            }
        }
    }
}
