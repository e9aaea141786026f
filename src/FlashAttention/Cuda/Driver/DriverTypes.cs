using System.Runtime.InteropServices;

namespace FlashAttention.Cuda;

/// <summary><c>CUdevice_attribute</c> values the library reads (cuda.h).</summary>
internal static class CuDeviceAttribute
{
    public const int MaxThreadsPerBlock = 1;
    public const int MaxSharedMemoryPerBlock = 8;
    public const int WarpSize = 10;
    public const int MaxRegistersPerBlock = 12;
    public const int ClockRate = 13;
    public const int MultiprocessorCount = 16;
    public const int PciBusId = 33;
    public const int MemoryClockRate = 36;
    public const int GlobalMemoryBusWidth = 37;
    public const int L2CacheSize = 38;
    public const int MaxThreadsPerMultiprocessor = 39;
    public const int ComputeCapabilityMajor = 75;
    public const int ComputeCapabilityMinor = 76;
    public const int MaxSharedMemoryPerMultiprocessor = 81;
    public const int MaxRegistersPerMultiprocessor = 82;
    public const int MaxSharedMemoryPerBlockOptin = 97;
    public const int ClusterLaunch = 120;
}

/// <summary><c>CUfunction_attribute</c> values (cuda.h).</summary>
internal static class CuFunctionAttribute
{
    public const int MaxThreadsPerBlock = 0;
    public const int SharedSizeBytes = 1;
    public const int ConstSizeBytes = 2;
    public const int LocalSizeBytes = 3;
    public const int NumRegs = 4;
    public const int PtxVersion = 5;
    public const int BinaryVersion = 6;
    public const int MaxDynamicSharedSizeBytes = 8;
    public const int PreferredSharedMemoryCarveout = 9;
    public const int NonPortableClusterSizeAllowed = 14;
}

/// <summary><c>CUlaunchAttributeID</c> values (cuda.h, CUDA 12).</summary>
internal static class CuLaunchAttributeId
{
    public const int ClusterDimension = 4;
    public const int ClusterSchedulingPolicyPreference = 5;
    public const int ProgrammaticStreamSerialization = 6;
}

/// <summary>
/// <c>CUlaunchAttribute</c>: a 4-byte id, 4 bytes of padding, then the 64-byte <c>CUlaunchAttributeValue</c> union
/// (72 bytes in all). Two members of the union are used: the cluster dimension (three <c>unsigned int</c>s at its start)
/// and <c>programmaticStreamSerializationAllowed</c> (an <c>int</c> at its start).
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 72)]
internal struct CuLaunchAttribute
{
    [FieldOffset(0)] public int Id;
    [FieldOffset(8)] public int ProgrammaticStreamSerializationAllowed;
    [FieldOffset(8)] public uint ClusterDimX;
    [FieldOffset(12)] public uint ClusterDimY;
    [FieldOffset(16)] public uint ClusterDimZ;
}

/// <summary>
/// <c>CUlaunchConfig</c> for cuLaunchKernelEx: seven <c>unsigned int</c>s (grid, block, shared bytes), padding to 8,
/// then <c>CUstream hStream</c>, <c>CUlaunchAttribute* attrs</c>, <c>unsigned int numAttrs</c> (56 bytes on 64-bit).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CuLaunchConfig
{
    public uint GridDimX, GridDimY, GridDimZ;
    public uint BlockDimX, BlockDimY, BlockDimZ;
    public uint SharedMemBytes;
    public nint Stream;
    public CuLaunchAttribute* Attrs;
    public uint NumAttrs;
}
