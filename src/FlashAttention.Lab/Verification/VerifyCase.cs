using FlashAttention.Cuda;
using FlashAttention.Lab.Probes;

namespace FlashAttention.Lab.Verification;

/// <summary>One attention problem that <c>flashattn verify</c> runs on the GPU and on the CPU reference.</summary>
public sealed record VerifyCase(DataType Type, int Batch, int SeqLenQ, int SeqLenK, int HeadsQ, int HeadsK, int HeadDim,
    bool Causal, int WindowLeft = -1, int WindowRight = -1, float Softcap = 0, bool Backward = false, bool Deterministic = false,
    Fp8Path Fp8 = Fp8Path.None)
{
    public AttentionOptions Options => new()
    {
        Causal = Causal,
        WindowLeft = WindowLeft,
        WindowRight = Causal ? -1 : WindowRight,
        Softcap = Softcap,
        Deterministic = Deterministic,
    };

    private static readonly string[] Fp8Names = ["", "incoherent", "plain", "pre-quantized", "per-head"];

    public string Mask => Causal ? (WindowLeft >= 0 ? $"causal+left{WindowLeft}" : "causal")
        : WindowLeft >= 0 || WindowRight >= 0 ? $"window({WindowLeft},{WindowRight})" : "full";

    public override string ToString()
        => $"{(Fp8 != Fp8Path.None ? $"fp8 {Fp8Names[(int)Fp8]}" : Backward ? "bwd" : "fwd")} {DataTypes.ShortName(Type)} b{Batch} sq{SeqLenQ} sk{SeqLenK} h{HeadsQ}" +
           (HeadsK != HeadsQ ? $"/{HeadsK}" : "") + $" d{HeadDim} {Mask}" + (Softcap > 0 ? $" softcap{Softcap}" : "") +
           (Deterministic ? " deterministic" : "");
}

/// <summary>How an FP8 case reaches the kernel.</summary>
public enum Fp8Path
{
    None,
    /// <summary>bf16 in, quantised on the GPU with the Hadamard rotation (the default FP8 path).</summary>
    Incoherent,
    /// <summary>bf16 in, quantised on the GPU without the rotation.</summary>
    Plain,
    /// <summary>E4M3 codes and per-block descales quantised on the CPU (CudaAttention.ForwardFp8).</summary>
    PreQuantized,
    /// <summary>E4M3 codes with one descale per (batch, head): FlashAttention-3's per-head descale.</summary>
    PerHead,
}

/// <summary>The grids of cases <c>flashattn verify --device cuda</c> runs.</summary>
public static class VerifyGrids
{
    /// <summary>
    /// Forward: every supported head dim × causal/full × ragged lengths (1, 63, 128, 1000, 4096; none a multiple of every
    /// tile), GQA and MQA, seqlen_q ≠ seqlen_k both ways (so causal rows with no visible key occur), windows, softcap,
    /// both element types. <paramref name="quick"/> keeps a small subset (for compute-sanitizer runs).
    /// </summary>
    public static IEnumerable<VerifyCase> Forward(bool quick = false)
    {
        var bf = DataType.BFloat16;
        if (quick)
        {
            yield return new(bf, 1, 200, 200, 2, 1, 128, Causal: true);
            yield return new(bf, 1, 130, 77, 2, 2, 64, Causal: false);
            yield return new(bf, 1, 100, 150, 2, 2, 256, Causal: true);
            yield break;
        }
        int[] dims = [64, 128, 256];
        foreach (int d in dims)
            foreach (bool causal in new[] { false, true })
            {
                yield return new(bf, 2, 1, 1, 4, 4, d, causal);
                yield return new(bf, 2, 63, 63, 4, 4, d, causal);
                yield return new(bf, 2, 128, 128, 4, 2, d, causal);
                yield return new(bf, 2, 1000, 1000, 4, 4, d, causal);
                yield return new(bf, 1, 113, 203, 8, 1, d, causal);   // sq < sk, MQA
                yield return new(bf, 1, 300, 77, 4, 1, d, causal);    // sq > sk: causal rows that see nothing
                yield return new(DataType.Float16, 1, 257, 257, 4, 4, d, causal);
            }
        yield return new(bf, 1, 4096, 4096, 4, 4, 128, Causal: false);
        yield return new(bf, 1, 4096, 4096, 4, 4, 128, Causal: true);
        yield return new(bf, 1, 4096, 4096, 2, 2, 64, Causal: true);
        yield return new(bf, 1, 4096, 4096, 2, 2, 256, Causal: false);
        // d256 from 2k keys runs its chained variant (ForwardVariants.LongKeysFrom): causal with GQA and sq < sk,
        // softcap in fp16, a window; lengths that are no multiple of its 80-key blocks
        yield return new(bf, 1, 2100, 2500, 4, 2, 256, Causal: true);
        yield return new(DataType.Float16, 1, 2049, 2049, 2, 2, 256, Causal: false, Softcap: 20f);
        yield return new(bf, 1, 3000, 3000, 2, 2, 256, Causal: false, WindowLeft: 700, WindowRight: 100);
        yield return new(bf, 2, 700, 700, 8, 2, 128, Causal: false);                 // GQA 4:1
        yield return new(bf, 1, 500, 500, 4, 4, 128, Causal: false, WindowLeft: 100, WindowRight: 30);
        yield return new(bf, 1, 500, 900, 4, 4, 64, Causal: true, WindowLeft: 200);
        yield return new(bf, 1, 400, 400, 4, 4, 128, Causal: false, Softcap: 30f);
        yield return new(DataType.Float16, 1, 600, 600, 4, 2, 256, Causal: true, Softcap: 15f);
        // Decode-shaped calls (seqlen_q ≤ 16) run the decode kernel: query heads packed per KV head, key ranges split
        foreach (var c in DecodeShaped()) yield return c;
    }

    /// <summary>
    /// Forward cases the decode kernel takes (<c>DecodeVariants.TakesForward</c>): few query rows, long and short key
    /// ranges. <paramref name="quick"/> keeps two small ones (for compute-sanitizer runs).
    /// </summary>
    public static IEnumerable<VerifyCase> DecodeShaped(bool quick = false)
    {
        var bf = DataType.BFloat16;
        yield return new(bf, 1, 2, 700, 8, 2, 128, Causal: true);
        yield return new(DataType.Float16, 2, 1, 300, 4, 4, 64, Causal: false);
        if (quick) yield break;
        yield return new(bf, 2, 1, 4096, 32, 8, 128, Causal: true);
        yield return new(bf, 1, 16, 3000, 16, 4, 128, Causal: true);
        yield return new(DataType.Float16, 3, 4, 1000, 8, 1, 64, Causal: false);
        yield return new(bf, 1, 7, 5000, 8, 8, 256, Causal: true);
        yield return new(bf, 4, 2, 130, 16, 16, 128, Causal: false, WindowLeft: 40, WindowRight: 0);
        yield return new(bf, 1, 16, 10, 8, 2, 128, Causal: true);     // more queries than keys: rows that see nothing
        yield return new(DataType.Float16, 2, 1, 2049, 4, 2, 256, Causal: false, Softcap: 20f);
    }

    /// <summary>
    /// FP8 forward: every head dim × causal/full through the GPU quantiser with the rotation, then each API level (no
    /// rotation, CPU-quantised codes per block, per-head descales), ragged lengths (1, 77, 1000; no multiple of the
    /// 128-key block), seqlen_q ≠ seqlen_k both ways, GQA and MQA, a window.
    /// </summary>
    public static IEnumerable<VerifyCase> Fp8(bool quick = false)
    {
        var bf = DataType.BFloat16;
        if (quick)
        {
            yield return new(bf, 1, 200, 200, 2, 1, 128, Causal: true, Fp8: Fp8Path.Incoherent);
            yield return new(bf, 1, 130, 300, 2, 2, 64, Causal: false, Fp8: Fp8Path.PreQuantized);
            yield return new(bf, 1, 100, 150, 2, 2, 256, Causal: true, Fp8: Fp8Path.Incoherent);
            yield break;
        }
        foreach (int d in FlashAttention.Cuda.Variants.Fp8Variants.HeadDims)
            foreach (bool causal in new[] { false, true })
            {
                yield return new(bf, 2, 1, 1, 4, 4, d, causal, Fp8: Fp8Path.Incoherent);
                yield return new(bf, 2, 300, 300, 4, 2, d, causal, Fp8: Fp8Path.Incoherent);
                yield return new(bf, 1, 1000, 1000, 4, 4, d, causal, Fp8: Fp8Path.Incoherent);
                yield return new(bf, 1, 113, 403, 8, 1, d, causal, Fp8: Fp8Path.Plain);         // sq < sk, MQA
                yield return new(bf, 1, 300, 77, 4, 4, d, causal, Fp8: Fp8Path.PreQuantized);   // sq > sk: causal rows that see nothing
                yield return new(bf, 2, 257, 515, 4, 2, d, causal, Fp8: Fp8Path.PerHead);
            }
        yield return new(DataType.Float16, 1, 500, 500, 4, 4, 128, Causal: true, Fp8: Fp8Path.Incoherent);
        yield return new(bf, 1, 600, 600, 4, 4, 128, Causal: false, WindowLeft: 100, WindowRight: 30, Fp8: Fp8Path.Incoherent);
        yield return new(bf, 1, 4096, 4096, 4, 4, 128, Causal: true, Fp8: Fp8Path.Incoherent);
    }

    /// <summary>Backward: head dims 64/128/256, causal/full, ragged lengths, GQA, seqlen_q ≠ seqlen_k, deterministic mode.</summary>
    public static IEnumerable<VerifyCase> Backward(bool quick = false)
    {
        var bf = DataType.BFloat16;
        if (quick)
        {
            yield return new(bf, 1, 150, 150, 2, 1, 128, Causal: true, Backward: true);
            yield return new(bf, 1, 70, 130, 2, 2, 64, Causal: false, Backward: true);
            yield return new(bf, 1, 100, 90, 2, 1, 256, Causal: true, Backward: true);
            yield break;
        }
        foreach (int d in FlashAttention.Cuda.Variants.BackwardVariants.HeadDims)
            foreach (bool causal in new[] { false, true })
            {
                yield return new(bf, 2, 1, 1, 4, 4, d, causal, Backward: true);
                yield return new(bf, 2, 63, 63, 4, 4, d, causal, Backward: true);
                yield return new(bf, 2, 128, 128, 4, 2, d, causal, Backward: true);
                yield return new(bf, 1, 1000, 1000, 4, 4, d, causal, Backward: true);
                yield return new(bf, 1, 113, 203, 8, 2, d, causal, Backward: true);
                yield return new(bf, 1, 300, 77, 4, 4, d, causal, Backward: true);
                yield return new(DataType.Float16, 1, 257, 257, 4, 4, d, causal, Backward: true);
            }
        yield return new(bf, 1, 4096, 4096, 4, 4, 128, Causal: true, Backward: true);
        yield return new(bf, 1, 500, 500, 4, 4, 128, Causal: false, WindowLeft: 100, WindowRight: 30, Backward: true);
        yield return new(bf, 1, 400, 400, 4, 4, 64, Causal: true, Softcap: 20f, Backward: true);
        // softcap's backward variants of d128 and d256 (their own kernels: no dV overlap, no S/dP split)
        yield return new(DataType.Float16, 1, 300, 300, 4, 2, 128, Causal: false, Softcap: 30f, Backward: true);
        yield return new(bf, 1, 333, 333, 4, 4, 256, Causal: true, Softcap: 15f, Backward: true);
        yield return new(DataType.Float16, 1, 200, 260, 4, 4, 256, Causal: false, Softcap: 25f, Backward: true);
        yield return new(bf, 2, 600, 600, 8, 2, 128, Causal: true, Backward: true, Deterministic: true);
        yield return new(bf, 1, 333, 333, 4, 4, 64, Causal: false, Backward: true, Deterministic: true);
    }


}
