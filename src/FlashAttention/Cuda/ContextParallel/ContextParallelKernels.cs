using FlashAttention.Cuda.Compiler;
using FlashAttention.Cuda.Launchers;

namespace FlashAttention.Cuda.ContextParallel;

/// <summary>
/// The row kernels of context parallelism (cp/cp_rows.cu): merge of a step's partial O/LSE into float32 accumulators,
/// float32 accumulation of partial gradients, and packing/conversion copies. Each launch covers one (batch, rows, heads,
/// head_dim) block of rows given as <see cref="RowBlock"/> views; a warp handles one (batch, row, head).
/// </summary>
internal static class ContextParallelKernels
{
    public const string Source = "cp/cp_rows.cu";
    public static readonly int[] HeadDims = [64, 128, 256];
    private const int RowsPerBlock = 4;  // kCpRowsPerBlock

    private static string Tag(DataType type) => type == DataType.Float32 ? "float" : Variants.KernelNames.ElementTag(type);

    public static string MergeExpression(DataType type, int headDim) => $"fa::cp_merge_kernel<{Tag(type)}, {headDim}>";
    public static string AddExpression(DataType source, int headDim) => $"fa::cp_add_kernel<{Tag(source)}, {headDim}>";
    public static string CopyExpression(DataType source, DataType target, int headDim) => $"fa::cp_copy_kernel<{Tag(source)}, {Tag(target)}, {headDim}>";

    /// <summary>Every instantiation the context-parallel paths launch, for the warm-up and the compile tests.</summary>
    public static IEnumerable<KernelCatalog.Entry> All()
    {
        foreach (var type in KernelCatalog.KernelTypes)
        {
            string name = DataTypes.ShortName(type);
            foreach (int d in HeadDims)
            {
                yield return Entry($"cp-merge {name} d{d}", MergeExpression(type, d));
                yield return Entry($"cp-add {name} d{d}", AddExpression(type, d));
                yield return Entry($"cp-add f32 d{d}", AddExpression(DataType.Float32, d));
                yield return Entry($"cp-copy {name} d{d}", CopyExpression(type, type, d));
                yield return Entry($"cp-copy f32→{name} d{d}", CopyExpression(DataType.Float32, type, d));
                yield return Entry($"cp-copy f32 d{d}", CopyExpression(DataType.Float32, DataType.Float32, d));
            }
        }
    }

    private static KernelCatalog.Entry Entry(string label, string expression) => new(label, KernelCatalog.Spec(Source, expression), expression);

    /// <summary>Running accumulators (float32 O, LSE) absorb a part (O in its element type, LSE).</summary>
    public static void Merge(RowBlock part, RowBlock accumulator, CudaStream stream)
        => Launch(MergeExpression(part.Type, part.HeadDim), part, accumulator, stream);

    /// <summary><paramref name="accumulator"/> (float32) += <paramref name="part"/>.</summary>
    public static void Add(RowBlock part, RowBlock accumulator, CudaStream stream)
        => Launch(AddExpression(part.Type, part.HeadDim), part, accumulator, stream);

    /// <summary><paramref name="target"/> = <paramref name="source"/> converted; LSE rows too when both carry them.</summary>
    public static void Copy(RowBlock source, RowBlock target, CudaStream stream)
        => Launch(CopyExpression(source.Type, target.Type, source.HeadDim), source, target, stream);

    private static void Launch(string expression, RowBlock src, RowBlock dst, CudaStream stream)
    {
        if (src.Batch != dst.Batch || src.Rows != dst.Rows || src.Heads != dst.Heads || src.HeadDim != dst.HeadDim)
            throw new InvalidOperationException($"row blocks differ: {src} and {dst}");
        long rows = (long)src.Batch * src.Rows * src.Heads;
        if (rows == 0) return;
        var p = new CpRowsParams
        {
            Batch = src.Batch, Rows = src.Rows, Heads = src.Heads,
            Src = src.Pointer, SrcStrideB = src.StrideB, SrcStrideS = src.StrideS, SrcStrideH = src.StrideH,
            Dst = dst.Pointer, DstStrideB = dst.StrideB, DstStrideS = dst.StrideS, DstStrideH = dst.StrideH,
            SrcLse = src.Lse, SrcLseStrideB = src.LseStrideB, SrcLseStrideH = src.LseStrideH, SrcLseStrideS = src.LseStrideS,
            DstLse = src.Lse != 0 ? dst.Lse : 0, DstLseStrideB = dst.LseStrideB, DstLseStrideH = dst.LseStrideH, DstLseStrideS = dst.LseStrideS,
        };
        var entry = KernelCatalog.Spec(Source, expression);
        KernelModuleCache.For(stream.Device).GetKernel(entry, expression)
            .Launch(new LaunchConfig((int)((rows + RowsPerBlock - 1) / RowsPerBlock), 32 * RowsPerBlock, 0, stream), new KernelArguments().Add(p));
    }
}

/// <summary>
/// A block of rows of a (batch, seqlen, heads, head_dim) tensor (head_dim contiguous), and optionally its LSE rows
/// (batch, heads, seqlen) float32: the operand of the row kernels. Strides in elements.
/// </summary>
internal readonly record struct RowBlock(nint Pointer, DataType Type, int Batch, int Rows, int Heads, int HeadDim,
    long StrideB, long StrideS, long StrideH, nint Lse = 0, long LseStrideB = 0, long LseStrideH = 0, long LseStrideS = 0)
{
    /// <summary>Rows <paramref name="first"/> … <paramref name="first"/> + <paramref name="count"/> − 1 of the tensor <paramref name="t"/>.</summary>
    public static RowBlock Of(DeviceTensor t, int first, int count, DeviceTensor? lse = null)
    {
        var l = t.Lengths; var s = t.Strides;
        int size = DataTypes.SizeOf(t.Type);
        nint pointer = t.Pointer + (nint)(first * s[1] * size);
        if (lse is not { } x) return new(pointer, t.Type, (int)l[0], count, (int)l[2], (int)l[3], s[0], s[1], s[2]);
        var ls = x.Strides;
        return new(pointer, t.Type, (int)l[0], count, (int)l[2], (int)l[3], s[0], s[1], s[2],
            x.Pointer + (nint)(first * ls[2] * sizeof(float)), ls[0], ls[1], ls[2]);
    }

    /// <summary>The whole tensor.</summary>
    public static RowBlock Of(DeviceTensor t, DeviceTensor? lse = null) => Of(t, 0, (int)t.Lengths[1], lse);

    public override string ToString() => $"{DataTypes.ShortName(Type)} ({Batch}, {Rows}, {Heads}, {HeadDim})";
}
