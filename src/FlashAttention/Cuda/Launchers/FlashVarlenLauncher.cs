using FlashAttention.Cuda.Variants;

namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// Variable-length batches on the GPU (tensors packed as (tokens, heads, head_dim), sequence offsets on the device):
/// the forward and backward kernels' varlen variants. Before the forward, one CTA (varlen/varlen_prepare.cu) sorts the
/// sequences by query blocks and numbers their tiles, so the persistent grid hands out the longest sequences' tiles
/// first and the count of tiles never needs the host; the backward's grid covers the longest sequence and its CTAs past
/// a shorter one's keys return at once. TMA reads the packed tensors with sequence offsets as row coordinates: rows of
/// a neighbouring sequence that a tile reads are masked (keys) or never stored (queries), and a sequence's last query
/// block, which a TMA store would write past the sequence's end, is stored row by row.
/// </summary>
internal static class FlashVarlenLauncher
{
    public static void Forward(DeviceVarlenProblem vp, in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        TensorLayout? lse, bool checkDeviceInputs, CudaStream? stream, CudaDevice device)
    {
        var p = vp.Attention;
        if (p.Batch == 0) return;
        var policy = VariantPolicy.Current;
        var config = policy.Forward(p.HeadDim, p.SeqLenK, keysCutFromRight: p.WindowRight >= 0) with { Varlen = true };
        var cache = Compiler.KernelModuleCache.For(device);
        var entry = KernelCatalog.ForwardEntry(p.Type, config);
        var kernel = cache.GetKernel(entry.Spec, entry.NameExpression);
        var scratch = VarlenScratch.For(device, stream, p.Batch);
        Prepare(vp, scratch, config.BlockM, tileOrder: true, checkDeviceInputs, cache, stream);
        if (vp.TotalQ == 0) return;

        var (args, _) = FlashForwardLauncher.TileParams(p, config.BlockM, config.WarpSpecialized, lse, policy, stream, device);
        // Tiles differ in length whatever the mask: drawn from the counter as CTAs come free.
        args.TileCounter = config.WarpSpecialized ? TileCounters.For(device, stream) : 0;
        args.LongestFirstHeads = 0;
        args.CuSeqLensQ = (nint)vp.CuSeqLensQ.Address;
        args.CuSeqLensK = (nint)vp.CuSeqLensK.Address;
        args.SeqUsedK = vp.SeqUsedK is { } used ? (nint)used.Address : 0;
        args.TileOrder = scratch.TileOrder;
        args.TileStart = scratch.TileStart;
        args.O = (nint)o.Address;
        args.OStrideS = p.O.Sequence;
        args.OStrideH = p.O.Head;
        args.TotalQ = vp.TotalQ;
        args.TotalK = vp.TotalK;
        var arguments = new KernelArguments()
            .Add(args)
            .Add(AttentionTensorMaps.Tokens(AsBatchOfOne(q), (uint)config.BlockM, device))
            .Add(AttentionTensorMaps.Tokens(AsBatchOfOne(k), (uint)config.BlockN, device))
            .Add(AttentionTensorMaps.Tokens(AsBatchOfOne(v), (uint)config.BlockN, device))
            .Add(AttentionTensorMaps.Tokens(AsBatchOfOne(o), 64, device));
        long tilesAtMost = MaxTiles(vp, config.BlockM);
        int grid = (int)Math.Min(tilesAtMost, device.MultiprocessorCount);
        kernel.Launch(new LaunchConfig(grid, config.Threads, config.SharedMemoryBytes, stream), arguments);
    }

    /// <summary>Tiles of <paramref name="blockM"/> rows a batch can have: Σ⌈len/blockM⌉ ≤ total/blockM + batch, per query head.</summary>
    internal static long MaxTiles(DeviceVarlenProblem vp, int blockM)
        => ((long)vp.TotalQ / blockM + vp.Attention.Batch) * vp.Attention.HeadsQ;

    public static void Backward(DeviceVarlenProblem vp, in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        in TensorLayout dO, in TensorLayout lse, in TensorLayout dq, in TensorLayout dk, in TensorLayout dv, bool checkDeviceInputs,
        CudaStream? stream, CudaDevice device)
    {
        var p = vp.Attention;
        if (p.Batch == 0) return;
        var cache = Compiler.KernelModuleCache.For(device);
        if (checkDeviceInputs) Prepare(vp, VarlenScratch.For(device, stream, p.Batch), 128, tileOrder: false, check: true, cache, stream);
        if (vp.TotalQ == 0 && vp.TotalK == 0) return;
        var config = VariantPolicy.Current.Backward(p.HeadDim, softcap: p.Softcap > 0) with { Varlen = true };
        var entries = KernelCatalog.BackwardEntry(p.Type, config);
        var main = cache.GetKernel(entries.Main.Spec, entries.Main.NameExpression);
        var pre = cache.GetKernel(entries.Pre.Spec, entries.Pre.NameExpression);
        var post = cache.GetKernel(entries.Post.Spec, entries.Post.NameExpression);

        // Side buffers: per query head a run of whole 128-row blocks per sequence (varlen_side_row0 in varlen_bounds.cuh).
        int padded = (vp.TotalQ / 128 + p.Batch) * 128;
        long rows = (long)p.HeadsQ * padded;
        var ws = FlashBackwardLauncher.Workspace.For(device, stream, rows, p.HeadDim, rows / 64);
        var aux = new BwdAuxParams
        {
            Batch = p.Batch, SeqLenQ = p.SeqLenQ, HeadsQ = p.HeadsQ, HeadDim = p.HeadDim, SeqLenQPadded = padded,
            SoftmaxScale = p.Scale,
            O = (nint)o.Address, DO = (nint)dO.Address, Dq = (nint)dq.Address, Lse = (nint)lse.Address,
            OStrideB = 0, OStrideS = p.O.Sequence, OStrideH = p.O.Head,
            DoStrideB = 0, DoStrideS = p.DO.Sequence, DoStrideH = p.DO.Head,
            DqStrideB = 0, DqStrideS = p.DQ.Sequence, DqStrideH = p.DQ.Head,
            LseStrideB = 0, LseStrideH = p.Lse.Head, LseStrideS = p.Lse.Query,
            LseLog2 = ws.LseLog2, DpSum = ws.DpSum, DqAccum = ws.DqAccum, DqSemaphore = ws.Semaphores,
            NumMBlocks = (p.SeqLenQ + 63) / 64,
            TotalQ = vp.TotalQ,
            CuSeqLensQ = (nint)vp.CuSeqLensQ.Address,
        };
        // The pre-pass clears whole 128-row blocks of each sequence, the post-pass writes its rows.
        int preBlocks = (p.SeqLenQ + 127) / 128 * 2, postBlocks = (p.SeqLenQ + 63) / 64;
        if (preBlocks > 0)
            pre.Launch(new LaunchConfig(new Dim3((uint)preBlocks, (uint)p.HeadsQ, (uint)p.Batch), 256, 0, stream), new KernelArguments().Add(aux));

        var args = FlashBackwardLauncher.MainParams(p, padded, ws, dk, dv, packed: true);
        args.CuSeqLensQ = (nint)vp.CuSeqLensQ.Address;
        args.CuSeqLensK = (nint)vp.CuSeqLensK.Address;
        args.SeqUsedK = vp.SeqUsedK is { } used ? (nint)used.Address : 0;
        args.TotalQ = vp.TotalQ;
        args.TotalK = vp.TotalK;
        FlashBackwardLauncher.LaunchMain(main, config, args, p, AsBatchOfOne(q), AsBatchOfOne(k), AsBatchOfOne(v), AsBatchOfOne(dO), stream, device);
        if (postBlocks > 0)
            post.Launch(new LaunchConfig(new Dim3((uint)postBlocks, (uint)p.HeadsQ, (uint)p.Batch), 256, 0, stream), new KernelArguments().Add(aux));
    }

    /// <summary>The packed (tokens, heads, head_dim) tensor as a batch of one for the rank-4 tensor maps.</summary>
    internal static TensorLayout AsBatchOfOne(in TensorLayout t)
        => new(t.Name, t.Type, [1, t.Lengths[0], t.Lengths[1], t.Lengths[2]], [t.Lengths[0] * t.Strides[0], t.Strides[0], t.Strides[1], t.Strides[2]], t.Address);

    /// <summary>The prepare kernel: with <paramref name="check"/> the offsets' contract, read back (a synchronisation); with <paramref name="tileOrder"/> the forward's tile order.</summary>
    private static void Prepare(DeviceVarlenProblem vp, VarlenScratch scratch, int blockM, bool tileOrder, bool check,
        Compiler.KernelModuleCache cache, CudaStream? stream)
    {
        var p = vp.Attention;
        var args = new VarlenPrepareParams
        {
            CuSeqLensQ = (nint)vp.CuSeqLensQ.Address,
            CuSeqLensK = (nint)vp.CuSeqLensK.Address,
            SeqUsedK = vp.SeqUsedK is { } used ? (nint)used.Address : 0,
            TileOrder = tileOrder ? scratch.TileOrder : 0,
            TileStart = tileOrder ? scratch.TileStart : 0,
            Error = check ? scratch.Error : 0,
            Batch = p.Batch, TotalQ = vp.TotalQ, TotalK = vp.TotalK, MaxSeqLenQ = p.SeqLenQ, MaxSeqLenK = p.SeqLenK,
            BlockM = blockM, Heads = p.HeadsQ,
        };
        var entry = KernelCatalog.VarlenPrepareEntry;
        cache.GetKernel(entry.Spec, entry.NameExpression).Launch(new LaunchConfig(1, 1024, 0, stream), new KernelArguments().Add(args));
        if (!check) return;
        Span<int> words = stackalloc int[4];
        scratch.ErrorBuffer.CopyTo(words, 0, stream);  // waits for the check
        if (words[0] == 0) return;
        scratch.ErrorBuffer.Fill(0, stream);
        throw DescribeViolation(vp, words[0], words[1], words[2], words[3]);
    }

    /// <summary>The exception for a contract violation the prepare kernel recorded (<c>fa::VarlenError</c>).</summary>
    internal static AttentionArgumentException DescribeViolation(DeviceVarlenProblem vp, int code, int sequence, int entry, int value)
    {
        var p = vp.Attention;
        const string none = "; nothing was written";
        return code switch
        {
            1 => new("cuSeqLensQ", $"cuSeqLensQ[0] = {value}: expected 0{none}"),
            2 => new("cuSeqLensQ", $"cuSeqLensQ[{entry}] = {value}: expected non-decreasing offsets (at least cuSeqLensQ[{entry - 1}]){none}"),
            3 => new("cuSeqLensQ", $"cuSeqLensQ[{entry}] = {value}: expected at most total_q = {vp.TotalQ} (the rows of query){none}"),
            4 => new("cuSeqLensK", $"cuSeqLensK[0] = {value}: expected 0{none}"),
            5 => new("cuSeqLensK", $"cuSeqLensK[{entry}] = {value}: expected non-decreasing offsets (at least cuSeqLensK[{entry - 1}]){none}"),
            6 => new("cuSeqLensK", $"cuSeqLensK[{entry}] = {value}: expected at most total_k = {vp.TotalK} (the rows of key){none}"),
            7 => new("maxSeqLenQ", $"maxSeqLenQ = {p.SeqLenQ}: sequence {sequence} has {value} queries; expected the longest query sequence{none}"),
            8 => new("maxSeqLenK", $"maxSeqLenK = {p.SeqLenK}: sequence {sequence} attends to {value} keys; expected the longest key sequence{none}"),
            9 => new("seqUsedK", $"seqUsedK[{sequence}] = {value}: expected 0 … the sequence's key count (cuSeqLensK[{sequence + 1}] − cuSeqLensK[{sequence}]){none}"),
            _ => new("cuSeqLensQ", $"cuSeqLensQ: the device check reported code {code} (sequence {sequence}, entry {entry}, value {value}){none}"),
        };
    }

    /// <summary>Per (device, stream): the prepare kernel's error word, tile order and tile starts, grown with the batch.</summary>
    internal sealed class VarlenScratch : IDisposable
    {
        private static readonly PerStream<VarlenScratch> Scratches = new();
        private DeviceBuffer? _buffer;
        private int _batch = -1;

        public DeviceBuffer ErrorBuffer { get; private set; } = null!;
        public nint Error => ErrorBuffer.Pointer;
        public nint TileOrder, TileStart;

        public static VarlenScratch For(CudaDevice device, CudaStream? stream, int batch)
        {
            var s = Scratches.For(device, stream, () => new VarlenScratch(device, stream));
            lock (s)
            {
                if (batch > s._batch)
                {
                    // The previous buffer may still be read by work queued on this stream: let it finish first.
                    if (s._buffer is not null)
                    {
                        if (stream is not null) stream.Synchronize();
                        else device.Synchronize();
                        s._buffer.Dispose();
                    }
                    int capacity = Math.Max(batch, 1024);
                    s._buffer = new DeviceBuffer(4L * (2 * capacity + 1), device);
                    s._batch = capacity;
                    s.TileOrder = s._buffer.Pointer;
                    s.TileStart = s._buffer.Pointer + 4 * capacity;
                }
            }
            return s;
        }

        private VarlenScratch(CudaDevice device, CudaStream? stream)
        {
            ErrorBuffer = new DeviceBuffer(16, device);
            ErrorBuffer.Fill(0, stream);  // queued before the first launch that may write it
        }

        public void Dispose()
        {
            lock (this)
            {
                _buffer?.Dispose();
                _buffer = null;
                ErrorBuffer.Dispose();
            }
        }
    }
}
