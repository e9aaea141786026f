namespace FlashAttention;

/// <summary>
/// FLOP counts as FlashAttention's benchmarks state them, so our TFLOP/s compare with theirs:
/// forward = 4·B·H·Sq·Sk·D (two GEMMs of 2·Sq·Sk·D each), halved for causal; backward = 2.5 × forward
/// (five GEMMs instead of two). Masked-out work is not subtracted beyond the causal half.
/// </summary>
public static class FlopCount
{
    public static double Forward(int batch, int heads, int seqLenQ, int seqLenK, int headDim, bool causal)
        => 4.0 * batch * heads * seqLenQ * (double)seqLenK * headDim / (causal ? 2.0 : 1.0);

    public static double Backward(int batch, int heads, int seqLenQ, int seqLenK, int headDim, bool causal)
        => 2.5 * Forward(batch, heads, seqLenQ, seqLenK, headDim, causal);
}
