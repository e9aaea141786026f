namespace FlashAttention;

/// <summary>The FP8 forward's arguments, through the same checks as every other call.</summary>
internal static partial class AttentionValidation
{
    /// <summary>Tokens per Q descale block the FP8 kernel takes: a multiple of this (or one block for the whole sequence).</summary>
    public const int Fp8QueryBlockMultiple = 64;

    /// <summary>
    /// Pre-quantised FP8 forward: E4M3 codes q (B,Sq,Hq,D), k/v (B,Sk,Hk,D), float32 descales (batch, heads, blocks)
    /// contiguous, o (B,Sq,Hq,D) bf16 or fp16, lse (B,Hq,Sq) float32 or absent. Q blocks: a multiple of 64 tokens or the whole
    /// sequence; K and V blocks: the same size, a multiple of <paramref name="keyBlock"/> or the whole sequence.
    /// </summary>
    public static AttentionProblem ForwardFp8(in TensorLayout q, in TensorLayout k, in TensorLayout v, in TensorLayout o,
        TensorLayout? lse, in TensorLayout qDescale, in TensorLayout kDescale, in TensorLayout vDescale,
        int qBlock, int kBlock, int vBlock, int keyBlock, AttentionOptions? options)
    {
        var g = DenseGeometry(q, k, v);
        if (q.Type != DataType.Float8E4M3) throw Fail(q, $"expected E4M3 codes (element type Float8E4M3); got {q.Type}");
        ExpectRank(o, 4, "(batch, seqlen_q, heads_q, head_dim)");
        if (!o.Lengths.AsSpan().SequenceEqual(q.Lengths)) throw Fail(o, $"expected shape {q.ShapeText} (that of query); got {o.ShapeText}");
        if (o.Type is not (DataType.BFloat16 or DataType.Float16))
            throw Fail(o, $"expected element type BFloat16 or Float16 (the FP8 kernel writes 16-bit O); got {o.Type}");
        if (lse is { } l) ExpectLse(l, [g.Batch, g.HeadsQ, g.SeqQ], "(batch, heads_q, seqlen_q)");
        ExpectBlock("query.BlockSize", qBlock, g.SeqQ, Fp8QueryBlockMultiple);
        ExpectBlock("key.BlockSize", kBlock, g.SeqK, keyBlock);
        if (vBlock != kBlock)
            throw new AttentionArgumentException("value", $"value.BlockSize: expected {kBlock} (the key's: the kernel takes one descale per key block for both); got {vBlock}");
        ExpectDescales(qDescale, g.Batch, g.HeadsQ, Blocks(g.SeqQ, qBlock), "query");
        ExpectDescales(kDescale, g.Batch, g.HeadsK, Blocks(g.SeqK, kBlock), "key");
        ExpectDescales(vDescale, g.Batch, g.HeadsK, Blocks(g.SeqK, kBlock), "value");
        ExpectOutputs([q, k, v, qDescale, kDescale, vDescale], lse is { } l2 ? [o, l2] : [o]);
        var problem = Build(g, options, q, k, v, o, lse, cuQ: null, cuK: null);
        ExpectFp8Options(problem);
        return problem;
    }

    /// <summary>What the FP8 path takes of the options (forward, no softcap).</summary>
    public static void ExpectFp8Options(AttentionProblem p)
    {
        if (p.Softcap > 0)
            throw new AttentionArgumentException("options", $"options.Softcap: the FP8 kernel takes no softcap; expected 0 with Precision = Fp8; got {p.Softcap}");
    }

    /// <summary>Calls that have no FP8 path (the CPU engine, the backward) refuse <see cref="AttentionPrecision.Fp8"/> by name.</summary>
    public static void ExpectDefaultPrecision(AttentionOptions? options, string where)
    {
        if (options is { Precision: not AttentionPrecision.Default })
            throw new AttentionArgumentException("options", $"options.Precision: {options.Precision} runs in the GPU forward only (CudaAttention.Forward); {where} takes Default");
    }

    private static int Blocks(int seqLen, int block) => Math.Max(1, (seqLen + block - 1) / block);

    private static void ExpectBlock(string name, int block, int seqLen, int multiple)
    {
        if (block < 1 || (block % multiple != 0 && block < seqLen))
            throw new AttentionArgumentException(name.Split('.')[0],
                $"{name}: expected a multiple of {multiple} tokens, or at least the sequence length {seqLen} (one descale per head); got {block}");
    }

    private static void ExpectDescales(in TensorLayout d, int batch, int heads, int blocks, string owner)
    {
        if (d.Type != DataType.Float32) throw Fail(d, $"expected element type Float32; got {d.Type}");
        if (d.Rank != 3 || d.Lengths[0] != batch || d.Lengths[1] != heads || d.Lengths[2] != blocks)
            throw Fail(d, $"expected shape ({batch}, {heads}, {blocks}): (batch, heads, blocks of {owner} tokens); got {d.ShapeText}");
        long expected = 1;
        for (int i = 2; i >= 0; i--)
        {
            if (d.Lengths[i] > 1 && d.Strides[i] != expected)
                throw Fail(d, $"expected contiguous descales (strides ({(long)heads * blocks}, {blocks}, 1)); got strides {d.StrideText}");
            expected *= d.Lengths[i];
        }
    }
}
