namespace FlashAttention.Cuda;

/// <summary>
/// An E4M3 tensor with its descales, for <see cref="CudaAttention.ForwardFp8"/>: codes in FlashAttention's layout
/// (batch, seqlen, heads, head_dim), and one float32 descale per (batch, head, block of <see cref="BlockSize"/> tokens)
/// in a contiguous (batch, heads, blocks) tensor; the value of a code is code · descale. A block that covers the whole
/// sequence (<see cref="BlockSize"/> ≥ seqlen, one block) is FlashAttention-3's per-head descale.
/// </summary>
/// <param name="Codes">E4M3 codes (<see cref="DataType.Float8E4M3"/>), 16-byte aligned, strides multiples of 16.</param>
/// <param name="Descales">Float32 (batch, heads, ⌈seqlen / BlockSize⌉), contiguous.</param>
/// <param name="BlockSize">Tokens per descale: for Q a multiple of 64, for K and V a multiple of
/// <see cref="CudaAttention.Fp8KeyBlock"/>; or at least the sequence length.</param>
public readonly record struct Fp8Tensor(DeviceTensor Codes, DeviceTensor Descales, int BlockSize);
