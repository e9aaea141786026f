using System.Runtime.InteropServices;
using FlashAttention.Cuda;
using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;
using FlashAttention.Lab.Cpu;
using FlashAttention.Lab.Tuning;
using FlashAttention.Numerics;

namespace FlashAttention.Lab.Verification;

/// <summary>One checked quantity of a KV-cache case, as <see cref="VerifyRow"/> is of an attention case.</summary>
public sealed record KvCacheRow(KvCacheCase Case, string Quantity, double Error, double PlainError, double Tolerance, bool Passed, string? Note = null);

/// <summary>
/// Runs a KV-cache case on the GPU (<see cref="CudaAttention.ForwardWithKvCache"/>) and on the CPU oracle
/// (<see cref="KvCacheReference"/>), on fresh random inputs. Every cache position a sequence does not hold (past its length,
/// pages no sequence uses, page-table entries past its keys: −1) is NaN, and O and LSE are poisoned (NaN) first, so a
/// kernel that reads what it must not, or fails to write, shows as an infinite error. Checked: O and LSE by the tolerance
/// rule, and the caches after the append bit for bit. A case that breaks the contract checks the refusal (checked mode:
/// the right argument named, nothing written) or the guards (unchecked: the sequence left unwritten, or its appends to a
/// page outside the pool skipped; the others correct; the violation recorded).
/// </summary>
public static class GpuKvCacheVerifier
{
    private const ushort Nan16 = 0xFFFF;

    public static List<KvCacheRow> Run(KvCacheCase c, CudaDevice device, int seed) => c.Type switch
    {
        DataType.BFloat16 => Run<BFloat16>(c, device, seed),
        DataType.Float16 => Run<Half>(c, device, seed),
        _ => throw new ArgumentOutOfRangeException(nameof(c), c.Type, "GPU kernels take bf16 or fp16"),
    };

    /// <summary>
    /// A case's inputs as the CPU holds them: random query and new tokens; caches random where the sequences' tokens are
    /// and NaN elsewhere; the page table (each sequence's pages in random order over the pool, −1 past its keys); and
    /// what the GPU is given instead where the case plants a fault in its last sequence.
    /// </summary>
    internal sealed record Inputs<T>(T[] Query, T[] KeyCache, T[] ValueCache, T[]? NewKeys, T[]? NewValues, int[] Lens, int[]? PageTable,
        int[] GpuLens, int[]? GpuPageTable, int Bad, int BadIndex, int BadValue) where T : unmanaged;

    internal static Inputs<T> Prepare<T>(KvCacheCase c, int seed) where T : unmanaged
    {
        var s = c.Shape;
        var rng = new Random(seed);
        int[] lens = [.. c.CacheLens];
        int[]? table = null;
        if (s.Paged)
        {
            var pages = new Queue<int>(Enumerable.Range(0, s.NumPages).OrderBy(_ => rng.Next()));
            table = new int[s.Batch * s.MaxPages];
            for (int b = 0; b < s.Batch; b++)
                for (int i = 0; i < s.MaxPages; i++)
                    table[b * s.MaxPages + i] = i * s.PageSize < lens[b] + s.SeqLenNew ? pages.Dequeue() : -1;
        }
        var q = GpuAttentionVerifier.RandomNormal<T>(s.QueryShape, rng);
        var kNew = s.SeqLenNew > 0 ? GpuAttentionVerifier.RandomNormal<T>(s.NewShape, rng) : null;
        var vNew = s.SeqLenNew > 0 ? GpuAttentionVerifier.RandomNormal<T>(s.NewShape, rng) : null;
        var kRandom = GpuAttentionVerifier.RandomNormal<T>(s.CacheShape, rng);
        var vRandom = GpuAttentionVerifier.RandomNormal<T>(s.CacheShape, rng);
        var kCache = Poisoned<T>(s.CacheShape);
        var vCache = Poisoned<T>(s.CacheShape);
        for (int b = 0; b < s.Batch; b++)
            for (int t = 0; t < lens[b]; t++)
                for (int h = 0; h < s.HeadsK; h++)
                {
                    long at = s.CacheOffset(table, b, t, h);
                    Array.Copy(kRandom, at, kCache, at, s.HeadDim);
                    Array.Copy(vRandom, at, vCache, at, s.HeadDim);
                }

        int bad = s.Batch - 1, badIndex = -1, badValue = 0;
        var gpuLens = (int[])lens.Clone();
        var gpuTable = table is null ? null : (int[])table.Clone();
        if (c.Fault == KvCacheFault.LengthOverMaximum) gpuLens[bad] = badValue = c.DeclaredMaximum + 1;
        if (c.Fault == KvCacheFault.PageOutsidePool)
        {
            badIndex = (lens[bad] + s.SeqLenNew - 1) / s.PageSize;  // the page that holds its last key (and the appended ones)
            gpuTable![bad * s.MaxPages + badIndex] = badValue = s.NumPages + 7;
        }
        return new Inputs<T>(q, kCache, vCache, kNew, vNew, lens, table, gpuLens, gpuTable, bad, badIndex, badValue);
    }

    private static List<KvCacheRow> Run<T>(KvCacheCase c, CudaDevice device, int seed) where T : unmanaged
    {
        var s = c.Shape;
        var (q, kCache, vCache, kNew, vNew, lens, table, gpuLens, gpuTable, bad, badIndex, badValue) = Prepare<T>(c, seed);

        using var dq = CudaTensor<T>.FromHost(q, s.QueryShape, device);
        using var dk = CudaTensor<T>.FromHost(kCache, s.CacheShape, device);
        using var dv = CudaTensor<T>.FromHost(vCache, s.CacheShape, device);
        using var dLens = CudaTensor<int>.FromHost(gpuLens, [s.Batch], device);
        using var dTable = gpuTable is null ? null : CudaTensor<int>.FromHost(gpuTable, s.PageTableShape, device);
        using var dkNew = kNew is null ? null : CudaTensor<T>.FromHost(kNew, s.NewShape, device);
        using var dvNew = vNew is null ? null : CudaTensor<T>.FromHost(vNew, s.NewShape, device);
        using var dOut = new CudaTensor<T>(device, null, s.QueryShape);
        using var dLse = new CudaTensor<float>(device, null, s.LseShape);
        dOut.Buffer.Fill(0xFF);
        dLse.Buffer.Fill(0xFF);
        var error = FlashDecodeLauncher.DecodeScratch.For(device, null).ErrorBuffer;
        error.Fill(0);

        var rows = new List<KvCacheRow>();
        Exception? refused = null;
        using (VariantPolicy.Install(LabSetup.CurrentTuning.WithDecodeSplits(c.Splits ?? LabSetup.CurrentTuning.DecodeSplitCount)))
        {
            try
            {
                CudaAttention.ForwardWithKvCache(dq, dk, dv, dLens, dOut, dLse, c.Options, dkNew is null ? null : (DeviceTensor)dkNew,
                    dvNew is null ? null : (DeviceTensor)dvNew, dTable is null ? null : (DeviceTensor)dTable, c.MaxCacheSeqLen, c.Checked, device: device);
            }
            catch (AttentionArgumentException e) when (c.Checked && c.Fault != KvCacheFault.None)
            {
                refused = e;
            }
        }
        device.Synchronize();
        var o = dOut.ToArray();
        var lse = dLse.ToArray();
        var kAfter = dk.ToArray();
        var vAfter = dv.ToArray();
        var words = new int[4];
        error.CopyTo<int>(words);

        if (c.Checked && c.Fault != KvCacheFault.None)
        {
            string argument = c.Fault == KvCacheFault.LengthOverMaximum ? "cacheSeqLens" : "pageTable";
            bool named = refused is AttentionArgumentException { ParamName: var p } && p == argument;
            rows.Add(new KvCacheRow(c, "refused", named ? 0 : 1, 0, 0, named, refused?.Message ?? "no exception"));
            bool untouched = o.All(IsPoison) && lse.All(x => BitConverter.SingleToUInt32Bits(x) == 0xFFFFFFFF)
                && Bits(kAfter).SequenceEqual(Bits(kCache)) && Bits(vAfter).SequenceEqual(Bits(vCache));
            rows.Add(new KvCacheRow(c, "unwritten", untouched ? 0 : 1, 0, 0, untouched, untouched ? "O, LSE and the caches as they were" : "something was written"));
            return rows;
        }

        // The oracle over what the GPU should have done: a sequence the guards skip keeps length 0 on the CPU (and its
        // rows are checked apart); appends through a page outside the pool do not happen.
        var cpuLens = (int[])lens.Clone();
        bool skipped = c.Fault == KvCacheFault.LengthOverMaximum;
        if (skipped) cpuLens[bad] = 0;
        var (reference, plain, kExpected, vExpected) = KvCacheReference.Forward(s, q, kCache, vCache, cpuLens, table, kNew, vNew, c.Options);
        if (skipped) UndoAppends(s, kExpected, vExpected, kCache, vCache, table, cpuLens, bad, onlyPage: null);
        if (c.Fault == KvCacheFault.PageOutsidePool) UndoAppends(s, kExpected, vExpected, kCache, vCache, table, cpuLens, bad, badIndex);

        // Rows of the faulty sequence are checked apart: unwritten (skipped) or unspecified (a page read in place of another).
        bool Ours(long b) => c.Fault == KvCacheFault.None || b != bad;
        long oPerSequence = (long)s.SeqLenQ * s.HeadsQ * s.HeadDim, lsePerSequence = (long)s.HeadsQ * s.SeqLenQ;
        var oIdx = Enumerable.Range(0, o.Length).Where(i => Ours(i / oPerSequence)).ToArray();
        var lseIdx = Enumerable.Range(0, lse.Length).Where(i => Ours(i / lsePerSequence)).ToArray();
        double eps = GpuAttentionVerifier.Epsilon(c.Type);
        var oGot = GpuAttentionVerifier.ToDouble(o);
        rows.Add(Row(c, "O", GpuAttentionVerifier.Measure(oIdx.Select(i => oGot[i]).ToArray(), oIdx.Select(i => reference.Output[i]).ToArray(),
            oIdx.Select(i => plain.Output[i]).ToArray(), eps)));
        rows.Add(Row(c, "LSE", GpuAttentionVerifier.Measure(lseIdx.Select(i => (double)lse[i]).ToArray(), lseIdx.Select(i => reference.LogSumExp[i]).ToArray(),
            lseIdx.Select(i => plain.LogSumExp[i]).ToArray(), 1e-3)));
        int cacheWrong = Bits(kAfter).Zip(Bits(kExpected)).Count(p => p.First != p.Second) + Bits(vAfter).Zip(Bits(vExpected)).Count(p => p.First != p.Second);
        rows.Add(new KvCacheRow(c, "cache", cacheWrong, 0, 0, cacheWrong == 0,
            s.SeqLenNew > 0 ? (cacheWrong == 0 ? "appended in place, the rest untouched" : $"{cacheWrong} 16-bit words differ") : "no append: untouched"));

        if (c.Fault != KvCacheFault.None)
        {
            int code = c.Fault == KvCacheFault.LengthOverMaximum ? 1 : 2;
            int[] expected = [code, bad, c.Fault == KvCacheFault.LengthOverMaximum ? 0 : badIndex, badValue];
            bool recorded = words.SequenceEqual(expected);
            rows.Add(new KvCacheRow(c, "guard", recorded ? 0 : 1, 0, 0, recorded, $"error word [{string.Join(", ", words)}], expected [{string.Join(", ", expected)}]"));
            if (skipped)
            {
                bool untouched = Enumerable.Range(0, o.Length).Where(i => i / oPerSequence == bad).All(i => IsPoison(o[i]))
                    && Enumerable.Range(0, lse.Length).Where(i => i / lsePerSequence == bad).All(i => BitConverter.SingleToUInt32Bits(lse[i]) == 0xFFFFFFFF);
                rows.Add(new KvCacheRow(c, "skipped", untouched ? 0 : 1, 0, 0, untouched, untouched ? "its O and LSE unwritten" : "its rows were written"));
            }
        }
        error.Fill(0);
        return rows;
    }

    private static KvCacheRow Row(KvCacheCase c, string quantity, (double Error, double PlainError, double Tolerance, int Unwritten) m)
        => new(c, quantity, m.Error, m.PlainError, m.Tolerance, m.Error <= m.Tolerance && m.Unwritten == 0,
            m.Unwritten > 0 ? $"{m.Unwritten} elements NaN (unwritten, or read from where no key is)" : null);

    // The appends the guards skip (all of sequence b's, or those landing on page-table entry onlyPage): the expected
    // caches keep what was there.
    private static void UndoAppends<T>(KvCacheShape s, T[] kExpected, T[] vExpected, T[] kBefore, T[] vBefore, int[]? table, int[] lens, int b,
        int? onlyPage) where T : unmanaged
    {
        for (int t = lens[b]; t < lens[b] + s.SeqLenNew; t++)
            if (onlyPage is not int index || t / s.PageSize == index)
                for (int h = 0; h < s.HeadsK; h++)
                {
                    long at = s.CacheOffset(table, b, t, h);
                    Array.Copy(kBefore, at, kExpected, at, s.HeadDim);
                    Array.Copy(vBefore, at, vExpected, at, s.HeadDim);
                }
    }

    private static T[] Poisoned<T>(long[] shape) where T : unmanaged
    {
        var a = new T[shape.Aggregate(1L, (x, y) => x * y)];
        MemoryMarshal.Cast<T, ushort>(a.AsSpan()).Fill(Nan16);
        return a;
    }

    private static bool IsPoison<T>(T x) where T : unmanaged => MemoryMarshal.Cast<T, ushort>(MemoryMarshal.CreateReadOnlySpan(ref x, 1))[0] == Nan16;

    private static ushort[] Bits<T>(T[] a) where T : unmanaged => MemoryMarshal.Cast<T, ushort>(a.AsSpan()).ToArray();
}
