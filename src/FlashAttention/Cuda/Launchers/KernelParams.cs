using System.Runtime.InteropServices;

namespace FlashAttention.Cuda.Launchers;

// Host mirrors of the kernel parameter structs in Cuda/Kernels/{fwd,bwd,fp8}/*_params.cuh and fp8/fp8_quantize.cu. Offsets are explicit and
// checked by unit tests against the sizes the header states; change both sides together.

/// <summary>Mirror of <c>fa::FwdParams</c> (104 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 104)]
internal struct FwdParams
{
    [FieldOffset(0)] public int Batch;
    [FieldOffset(4)] public int SeqLenQ;
    [FieldOffset(8)] public int SeqLenK;
    [FieldOffset(12)] public int HeadsQ;
    [FieldOffset(16)] public int HeadsK;
    [FieldOffset(20)] public int Group;
    [FieldOffset(24)] public int WindowLeft;
    [FieldOffset(28)] public int WindowRight;
    [FieldOffset(32)] public int NumMBlocks;
    [FieldOffset(36)] public int NumTiles;
    [FieldOffset(40)] public int LongestFirstHeads;
    [FieldOffset(44)] public int HasSoftcap;
    [FieldOffset(48)] public float SoftcapPremul;
    [FieldOffset(52)] public float ScoreScale;
    [FieldOffset(56)] public float ScoreScaleLog2;
    [FieldOffset(60)] public int Reserved;
    [FieldOffset(64)] public nint Lse;
    [FieldOffset(72)] public long LseStrideB;
    [FieldOffset(80)] public long LseStrideH;
    [FieldOffset(88)] public long LseStrideS;
    [FieldOffset(96)] public nint TileCounter;
}

/// <summary>Mirror of <c>fa::BwdParams</c> (152 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 152)]
internal struct BwdParams
{
    [FieldOffset(0)] public int Batch;
    [FieldOffset(4)] public int SeqLenQ;
    [FieldOffset(8)] public int SeqLenK;
    [FieldOffset(12)] public int HeadsQ;
    [FieldOffset(16)] public int HeadsK;
    [FieldOffset(20)] public int Group;
    [FieldOffset(24)] public int WindowLeft;
    [FieldOffset(28)] public int WindowRight;
    [FieldOffset(32)] public int SeqLenQPadded;
    [FieldOffset(36)] public int HasSoftcap;
    [FieldOffset(40)] public float SoftcapPremul;
    [FieldOffset(44)] public float ScoreScaleLog2;
    [FieldOffset(48)] public float SoftmaxScale;
    [FieldOffset(52)] public int Deterministic;
    [FieldOffset(56)] public nint LseLog2;
    [FieldOffset(64)] public nint DpSum;
    [FieldOffset(72)] public nint DqAccum;
    [FieldOffset(80)] public nint DqSemaphore;
    [FieldOffset(88)] public nint Dk;
    [FieldOffset(96)] public nint Dv;
    [FieldOffset(104)] public long DkStrideB;
    [FieldOffset(112)] public long DkStrideS;
    [FieldOffset(120)] public long DkStrideH;
    [FieldOffset(128)] public long DvStrideB;
    [FieldOffset(136)] public long DvStrideS;
    [FieldOffset(144)] public long DvStrideH;
}

/// <summary>Mirror of <c>fa::BwdAuxParams</c> (192 bytes): the backward pre- and post-pass.</summary>
[StructLayout(LayoutKind.Explicit, Size = 192)]
internal struct BwdAuxParams
{
    [FieldOffset(0)] public int Batch;
    [FieldOffset(4)] public int SeqLenQ;
    [FieldOffset(8)] public int HeadsQ;
    [FieldOffset(12)] public int HeadDim;
    [FieldOffset(16)] public int SeqLenQPadded;
    [FieldOffset(20)] public float SoftmaxScale;
    [FieldOffset(24)] public nint O;
    [FieldOffset(32)] public nint DO;
    [FieldOffset(40)] public nint Dq;
    [FieldOffset(48)] public nint Lse;
    [FieldOffset(56)] public long OStrideB;
    [FieldOffset(64)] public long OStrideS;
    [FieldOffset(72)] public long OStrideH;
    [FieldOffset(80)] public long DoStrideB;
    [FieldOffset(88)] public long DoStrideS;
    [FieldOffset(96)] public long DoStrideH;
    [FieldOffset(104)] public long DqStrideB;
    [FieldOffset(112)] public long DqStrideS;
    [FieldOffset(120)] public long DqStrideH;
    [FieldOffset(128)] public long LseStrideB;
    [FieldOffset(136)] public long LseStrideH;
    [FieldOffset(144)] public long LseStrideS;
    [FieldOffset(152)] public nint LseLog2;
    [FieldOffset(160)] public nint DpSum;
    [FieldOffset(168)] public nint DqAccum;
    [FieldOffset(176)] public nint DqSemaphore;
    [FieldOffset(184)] public int NumMBlocks;
    [FieldOffset(188)] public int Reserved;
}

/// <summary>Mirror of <c>fa::Fp8Params</c> (40 bytes): the FP8 forward's descales.</summary>
[StructLayout(LayoutKind.Explicit, Size = 40)]
internal struct Fp8Params
{
    [FieldOffset(0)] public nint QDescale;
    [FieldOffset(8)] public nint KDescale;
    [FieldOffset(16)] public nint VDescale;
    [FieldOffset(24)] public int QBlocks;
    [FieldOffset(28)] public int KvBlocks;
    [FieldOffset(32)] public int QBlock;
    [FieldOffset(36)] public int KvBlock;
}

/// <summary>Mirror of <c>fa::QuantizeParams</c> (104 bytes): one tensor's pass through the FP8 quantiser.</summary>
[StructLayout(LayoutKind.Explicit, Size = 104)]
internal unsafe struct QuantizeParams
{
    [FieldOffset(0)] public nint Source;
    [FieldOffset(8)] public long SourceStrideB;
    [FieldOffset(16)] public long SourceStrideS;
    [FieldOffset(24)] public long SourceStrideH;
    [FieldOffset(32)] public nint Destination;
    [FieldOffset(40)] public nint Descale;
    [FieldOffset(48)] public int SeqLen;
    [FieldOffset(52)] public int Heads;
    [FieldOffset(56)] public int Blocks;
    [FieldOffset(60)] public int Block;
    [FieldOffset(64)] public int SeqLenPadded;
    [FieldOffset(68)] public int Rotate;
    [FieldOffset(72)] public fixed uint Signs[8];
}
