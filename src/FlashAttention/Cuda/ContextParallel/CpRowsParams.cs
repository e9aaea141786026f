using System.Runtime.InteropServices;

namespace FlashAttention.Cuda.ContextParallel;

/// <summary>Mirror of <c>fa::CpRowsParams</c> (144 bytes, cp/cp_params.cuh): rows of (batch, rows, heads, head_dim) tensors.</summary>
[StructLayout(LayoutKind.Explicit, Size = 144)]
internal struct CpRowsParams
{
    [FieldOffset(0)] public int Batch;
    [FieldOffset(4)] public int Rows;
    [FieldOffset(8)] public int Heads;
    [FieldOffset(12)] public int Reserved;
    [FieldOffset(16)] public nint Src;
    [FieldOffset(24)] public long SrcStrideB;
    [FieldOffset(32)] public long SrcStrideS;
    [FieldOffset(40)] public long SrcStrideH;
    [FieldOffset(48)] public nint Dst;
    [FieldOffset(56)] public long DstStrideB;
    [FieldOffset(64)] public long DstStrideS;
    [FieldOffset(72)] public long DstStrideH;
    [FieldOffset(80)] public nint SrcLse;
    [FieldOffset(88)] public long SrcLseStrideB;
    [FieldOffset(96)] public long SrcLseStrideH;
    [FieldOffset(104)] public long SrcLseStrideS;
    [FieldOffset(112)] public nint DstLse;
    [FieldOffset(120)] public long DstLseStrideB;
    [FieldOffset(128)] public long DstLseStrideH;
    [FieldOffset(136)] public long DstLseStrideS;
}
