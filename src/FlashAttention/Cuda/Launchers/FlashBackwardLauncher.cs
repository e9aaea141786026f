using FlashAttention.Cuda.Variants;

namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// Launches the backward pass (bwd/flash_bwd.cu): the pre-pass (D = rowsum(dO ∘ O), LSE in base 2, dQ accumulator and
/// semaphores cleared), the main kernel (one CTA per 128 keys of a key head, looping over the query heads of its
/// GQA group and the query blocks that see its keys; 64 keys at d256), and the post-pass (dQ = scale · accumulator, in the input type).
/// Float32 side buffers live in a workspace per (device, stream) that grows as needed.
/// </summary>
internal static class FlashBackwardLauncher
{
    public static void Launch(AttentionProblem p, in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        in TensorLayout dO, in TensorLayout lse, in TensorLayout dq, in TensorLayout dk, in TensorLayout dv,
        CudaStream? stream, CudaDevice device)
    {
        if (p.Batch == 0) return;
        var config = VariantPolicy.Current.Backward(p.HeadDim, softcap: p.Softcap > 0);
        var cache = Compiler.KernelModuleCache.For(device);
        var entries = KernelCatalog.BackwardEntry(p.Type, config);
        var main = cache.GetKernel(entries.Main.Spec, entries.Main.NameExpression);
        var pre = cache.GetKernel(entries.Pre.Spec, entries.Pre.NameExpression);
        var post = cache.GetKernel(entries.Post.Spec, entries.Post.NameExpression);

        // Query rows padded to the main kernel's step (its LSE/D loads and dQ blocks cover whole steps); the pre- and
        // post-pass work in 64-row blocks, and the semaphores are allotted per 64-row block (a superset for
        // 128-row steps).
        int padded = (p.SeqLenQ + config.BlockM - 1) / config.BlockM * config.BlockM;
        int mBlocks = padded / 64;
        long rows = (long)p.Batch * p.HeadsQ * padded;
        var ws = Workspace.For(device, stream, rows, p.HeadDim, (long)p.Batch * p.HeadsQ * mBlocks);

        var aux = new BwdAuxParams
        {
            Batch = p.Batch, SeqLenQ = p.SeqLenQ, HeadsQ = p.HeadsQ, HeadDim = p.HeadDim, SeqLenQPadded = padded,
            SoftmaxScale = p.Scale,
            O = (nint)o.Address, DO = (nint)dO.Address, Dq = (nint)dq.Address, Lse = (nint)lse.Address,
            OStrideB = p.O.Batch, OStrideS = p.O.Sequence, OStrideH = p.O.Head,
            DoStrideB = p.DO.Batch, DoStrideS = p.DO.Sequence, DoStrideH = p.DO.Head,
            DqStrideB = p.DQ.Batch, DqStrideS = p.DQ.Sequence, DqStrideH = p.DQ.Head,
            LseStrideB = p.Lse.Batch, LseStrideH = p.Lse.Head, LseStrideS = p.Lse.Query,
            LseLog2 = ws.LseLog2, DpSum = ws.DpSum, DqAccum = ws.DqAccum, DqSemaphore = ws.Semaphores,
            NumMBlocks = mBlocks,
        };
        if (mBlocks > 0)
            pre.Launch(new LaunchConfig(new Dim3((uint)mBlocks, (uint)p.HeadsQ, (uint)p.Batch), 256, 0, stream), new KernelArguments().Add(aux));

        LaunchMain(main, config, MainParams(p, padded, ws, dk, dv, packed: false), p, q, k, v, dO, stream, device);
        if (mBlocks > 0)
            post.Launch(new LaunchConfig(new Dim3((uint)mBlocks, (uint)p.HeadsQ, (uint)p.Batch), 256, 0, stream), new KernelArguments().Add(aux));
    }

    /// <summary>The main kernel's parameters; a packed (varlen) problem's dK and dV have no batch stride.</summary>
    internal static BwdParams MainParams(AttentionProblem p, int padded, Workspace ws, in TensorLayout dk, in TensorLayout dv, bool packed)
    {
        bool softcap = p.Softcap > 0;
        return new BwdParams
        {
            Batch = p.Batch, SeqLenQ = p.SeqLenQ, SeqLenK = p.SeqLenK, HeadsQ = p.HeadsQ, HeadsK = p.HeadsK,
            Group = p.GroupSize, WindowLeft = p.WindowLeft, WindowRight = p.WindowRight, SeqLenQPadded = padded,
            HasSoftcap = softcap ? 1 : 0,
            SoftcapPremul = softcap ? p.Scale / p.Softcap : 0f,
            ScoreScaleLog2 = (softcap ? p.Softcap : p.Scale) * 1.4426950408889634f,
            SoftmaxScale = p.Scale,
            Deterministic = p.Deterministic ? 1 : 0,
            LseLog2 = ws.LseLog2, DpSum = ws.DpSum, DqAccum = ws.DqAccum, DqSemaphore = ws.Semaphores,
            Dk = (nint)dk.Address, Dv = (nint)dv.Address,
            DkStrideB = packed ? 0 : p.DK.Batch, DkStrideS = p.DK.Sequence, DkStrideH = p.DK.Head,
            DvStrideB = packed ? 0 : p.DV.Batch, DvStrideS = p.DV.Sequence, DvStrideH = p.DV.Head,
        };
    }

    /// <summary>The main kernel: one CTA per key block of each key head and sequence, reading q, k, v and dO through tensor maps.</summary>
    internal static void LaunchMain(CudaKernel main, BackwardVariant config, BwdParams args, AttentionProblem p,
        in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout dO, CudaStream? stream, CudaDevice device)
    {
        int nBlocks = (p.SeqLenK + config.BlockN - 1) / config.BlockN;
        if (nBlocks == 0) return;
        var arguments = new KernelArguments()
            .Add(args)
            .Add(AttentionTensorMaps.Tokens(q, BackwardVariant.TmaRows, device))
            .Add(AttentionTensorMaps.Tokens(k, (uint)config.BlockN, device))
            .Add(AttentionTensorMaps.Tokens(v, (uint)config.BlockN, device))
            .Add(AttentionTensorMaps.Tokens(dO, BackwardVariant.TmaRows, device));
        main.Launch(new LaunchConfig(new Dim3((uint)nBlocks, (uint)p.HeadsK, (uint)p.Batch), BackwardVariant.Threads,
            config.SharedMemoryBytes, stream), arguments);
    }

    /// <summary>Float32 side buffers of the backward pass, one per (device, stream), grown on demand.</summary>
    internal sealed class Workspace : IDisposable
    {
        internal static readonly PerStream<Workspace> Workspaces = new();
        private DeviceBuffer? _buffer;

        public nint LseLog2, DpSum, DqAccum, Semaphores;

        public static Workspace For(CudaDevice device, CudaStream? stream, long rows, int headDim, long semaphores)
        {
            var ws = Workspaces.For(device, stream, () => new Workspace());
            lock (ws)
            {
                static long Align(long bytes) => (bytes + 255) & ~255L;
                long lseBytes = Align(rows * 4), accBytes = Align(rows * headDim * 4), semBytes = Align(semaphores * 4);
                long total = 2 * lseBytes + accBytes + semBytes;
                if (ws._buffer is null || ws._buffer.ByteCount < total)
                {
                    // The previous buffer may still be read by work queued on this stream: let it finish first.
                    stream?.Synchronize();
                    if (stream is null) device.Synchronize();
                    ws._buffer?.Dispose();
                    ws._buffer = new DeviceBuffer(Math.Max(total, 1 << 20), device);
                }
                nint b = ws._buffer.Pointer;
                ws.LseLog2 = b;
                ws.DpSum = b + (nint)lseBytes;
                ws.DqAccum = b + (nint)(2 * lseBytes);
                ws.Semaphores = b + (nint)(2 * lseBytes + accBytes);
            }
            return ws;
        }

        /// <summary>Frees the buffer (called when the stream is disposed, after its work has finished).</summary>
        public void Dispose()
        {
            lock (this)
            {
                _buffer?.Dispose();
                _buffer = null;
            }
        }
    }
}
