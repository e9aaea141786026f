using System.Collections.Concurrent;
using FlashAttention.Cuda.Variants;
using FlashAttention.Numerics;

namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// The FP8 forward (fp8/fp8_fwd.cu) and its quantiser (fp8/fp8_quantize.cu) for validated problems. From bf16/fp16
/// inputs: Q and K quantised per block of tokens (rotated by the Hadamard × random-sign matrix first when incoherent
/// processing is on), V quantised and written transposed, all into the stream's workspace, then the kernel. From E4M3
/// inputs with the caller's descales: V transposed into the workspace, then the kernel.
/// </summary>
internal static class Fp8ForwardLauncher
{
    /// <summary>Quantises bf16/fp16 Q, K and V into the stream's workspace and runs the FP8 forward.</summary>
    public static void LaunchFromHalf(AttentionProblem p, in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        TensorLayout? lse, bool incoherent, int hadamardSeed, CudaStream? stream, CudaDevice device)
    {
        if (p.Batch == 0 || p.SeqLenQ == 0) return;
        var plan = new Plan(p);
        var ws = Workspace.For(device, stream, plan);
        Quantize(p, plan, ws.Operands, q, k, v, incoherent, hadamardSeed, stream, device);
        Attend(p, plan, ws.Operands, o, lse, stream, device);
    }

    /// <summary>Where the quantised operands of one call live: codes, Vᵀ and descales.</summary>
    internal readonly record struct Operands(nint Q, nint K, nint Vt, nint QDescale, nint KDescale, nint VDescale);

    /// <summary>The quantiser's three passes (Q and K rows, V into Vᵀ) into <paramref name="into"/>, in one launch.</summary>
    internal static void Quantize(AttentionProblem p, Plan plan, Operands into, in TensorLayout q, in TensorLayout k, in TensorLayout v,
        bool incoherent, int hadamardSeed, CudaStream? stream, CudaDevice device)
    {
        if (plan.SeqLenK == 0) return;
        uint[] signs = incoherent ? SignBits(p.HeadDim, hadamardSeed) : new uint[8];
        // A job per K or V descale block and per KvBlock tokens of Q (fp8_quantize.cu): a CTA per job, or resident CTAs walking them.
        long qJobs = (long)p.Batch * p.HeadsQ * ((p.SeqLenQ + plan.KvBlock - 1) / plan.KvBlock);
        long kvJobs = (long)p.Batch * p.HeadsK * plan.KvBlocks;
        long jobs = qJobs + 2 * kvJobs;
        var shape = VariantPolicy.Current.Quantizer(p.HeadDim);
        long grid = shape.Grid(jobs, device.MultiprocessorCount);
        // Resident CTAs index their next job, one stride past the last, in int arithmetic.
        if (jobs + (shape.Resident ? grid : 0) > int.MaxValue)
            throw new AttentionArgumentException("query", $"query: {jobs} quantiser jobs of {plan.KvBlock} tokens exceed the {int.MaxValue} one launch can index");
        var call = new QuantizeCall
        {
            Q = Pass(q, into.Q, into.QDescale, p.SeqLenQ, p.HeadsQ, plan.QBlocks, plan.QBlock, 0, incoherent, signs),
            K = Pass(k, into.K, into.KDescale, p.SeqLenK, p.HeadsK, plan.KvBlocks, plan.KvBlock, 0, incoherent, signs),
            V = Pass(v, into.Vt, into.VDescale, p.SeqLenK, p.HeadsK, plan.KvBlocks, plan.KvBlock, plan.KeysPadded, false, signs),
            QJobs = (int)qJobs, KvJobs = (int)kvJobs,
        };
        var entry = KernelCatalog.QuantizeEntry(p.Type, shape);
        var config = new LaunchConfig(new Dim3((uint)grid, 1, 1), shape.Threads, shape.SharedMemoryBytes, stream);
        var kernel = Compiler.KernelModuleCache.For(device).GetKernel(entry.Spec, entry.NameExpression);
        // Resident, 1024 threads' two stages fill about 165 KB per SM, past the driver's usual choice of carveout.
        if (shape.Resident) kernel.PreferLargestSharedMemoryCarveout();
        kernel.Launch(config, new KernelArguments().Add(call));
    }

    /// <summary>The FP8 kernel on operands the quantiser wrote.</summary>
    internal static void Attend(AttentionProblem p, Plan plan, Operands from, in TensorLayout o, TensorLayout? lse, CudaStream? stream, CudaDevice device)
    {
        var q8 = Rows("query", from.Q, p.Batch, p.SeqLenQ, p.HeadsQ, p.HeadDim);
        var k8 = Rows("key", from.K, p.Batch, p.SeqLenK, p.HeadsK, p.HeadDim);
        Attend(p, VariantPolicy.Current.Fp8(p.HeadDim), q8, k8, from.Vt, plan.KeysPadded, new Fp8Params
        {
            QDescale = from.QDescale, KDescale = from.KDescale, VDescale = from.VDescale,
            QBlocks = plan.QBlocks, KvBlocks = plan.KvBlocks, QBlock = plan.QBlock, KvBlock = plan.KvBlock,
        }, o, lse, stream, device);
    }

    /// <summary>Runs the FP8 forward on the caller's E4M3 Q, K, V and descales (V transposed into the workspace first).</summary>
    public static void LaunchQuantized(AttentionProblem p, in TensorLayout q, in TensorLayout k, in TensorLayout v,
        in TensorLayout qDescale, in TensorLayout kDescale, in TensorLayout vDescale, int qBlock, int kvBlock,
        in TensorLayout o, TensorLayout? lse, CudaStream? stream, CudaDevice device)
    {
        if (p.Batch == 0 || p.SeqLenQ == 0) return;
        var variant = VariantPolicy.Current.Fp8(p.HeadDim);
        var plan = new Plan(p) with { KvBlock = Fp8Variants.TransposeBlock, TransposeOnly = true };
        var ws = Workspace.For(device, stream, plan);
        int kvBlocks = (int)kDescale.Lengths[2];
        if (plan.SeqLenK > 0)
        {
            var entry = KernelCatalog.TransposeVtEntry(p.HeadDim);
            var args = Pass(v, ws.Vt, 0, p.SeqLenK, p.HeadsK, plan.KvBlocks, plan.KvBlock, plan.KeysPadded, false, new uint[8]);
            Compiler.KernelModuleCache.For(device).GetKernel(entry.Spec, entry.NameExpression)
                .Launch(new LaunchConfig(new Dim3((uint)plan.KvBlocks, (uint)p.HeadsK, (uint)p.Batch), 2 * p.HeadDim, 0, stream), new KernelArguments().Add(args));
        }
        Attend(p, variant, q, k, ws.Vt, plan.KeysPadded, new Fp8Params
        {
            QDescale = (nint)qDescale.Address, KDescale = (nint)kDescale.Address, VDescale = (nint)vDescale.Address,
            QBlocks = (int)qDescale.Lengths[2], KvBlocks = kvBlocks, QBlock = qBlock, KvBlock = kvBlock,
        }, o, lse, stream, device);
    }

    private static void Attend(AttentionProblem p, Fp8Variant variant, in TensorLayout q8, in TensorLayout k8, nint vt, int keysPadded,
        Fp8Params scales, in TensorLayout o, TensorLayout? lse, CudaStream? stream, CudaDevice device)
    {
        var entry = KernelCatalog.Fp8Entry(variant, o.Type);
        var kernel = Compiler.KernelModuleCache.For(device).GetKernel(entry.Spec, entry.NameExpression);
        var (args, tiles) = FlashForwardLauncher.TileParams(p, variant.BlockM, warpSpecialized: true, lse, VariantPolicy.Current, stream, device);
        var arguments = new KernelArguments()
            .Add(args)
            .Add(scales)
            .Add(AttentionTensorMaps.Tokens(q8, (uint)variant.BlockM, device))
            .Add(AttentionTensorMaps.Tokens(k8, (uint)variant.BlockN, device))
            .Add(AttentionTensorMaps.KeysMajor((nuint)vt, keysPadded, p.HeadDim, p.HeadsK, p.Batch, device))
            .Add(AttentionTensorMaps.Tokens(o, 64, device));
        int grid = (int)Math.Min(tiles, device.MultiprocessorCount);
        kernel.Launch(new LaunchConfig(grid, variant.Threads, variant.SharedMemoryBytes, stream), arguments);
    }

    // One tensor's pass: its source, where its codes and descales go, and its blocks of tokens.
    private static unsafe QuantizeParams Pass(in TensorLayout source, nint destination, nint descale, int seqLen, int heads, int blocks, int block,
        int keysPadded, bool rotate, uint[] signs)
    {
        var args = new QuantizeParams
        {
            Source = (nint)source.Address,
            SourceStrideB = source.Strides[0], SourceStrideS = source.Strides[1], SourceStrideH = source.Strides[2],
            Destination = destination, Descale = descale,
            SeqLen = seqLen, Heads = heads, Blocks = blocks, Block = block, SeqLenPadded = keysPadded, Rotate = rotate ? 1 : 0,
        };
        for (int i = 0; i < 8; i++) args.Signs[i] = signs[i];
        return args;
    }

    private static TensorLayout Rows(string name, nint address, int batch, int seqLen, int heads, int headDim)
        => new(name, DataType.Float8E4M3, [batch, seqLen, heads, headDim], DeviceTensor.ContiguousStrides([batch, seqLen, heads, headDim]), (nuint)address);

    private static readonly ConcurrentDictionary<(int, int), uint[]> Signs = new();

    /// <summary>The random signs of <see cref="Hadamard.RandomSigns"/> as the quantiser takes them: bit i set where coordinate i is negated.</summary>
    internal static uint[] SignBits(int headDim, int seed) => Signs.GetOrAdd((headDim, seed), key =>
    {
        var signs = Hadamard.RandomSigns(key.Item1, key.Item2);
        var bits = new uint[8];
        for (int i = 0; i < signs.Length; i++)
            if (signs[i] < 0) bits[i / 32] |= 1u << (i % 32);
        return bits;
    });

    /// <summary>The quantised problem's sizes: blocks of Q and K/V tokens, the padded Vᵀ rows.</summary>
    internal readonly record struct Plan(int Batch, int SeqLenQ, int SeqLenK, int HeadsQ, int HeadsK, int HeadDim, int QBlock, int KvBlock, bool TransposeOnly = false)
    {
        public Plan(AttentionProblem p)
            : this(p.Batch, p.SeqLenQ, p.SeqLenK, p.HeadsQ, p.HeadsK, p.HeadDim, Fp8Variants.QueryBlock, Fp8Variants.KeyBlock) { }

        public int QBlocks => (SeqLenQ + QBlock - 1) / QBlock;
        public int KvBlocks => (SeqLenK + KvBlock - 1) / KvBlock;
        /// <summary>Vᵀ rows: keys rounded up to 16 (the permutation's group, and TMA's 16-byte strides); 16 at least, for a legal map.</summary>
        public int KeysPadded => Math.Max(16, (SeqLenK + 15) / 16 * 16);
    }

    /// <summary>The quantised tensors and descales of one (device, stream), grown on demand.</summary>
    internal sealed class Workspace : IDisposable
    {
        internal static readonly PerStream<Workspace> Workspaces = new();
        private DeviceBuffer? _buffer;

        public Operands Operands { get; private set; }
        public nint Q => Operands.Q;
        public nint K => Operands.K;
        public nint Vt => Operands.Vt;
        public nint QDescale => Operands.QDescale;
        public nint KDescale => Operands.KDescale;
        public nint VDescale => Operands.VDescale;

        public static Workspace For(CudaDevice device, CudaStream? stream, Plan plan)
        {
            var ws = Workspaces.For(device, stream, () => new Workspace());
            lock (ws)
            {
                long total = Bytes(plan);
                if (ws._buffer is null || ws._buffer.ByteCount < total)
                {
                    // The previous buffer may still be read by work queued on this stream: let it finish first.
                    stream?.Synchronize();
                    if (stream is null) device.Synchronize();
                    ws._buffer?.Dispose();
                    ws._buffer = new DeviceBuffer(Math.Max(total, 1 << 20), device);
                }
                ws.Operands = Layout(ws._buffer.Pointer, plan);
            }
            return ws;
        }

        private static long Align(long bytes) => (bytes + 255) & ~255L;

        private static (long Q, long K, long Vt, long QDescale, long KvDescale) Sizes(Plan plan) =>
        (
            plan.TransposeOnly ? 0 : Align((long)plan.Batch * plan.SeqLenQ * plan.HeadsQ * plan.HeadDim),
            plan.TransposeOnly ? 0 : Align((long)plan.Batch * plan.SeqLenK * plan.HeadsK * plan.HeadDim),
            Align((long)plan.Batch * plan.HeadsK * plan.HeadDim * plan.KeysPadded),
            plan.TransposeOnly ? 0 : Align(4L * plan.Batch * plan.HeadsQ * plan.QBlocks),
            plan.TransposeOnly ? 0 : Align(4L * plan.Batch * plan.HeadsK * plan.KvBlocks)
        );

        /// <summary>Bytes the operands of <paramref name="plan"/> take.</summary>
        internal static long Bytes(Plan plan)
        {
            var z = Sizes(plan);
            return z.Q + z.K + z.Vt + z.QDescale + 2 * z.KvDescale;
        }

        /// <summary>The operands of <paramref name="plan"/> laid out from <paramref name="b"/> (Vᵀ first: the transposer needs only it).</summary>
        internal static Operands Layout(nint b, Plan plan)
        {
            var z = Sizes(plan);
            nint q = b + (nint)z.Vt, k = q + (nint)z.Q, qd = k + (nint)z.K, kd = qd + (nint)z.QDescale;
            return new Operands(q, k, b, qd, kd, kd + (nint)z.KvDescale);
        }

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
