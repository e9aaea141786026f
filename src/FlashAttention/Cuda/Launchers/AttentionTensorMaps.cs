namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// TMA descriptors for attention tensors: a (batch, seqlen, heads, head_dim) tensor is described to the copy engine
/// as 4-D (head_dim, seqlen, heads, batch), innermost first, so one map serves every (batch, head) tile. Boxes are
/// {64 columns, rows}: 128 bytes of 16-bit values per row, the width of the 128-byte swizzle that the wgmma
/// descriptors expect. Rows past the sequence end read as zeros and are skipped on stores.
/// </summary>
internal static class AttentionTensorMaps
{
    public static TensorMapDescriptor Tokens(in TensorLayout t, uint boxRows, CudaDevice device)
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
            BoxDims = [64, boxRows, 1, 1],
            Swizzle = TensorMapSwizzle.Swizzle128B,
            L2Promotion = TensorMapL2Promotion.L2_256B,
            OobFill = TensorMapOobFill.None,
        };
        return TensorMap.EncodeTiled(spec, device);
    }
}
