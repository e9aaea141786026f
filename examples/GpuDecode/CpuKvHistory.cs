using System.Numerics.Tensors;
using FlashAttention;

/// <summary>
/// The same model's keys and values on the CPU: per layer and sequence the tokens so far, and attention by the CPU engine
/// (<see cref="Attention.Forward{T}(ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, TensorSpan{T}, AttentionOptions?)"/>), causal over each
/// sequence's history with the new tokens appended.
/// </summary>
internal sealed class CpuKvHistory
{
    private const int HeadsQ = TinyTransformer.HeadsQ, HeadsK = TinyTransformer.HeadsK, HeadDim = TinyTransformer.HeadDim;
    private readonly List<Half>[,] _keys, _values;

    public CpuKvHistory(int batch)
    {
        _keys = new List<Half>[TinyTransformer.Layers, batch];
        _values = new List<Half>[TinyTransformer.Layers, batch];
        for (int l = 0; l < TinyTransformer.Layers; l++)
            for (int b = 0; b < batch; b++) (_keys[l, b], _values[l, b]) = ([], []);
    }

    /// <summary>One layer's attention for sequences [first, first + count), <paramref name="tokens"/> new tokens each.</summary>
    public Half[] Attend(int layer, int first, int count, int tokens, Half[] q, Half[] k, Half[] v)
    {
        int qRow = tokens * HeadsQ * HeadDim, kRow = tokens * HeadsK * HeadDim;
        var o = new Half[count * qRow];
        for (int i = 0; i < count; i++)
        {
            var (keys, values) = (_keys[layer, first + i], _values[layer, first + i]);
            keys.AddRange(k.AsSpan(i * kRow, kRow));
            values.AddRange(v.AsSpan(i * kRow, kRow));
            nint n = keys.Count / (HeadsK * HeadDim);
            var kv = new nint[] { 1, n, HeadsK, HeadDim };
            nint[] shape = [1, tokens, HeadsQ, HeadDim];
            var output = new Half[qRow];
            Attention.Forward(new ReadOnlyTensorSpan<Half>(q.AsSpan(i * qRow, qRow).ToArray(), shape, []),
                new ReadOnlyTensorSpan<Half>(keys.ToArray(), kv, []), new ReadOnlyTensorSpan<Half>(values.ToArray(), kv, []),
                new TensorSpan<Half>(output, shape, []), new AttentionOptions { Causal = true });
            output.CopyTo(o, i * qRow);
        }
        return o;
    }
}
