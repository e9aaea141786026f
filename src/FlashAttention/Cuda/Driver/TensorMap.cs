using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FlashAttention.Cuda;

/// <summary><c>CUtensorMapDataType</c> (cuda.h).</summary>
internal enum TensorMapDataType
{
    UInt8 = 0,
    UInt16 = 1,
    UInt32 = 2,
    Int32 = 3,
    UInt64 = 4,
    Int64 = 5,
    Float16 = 6,
    Float32 = 7,
    Float64 = 8,
    BFloat16 = 9,
    Float32Ftz = 10,
    TFloat32 = 11,
    TFloat32Ftz = 12,
}

/// <summary><c>CUtensorMapInterleave</c>.</summary>
internal enum TensorMapInterleave
{
    None = 0,
    Interleave16B = 1,
    Interleave32B = 2,
}

/// <summary><c>CUtensorMapSwizzle</c>: how TMA permutes 16-byte chunks within rows of shared memory to avoid bank conflicts.</summary>
internal enum TensorMapSwizzle
{
    None = 0,
    Swizzle32B = 1,
    Swizzle64B = 2,
    Swizzle128B = 3,
}

/// <summary><c>CUtensorMapL2promotion</c>.</summary>
internal enum TensorMapL2Promotion
{
    None = 0,
    L2_64B = 1,
    L2_128B = 2,
    L2_256B = 3,
}

/// <summary><c>CUtensorMapFloatOOBfill</c>: what out-of-bounds box elements read as.</summary>
internal enum TensorMapOobFill
{
    /// <summary>Zeros.</summary>
    None = 0,
    /// <summary>NaN, and tensor-core FMAs treat them as zero (floating-point types only).</summary>
    NanRequestZeroFma = 1,
}

/// <summary>
/// The opaque 128-byte <c>CUtensorMap</c>, passed by value to kernels (declared there as a
/// <c>const __grid_constant__</c> 64-byte-aligned struct). Kernel-argument packing places it on a 64-byte boundary.
/// </summary>
[InlineArray(16)]
internal struct TensorMapDescriptor
{
    private ulong _element0;

    /// <summary>Size of the descriptor in bytes.</summary>
    public const int Size = 128;

    /// <summary>Alignment the driver and the kernel parameter require.</summary>
    public const int Alignment = 64;
}

/// <summary>
/// Everything <c>cuTensorMapEncodeTiled</c> takes. Dimensions are listed innermost first (the opposite of
/// <see cref="DeviceTensor.Lengths"/>); global strides are in bytes and exclude the innermost dimension.
/// </summary>
internal sealed record TensorMapTiledSpec
{
    public required TensorMapDataType DataType { get; init; }
    /// <summary>Device address of element 0; 16-byte aligned (32 with 32-byte interleave).</summary>
    public required ulong GlobalAddress { get; init; }
    /// <summary>Tensor size per dimension, innermost first (rank entries).</summary>
    public required ulong[] GlobalDims { get; init; }
    /// <summary>Byte strides of dimensions 1…rank−1 (rank−1 entries), each a multiple of 16.</summary>
    public required ulong[] GlobalStridesBytes { get; init; }
    /// <summary>Box (tile) size per dimension in elements, innermost first; each ≤ 256.</summary>
    public required uint[] BoxDims { get; init; }
    /// <summary>Traversal stride per dimension (1…8); null for all ones.</summary>
    public uint[]? ElementStrides { get; init; }
    public TensorMapInterleave Interleave { get; init; } = TensorMapInterleave.None;
    public TensorMapSwizzle Swizzle { get; init; } = TensorMapSwizzle.None;
    public TensorMapL2Promotion L2Promotion { get; init; } = TensorMapL2Promotion.None;
    public TensorMapOobFill OobFill { get; init; } = TensorMapOobFill.None;

    public int Rank => GlobalDims.Length;
}

/// <summary>Builds TMA descriptors: parameter checks with clear messages first, then <c>cuTensorMapEncodeTiled</c>.</summary>
internal static unsafe class TensorMap
{
    /// <summary>Bytes per element of a TMA data type.</summary>
    public static int ElementSize(TensorMapDataType type) => type switch
    {
        TensorMapDataType.UInt8 => 1,
        TensorMapDataType.UInt16 or TensorMapDataType.Float16 or TensorMapDataType.BFloat16 => 2,
        TensorMapDataType.UInt32 or TensorMapDataType.Int32 or TensorMapDataType.Float32 or TensorMapDataType.Float32Ftz
            or TensorMapDataType.TFloat32 or TensorMapDataType.TFloat32Ftz => 4,
        TensorMapDataType.UInt64 or TensorMapDataType.Int64 or TensorMapDataType.Float64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown tensor map data type"),
    };

    /// <summary>The TMA type that moves elements of <paramref name="type"/>; FP8 travels as UINT8 (TMA only copies bytes).</summary>
    public static TensorMapDataType DataTypeFor(DataType type) => type switch
    {
        DataType.Float16 => TensorMapDataType.Float16,
        DataType.BFloat16 => TensorMapDataType.BFloat16,
        DataType.Float32 => TensorMapDataType.Float32,
        DataType.Float8E4M3 or DataType.Float8E5M2 => TensorMapDataType.UInt8,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "no tensor map data type for this element type"),
    };

    /// <summary>Bytes of one swizzle span (the widest inner box row the swizzle mode allows); 0 for none.</summary>
    public static int SwizzleBytes(TensorMapSwizzle swizzle) => swizzle switch
    {
        TensorMapSwizzle.None => 0,
        TensorMapSwizzle.Swizzle32B => 32,
        TensorMapSwizzle.Swizzle64B => 64,
        TensorMapSwizzle.Swizzle128B => 128,
        _ => throw new ArgumentOutOfRangeException(nameof(swizzle), swizzle, "unknown swizzle mode"),
    };

    /// <summary>
    /// Checks the rules the driver documents for cuTensorMapEncodeTiled, so that a bad launcher fails with a message
    /// naming the parameter instead of a bare CUDA_ERROR_INVALID_VALUE. Throws <see cref="ArgumentException"/>.
    /// </summary>
    public static void Validate(TensorMapTiledSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (!Enum.IsDefined(spec.DataType)) Fail($"data type {(int)spec.DataType} is not a CUtensorMapDataType");
        if (!Enum.IsDefined(spec.Interleave)) Fail($"interleave {(int)spec.Interleave} is not a CUtensorMapInterleave");
        if (!Enum.IsDefined(spec.Swizzle)) Fail($"swizzle {(int)spec.Swizzle} is not a CUtensorMapSwizzle");
        if (!Enum.IsDefined(spec.L2Promotion)) Fail($"L2 promotion {(int)spec.L2Promotion} is not a CUtensorMapL2promotion");
        if (!Enum.IsDefined(spec.OobFill)) Fail($"OOB fill {(int)spec.OobFill} is not a CUtensorMapFloatOOBfill");

        int rank = spec.Rank;
        int minRank = spec.Interleave == TensorMapInterleave.None ? 1 : 3;
        if (rank < minRank || rank > 5) Fail($"rank must be {minRank}…5{(minRank == 3 ? " with interleave" : "")}; got {rank}");
        if (spec.GlobalStridesBytes.Length != rank - 1) Fail($"expected {rank - 1} global strides (dimensions 1…{rank - 1}); got {spec.GlobalStridesBytes.Length}");
        if (spec.BoxDims.Length != rank) Fail($"expected {rank} box dimensions; got {spec.BoxDims.Length}");
        if (spec.ElementStrides is { } es && es.Length != rank) Fail($"expected {rank} element strides; got {es.Length}");

        int addressAlign = spec.Interleave == TensorMapInterleave.Interleave32B ? 32 : 16;
        if (spec.GlobalAddress % (ulong)addressAlign != 0) Fail($"global address 0x{spec.GlobalAddress:x} must be {addressAlign}-byte aligned");

        for (int i = 0; i < rank; i++)
            if (spec.GlobalDims[i] == 0 || spec.GlobalDims[i] > 1UL << 32) Fail($"global dimension {i} must be 1…2^32; got {spec.GlobalDims[i]}");

        ulong strideAlign = spec.Interleave == TensorMapInterleave.Interleave32B ? 32UL : 16UL;
        for (int i = 0; i < rank - 1; i++)
        {
            ulong s = spec.GlobalStridesBytes[i];
            if (s % strideAlign != 0) Fail($"global stride {i + 1} = {s} bytes must be a multiple of {strideAlign}");
            if (s >= 1UL << 40) Fail($"global stride {i + 1} = {s} bytes must be below 2^40");
        }

        int elementSize = ElementSize(spec.DataType);
        for (int i = 0; i < rank; i++)
            if (spec.BoxDims[i] == 0 || spec.BoxDims[i] > 256) Fail($"box dimension {i} must be 1…256; got {spec.BoxDims[i]}");
        long innerBoxBytes = (long)spec.BoxDims[0] * elementSize;
        if (spec.Interleave == TensorMapInterleave.None)
        {
            if (innerBoxBytes % 16 != 0) Fail($"inner box dimension {spec.BoxDims[0]} × {elementSize} bytes = {innerBoxBytes} bytes must be a multiple of 16");
            int span = SwizzleBytes(spec.Swizzle);
            if (span != 0 && innerBoxBytes > span)
                Fail($"inner box dimension {spec.BoxDims[0]} × {elementSize} bytes = {innerBoxBytes} bytes exceeds the {span}-byte swizzle span of {spec.Swizzle}");
        }

        if (spec.ElementStrides is { } strides)
            for (int i = 0; i < rank; i++)
                if (strides[i] == 0 || strides[i] > 8) Fail($"element stride {i} must be 1…8; got {strides[i]}");

        if (spec.OobFill == TensorMapOobFill.NanRequestZeroFma && !IsFloatingPoint(spec.DataType))
            Fail($"OOB fill {spec.OobFill} needs a floating-point data type; got {spec.DataType}");
    }

    private static bool IsFloatingPoint(TensorMapDataType t) => t is TensorMapDataType.Float16 or TensorMapDataType.Float32
        or TensorMapDataType.Float64 or TensorMapDataType.BFloat16 or TensorMapDataType.Float32Ftz
        or TensorMapDataType.TFloat32 or TensorMapDataType.TFloat32Ftz;

    private static void Fail(string message) => throw new ArgumentException("tensor map: " + message);

    /// <summary>
    /// Validates <paramref name="spec"/> and encodes it with cuTensorMapEncodeTiled into a 64-byte-aligned native
    /// buffer (the driver requires the alignment), returning the 128 bytes as a value for kernel arguments.
    /// </summary>
    public static TensorMapDescriptor EncodeTiled(TensorMapTiledSpec spec, CudaDevice? device = null)
    {
        Validate(spec);
        var api = device is null ? CudaDriverApi.Instance : device.Context.MakeCurrent();
        int rank = spec.Rank;
        ulong* dims = stackalloc ulong[5];
        ulong* strides = stackalloc ulong[5];
        uint* box = stackalloc uint[5];
        uint* elementStrides = stackalloc uint[5];
        for (int i = 0; i < rank; i++)
        {
            dims[i] = spec.GlobalDims[i];
            box[i] = spec.BoxDims[i];
            elementStrides[i] = spec.ElementStrides?[i] ?? 1;
            if (i < rank - 1) strides[i] = spec.GlobalStridesBytes[i];
        }
        void* map = NativeMemory.AlignedAlloc(TensorMapDescriptor.Size, TensorMapDescriptor.Alignment);
        try
        {
            NativeMemory.Clear(map, TensorMapDescriptor.Size);
            int result = api.cuTensorMapEncodeTiled(map, (int)spec.DataType, (uint)rank, (void*)spec.GlobalAddress, dims, strides, box, elementStrides,
                (int)spec.Interleave, (int)spec.Swizzle, (int)spec.L2Promotion, (int)spec.OobFill);
            // The description is built only on failure: encoding runs four or more times per attention call.
            if (result != CudaErrorCodes.Success) throw api.Error(result, nameof(api.cuTensorMapEncodeTiled), $"for {Describe(spec)}");
            return Unsafe.Read<TensorMapDescriptor>(map);
        }
        finally
        {
            NativeMemory.AlignedFree(map);
        }
    }

    /// <summary>A one-line description of a spec for error messages.</summary>
    public static string Describe(TensorMapTiledSpec spec)
        => $"{spec.DataType} dims [{string.Join(", ", spec.GlobalDims)}] strides [{string.Join(", ", spec.GlobalStridesBytes)}] B box [{string.Join(", ", spec.BoxDims)}] {spec.Swizzle} at 0x{spec.GlobalAddress:x}";
}
