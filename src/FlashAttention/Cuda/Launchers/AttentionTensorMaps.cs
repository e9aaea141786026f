using System.Collections.Concurrent;

namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// TMA descriptors for attention tensors: a (batch, seqlen, heads, head_dim) tensor is described to the copy engine
/// as 4-D (head_dim, seqlen, heads, batch), innermost first, so one map serves every (batch, head) tile. Boxes are
/// one swizzle span wide: 128 bytes of a row (64 16-bit values, or 128 E4M3 codes) with the 128-byte swizzle the wgmma
/// descriptors expect, or the whole 64-byte row of a d64 E4M3 tensor with the 64-byte swizzle. Rows past the sequence
/// end read as zeros and are skipped on stores.
/// </summary>
internal static class AttentionTensorMaps
{
    /// <summary>
    /// Everything a descriptor is encoded from. A descriptor is a pure function of it (the driver reads no memory and
    /// keeps no state for it), so one encoded for the same address, shape, strides and box serves again, also after the
    /// memory was freed and reallocated at that address.
    /// </summary>
    internal readonly record struct Key(int Device, nuint Address, DataType Type, long L0, long L1, long L2, long L3,
        long S0, long S1, long S2, long S3, uint BoxRows);

    // Training and serving loops pass the same buffers call after call: encoding four descriptors (a driver call
    // each) is then most of a launch's host time. Bounded: cleared when full.
    private static readonly ConcurrentDictionary<Key, TensorMapDescriptor> Encoded = new();
    internal const int MaxCached = 1024;

    public static TensorMapDescriptor Tokens(in TensorLayout t, uint boxRows, CudaDevice device)
    {
        var key = KeyOf(t, boxRows, device.Ordinal);
        return Encoded.TryGetValue(key, out var map) ? map : EncodeAndCache(key, t, boxRows, device);
    }

    // (apart from Tokens, so that its hit path allocates no closure)
    private static TensorMapDescriptor EncodeAndCache(in Key key, TensorLayout t, uint boxRows, CudaDevice device)
        => Cached(key, () => Encode(t, boxRows, device));

    internal static Key KeyOf(in TensorLayout t, uint boxRows, int device)
    {
        if (t.Rank != 4) throw new ArgumentException($"{t.Name}: expected a rank-4 (batch, seqlen, heads, head_dim) tensor; got shape {t.ShapeText}");
        return new Key(device, t.Address, t.Type, t.Lengths[0], t.Lengths[1], t.Lengths[2], t.Lengths[3],
            t.Strides[0], t.Strides[1], t.Strides[2], t.Strides[3], boxRows);
    }

    /// <summary>The descriptor for <paramref name="key"/>, encoded by <paramref name="encode"/> the first time.</summary>
    internal static TensorMapDescriptor Cached(in Key key, Func<TensorMapDescriptor> encode)
    {
        if (Encoded.TryGetValue(key, out var map)) return map;
        map = encode();  // throws for a spec the driver refuses: nothing is cached then
        if (Encoded.Count >= MaxCached) Encoded.Clear();
        Encoded[key] = map;
        return map;
    }

    internal static int CachedCount => Encoded.Count;

    private static TensorMapDescriptor Encode(in TensorLayout t, uint boxRows, CudaDevice device)
    {
        int element = DataTypes.SizeOf(t.Type);
        // Dimensions of length 1 may carry any stride (it is never used); give the driver a legal one.
        long[] lengths = t.Lengths, strides = (long[])t.Strides.Clone();
        long span = lengths[3];
        for (int i = 2; i >= 0; i--)
        {
            if (lengths[i] <= 1) strides[i] = span;
            span = Math.Max(span, strides[i] * Math.Max(lengths[i], 1));
        }
        var spec = new TensorMapTiledSpec
        {
            DataType = TensorMap.DataTypeFor(t.Type),
            GlobalAddress = t.Address,
            // A zero-length dimension is not a legal map; such tensors are never loaded from (no tile visits them).
            GlobalDims = [(ulong)lengths[3], (ulong)Math.Max(lengths[1], 1), (ulong)Math.Max(lengths[2], 1), (ulong)Math.Max(lengths[0], 1)],
            GlobalStridesBytes = [(ulong)(strides[1] * element), (ulong)(strides[2] * element), (ulong)(strides[0] * element)],
            BoxDims = [(uint)(RowSpanBytes(t.Type, (int)lengths[3]) / element), boxRows, 1, 1],
            Swizzle = RowSpanBytes(t.Type, (int)lengths[3]) == 128 ? TensorMapSwizzle.Swizzle128B : TensorMapSwizzle.Swizzle64B,
            L2Promotion = TensorMapL2Promotion.L2_256B,
            OobFill = TensorMapOobFill.None,
        };
        return TensorMap.EncodeTiled(spec, device);
    }

    /// <summary>Bytes of a row in one box: a 128-byte swizzle span, or the whole row when it is 64 bytes (d64 E4M3).</summary>
    internal static int RowSpanBytes(DataType type, int headDim) => Math.Min(128, headDim * DataTypes.SizeOf(type));

    /// <summary>
    /// The FP8 kernel's Vᵀ in the workspace, (batch, heads, head_dim, keys) contiguous with keysPadded keys per row, as a
    /// 4-D map (keys, head_dim, heads, batch) with boxes of 128 keys (one swizzle span) by all head_dim rows.
    /// </summary>
    public static TensorMapDescriptor KeysMajor(nuint address, int keysPadded, int headDim, int heads, int batch, CudaDevice device)
    {
        var key = new Key(device.Ordinal, address, DataType.Float8E4M3, batch, heads, headDim, keysPadded, -1, -1, -1, -1, (uint)headDim);
        return Cached(key, () => TensorMap.EncodeTiled(new TensorMapTiledSpec
        {
            DataType = TensorMapDataType.UInt8,
            GlobalAddress = address,
            GlobalDims = [(ulong)keysPadded, (ulong)headDim, (ulong)heads, (ulong)batch],
            GlobalStridesBytes = [(ulong)keysPadded, (ulong)keysPadded * (ulong)headDim, (ulong)keysPadded * (ulong)headDim * (ulong)heads],
            BoxDims = [128, (uint)headDim, 1, 1],
            Swizzle = TensorMapSwizzle.Swizzle128B,
            L2Promotion = TensorMapL2Promotion.L2_256B,
            OobFill = TensorMapOobFill.None,
        }, device));
    }
}
