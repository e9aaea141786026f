namespace FlashAttention.Cli.Npy;

/// <summary>
/// The element types <c>flashattn</c> reads and writes in <c>.npy</c> files, all little-endian:
/// <list type="bullet">
/// <item><c>&lt;f4</c>: float32;</item>
/// <item><c>&lt;f2</c>: float16;</item>
/// <item>bfloat16, which NumPy has no type for, stored as its 16 raw bits: <c>&lt;u2</c> (uint16, the portable way:
///   <c>(x.astype(np.float32).view(np.uint32) &gt;&gt; 16).astype(np.uint16)</c>), or <c>&lt;V2</c> / <c>|V2</c>
///   (what <c>np.save</c> writes for <c>ml_dtypes.bfloat16</c> arrays).</item>
/// </list>
/// Every other descr (float64, big-endian, structured types, …) is refused with a message that says how to convert.
/// </summary>
public enum NpyElementType
{
    Float32,
    Float16,
    /// <summary>bfloat16 bits in a <c>&lt;u2</c>, <c>&lt;V2</c> or <c>|V2</c> array; the descr is kept so outputs are written the same way.</summary>
    BFloat16,
}

/// <summary>Maps NumPy descr strings to <see cref="NpyElementType"/> and back.</summary>
public static class NpyDescr
{
    /// <summary>The descr strings accepted, for messages.</summary>
    public const string AcceptedText = "'<f4' (float32), '<f2' (float16), or bfloat16 bits as '<u2', '<V2' or '|V2'";

    /// <summary>The element type of an accepted descr, or null with the reason it is refused.</summary>
    public static NpyElementType? Parse(string descr, out string? refusal)
    {
        refusal = null;
        switch (descr)
        {
            case "<f4": return NpyElementType.Float32;
            case "<f2": return NpyElementType.Float16;
            case "<u2" or "<V2" or "|V2": return NpyElementType.BFloat16;
        }
        if (descr.Length >= 2 && descr[0] == '>' && descr[1] != 'V')
            refusal = $"dtype '{descr}' is big-endian; expected little-endian {AcceptedText} (convert with x.astype(x.dtype.newbyteorder('<')))";
        else
            refusal = $"dtype '{descr}' ({Describe(descr)}) is not supported; expected {AcceptedText} (convert with e.g. x.astype(np.float32))";
        return null;
    }

    /// <summary>Bytes per element.</summary>
    public static int SizeOf(NpyElementType type) => type == NpyElementType.Float32 ? 4 : 2;

    /// <summary>The descr <c>flashattn</c> writes for a type when it has no input descr to copy.</summary>
    public static string DefaultDescr(NpyElementType type) => type switch
    {
        NpyElementType.Float32 => "<f4",
        NpyElementType.Float16 => "<f2",
        _ => "<u2",
    };

    /// <summary>The library's <see cref="DataType"/> for an element type.</summary>
    public static DataType ToDataType(NpyElementType type) => type switch
    {
        NpyElementType.Float32 => DataType.Float32,
        NpyElementType.Float16 => DataType.Float16,
        _ => DataType.BFloat16,
    };

    private static string Describe(string descr)
    {
        if (descr.Length < 3) return "unknown";
        string kind = descr[1] switch
        {
            'f' => "float", 'i' => "int", 'u' => "uint", 'b' => "bool", 'c' => "complex", 'V' => "void", 'U' => "unicode",
            'S' => "bytes", 'O' => "object", 'M' => "datetime", 'm' => "timedelta", _ => "unknown",
        };
        return int.TryParse(descr.AsSpan(2), out int bytes) && kind is "float" or "int" or "uint" or "complex"
            ? $"{kind}{bytes * 8}"
            : kind;
    }
}
