using System.Runtime.InteropServices;

namespace FlashAttention.Cuda.Launchers;

// Host mirrors of the kernel parameter structs in Cuda/Kernels/{fwd,bwd,fp8}/*_params.cuh and fp8/fp8_quantize.cu. Offsets are explicit and
// checked by unit tests against the sizes the header states; change both sides together.

/// <summary>Mirror of <c>fa::FwdParams</c> (176 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 176)]
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
    [FieldOffset(104)] public nint CuSeqLensQ;
    [FieldOffset(112)] public nint CuSeqLensK;
    [FieldOffset(120)] public nint SeqUsedK;
    [FieldOffset(128)] public nint TileOrder;
    [FieldOffset(136)] public nint TileStart;
    [FieldOffset(144)] public nint O;
    [FieldOffset(152)] public long OStrideS;
    [FieldOffset(160)] public long OStrideH;
    [FieldOffset(168)] public int TotalQ;
    [FieldOffset(172)] public int TotalK;
}

/// <summary>Mirror of <c>fa::BwdParams</c> (184 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 184)]
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
    [FieldOffset(152)] public nint CuSeqLensQ;
    [FieldOffset(160)] public nint CuSeqLensK;
    [FieldOffset(168)] public nint SeqUsedK;
    [FieldOffset(176)] public int TotalQ;
    [FieldOffset(180)] public int TotalK;
}

/// <summary>Mirror of <c>fa::BwdAuxParams</c> (200 bytes): the backward pre- and post-pass.</summary>
[StructLayout(LayoutKind.Explicit, Size = 200)]
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
    [FieldOffset(188)] public int TotalQ;
    [FieldOffset(192)] public nint CuSeqLensQ;
}

/// <summary>Mirror of <c>fa::VarlenPrepareParams</c> (80 bytes): the variable-length batches' check and tile order (varlen/varlen_prepare.cu).</summary>
[StructLayout(LayoutKind.Explicit, Size = 80)]
internal struct VarlenPrepareParams
{
    [FieldOffset(0)] public nint CuSeqLensQ;
    [FieldOffset(8)] public nint CuSeqLensK;
    [FieldOffset(16)] public nint SeqUsedK;
    [FieldOffset(24)] public nint TileOrder;
    [FieldOffset(32)] public nint TileStart;
    [FieldOffset(40)] public nint Error;
    [FieldOffset(48)] public int Batch;
    [FieldOffset(52)] public int TotalQ;
    [FieldOffset(56)] public int TotalK;
    [FieldOffset(60)] public int MaxSeqLenQ;
    [FieldOffset(64)] public int MaxSeqLenK;
    [FieldOffset(68)] public int BlockM;
    [FieldOffset(72)] public int Heads;
    [FieldOffset(76)] public int Reserved;
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

/// <summary>Mirror of <c>fa::QuantizeCall</c> (320 bytes): the quantiser's three passes of one call in one launch.</summary>
[StructLayout(LayoutKind.Explicit, Size = 320)]
internal struct QuantizeCall
{
    [FieldOffset(0)] public QuantizeParams Q;
    [FieldOffset(104)] public QuantizeParams K;
    [FieldOffset(208)] public QuantizeParams V;
    [FieldOffset(312)] public int QJobs;
    [FieldOffset(316)] public int KvJobs;
}

/// <summary>Mirror of <c>fa::DecodeParams</c> (240 bytes): the decode kernel (decode/decode_params.cuh).</summary>
[StructLayout(LayoutKind.Explicit, Size = 240)]
internal struct DecodeParams
{
    [FieldOffset(0)] public int Batch;
    [FieldOffset(4)] public int SeqLenQ;
    [FieldOffset(8)] public int HeadsQ;
    [FieldOffset(12)] public int HeadsK;
    [FieldOffset(16)] public int Group;
    [FieldOffset(20)] public int Rows;
    [FieldOffset(24)] public int NumMBlocks;
    [FieldOffset(28)] public int NumSplits;
    [FieldOffset(32)] public int SeqLenK;
    [FieldOffset(36)] public int SeqLenNew;
    [FieldOffset(40)] public int MaxSeqLen;
    [FieldOffset(44)] public int WindowLeft;
    [FieldOffset(48)] public int WindowRight;
    [FieldOffset(52)] public int PageSize;
    [FieldOffset(56)] public int BoxRows;
    [FieldOffset(60)] public int NumPages;
    [FieldOffset(64)] public int MaxPages;
    [FieldOffset(68)] public int HasSoftcap;
    [FieldOffset(72)] public float SoftcapPremul;
    [FieldOffset(76)] public float ScoreScale;
    [FieldOffset(80)] public float ScoreScaleLog2;
    [FieldOffset(84)] public int Reserved;
    [FieldOffset(88)] public nint SeqLens;
    [FieldOffset(96)] public nint PageTable;
    [FieldOffset(104)] public long PageTableStride;
    [FieldOffset(112)] public nint Q;
    [FieldOffset(120)] public long QStrideB;
    [FieldOffset(128)] public long QStrideS;
    [FieldOffset(136)] public long QStrideH;
    [FieldOffset(144)] public nint O;
    [FieldOffset(152)] public long OStrideB;
    [FieldOffset(160)] public long OStrideS;
    [FieldOffset(168)] public long OStrideH;
    [FieldOffset(176)] public nint Lse;
    [FieldOffset(184)] public long LseStrideB;
    [FieldOffset(192)] public long LseStrideH;
    [FieldOffset(200)] public long LseStrideS;
    [FieldOffset(208)] public nint OPartial;
    [FieldOffset(216)] public nint LsePartial;
    [FieldOffset(224)] public nint Error;
    [FieldOffset(232)] public nint SplitCounters;
}

/// <summary>Mirror of <c>fa::KvCacheParams</c> (192 bytes): the KV-cache append and check kernels (decode/decode_params.cuh).</summary>
[StructLayout(LayoutKind.Explicit, Size = 192)]
internal struct KvCacheParams
{
    [FieldOffset(0)] public int Batch;
    [FieldOffset(4)] public int SeqLenNew;
    [FieldOffset(8)] public int HeadsK;
    [FieldOffset(12)] public int MaxSeqLen;
    [FieldOffset(16)] public int PageSize;
    [FieldOffset(20)] public int NumPages;
    [FieldOffset(24)] public int MaxPages;
    [FieldOffset(28)] public int Reserved;
    [FieldOffset(32)] public nint SeqLens;
    [FieldOffset(40)] public nint PageTable;
    [FieldOffset(48)] public long PageTableStride;
    [FieldOffset(56)] public nint KNew;
    [FieldOffset(64)] public long KNewStrideB;
    [FieldOffset(72)] public long KNewStrideS;
    [FieldOffset(80)] public long KNewStrideH;
    [FieldOffset(88)] public nint VNew;
    [FieldOffset(96)] public long VNewStrideB;
    [FieldOffset(104)] public long VNewStrideS;
    [FieldOffset(112)] public long VNewStrideH;
    [FieldOffset(120)] public nint KCache;
    [FieldOffset(128)] public long KCacheStrideB;
    [FieldOffset(136)] public long KCacheStrideS;
    [FieldOffset(144)] public long KCacheStrideH;
    [FieldOffset(152)] public nint VCache;
    [FieldOffset(160)] public long VCacheStrideB;
    [FieldOffset(168)] public long VCacheStrideS;
    [FieldOffset(176)] public long VCacheStrideH;
    [FieldOffset(184)] public nint Error;
}

