using FlashAttention.Numerics;

namespace FlashAttention;

/// <summary>Element types that attention tensors may hold.</summary>
public enum DataType
{
    /// <summary>IEEE binary32 (<see cref="float"/>).</summary>
    Float32,
    /// <summary>IEEE binary16 (<see cref="Half"/>).</summary>
    Float16,
    /// <summary>bfloat16 (<see cref="Numerics.BFloat16"/>): float32's exponent with 8 bits of mantissa.</summary>
    BFloat16,
    /// <summary>FP8 E4M3 (<see cref="Numerics.Float8E4M3"/>, the "fn" variant: no infinities, max ±448).</summary>
    Float8E4M3,
    /// <summary>FP8 E5M2 (<see cref="Numerics.Float8E5M2"/>, IEEE-like, max ±57344).</summary>
    Float8E5M2,
    /// <summary>32-bit signed integer (<see cref="int"/>): the KV cache's sequence lengths and page table.</summary>
    Int32,
}

/// <summary>Facts about <see cref="DataType"/> values.</summary>
public static class DataTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(DataType type) => type switch
    {
        DataType.Float32 or DataType.Int32 => 4,
        DataType.Float16 or DataType.BFloat16 => 2,
        DataType.Float8E4M3 or DataType.Float8E5M2 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown data type"),
    };

    /// <summary>The <see cref="DataType"/> of a .NET element type, or null when it is none of ours.</summary>
    public static DataType? Of<T>()
    {
        if (typeof(T) == typeof(float)) return DataType.Float32;
        if (typeof(T) == typeof(Half)) return DataType.Float16;
        if (typeof(T) == typeof(BFloat16)) return DataType.BFloat16;
        if (typeof(T) == typeof(Float8E4M3)) return DataType.Float8E4M3;
        if (typeof(T) == typeof(Float8E5M2)) return DataType.Float8E5M2;
        if (typeof(T) == typeof(int)) return DataType.Int32;
        return null;
    }

    /// <summary>Short lower-case name used by the CLI and in JSON ("fp32", "fp16", "bf16", "e4m3", "e5m2", "i32").</summary>
    public static string ShortName(DataType type) => type switch
    {
        DataType.Float32 => "fp32",
        DataType.Float16 => "fp16",
        DataType.BFloat16 => "bf16",
        DataType.Float8E4M3 => "e4m3",
        DataType.Float8E5M2 => "e5m2",
        DataType.Int32 => "i32",
        _ => type.ToString(),
    };
}
