using System.Numerics.Tensors;
using FlashAttention.Cpu;
using FlashAttention.Cuda;
using FlashAttention.Numerics;

namespace FlashAttention.Lab.Verification;

/// <summary>How a variable-length case breaks the offsets' contract (checked mode must refuse it, writing nothing).</summary>
public enum VarlenBreak
{
    None,
    /// <summary>cuSeqLensQ decreases at one entry.</summary>
    QueryOffsetsDecrease,
    /// <summary>cuSeqLensK's last entry lies past the packed keys.</summary>
    KeyOffsetsPastTotal,
    /// <summary>maxSeqLenQ is smaller than the longest query sequence.</summary>
    MaxQueryTooSmall,
    /// <summary>seqUsedK names more keys than a sequence has.</summary>
    UsedKeysTooMany,
}

/// <summary>
/// One variable-length batch for <c>flashattn verify</c>: per-sequence query and key lengths (0 and 1 included), optional
/// used-key counts, rows past the last sequence in the packed tensors (never to be written), and a contract to break.
/// </summary>
public sealed record VarlenCase(DataType Type, int[] LensQ, int[] LensK, int HeadsQ, int HeadsK, int HeadDim, bool Causal,
    int WindowLeft = -1, int WindowRight = -1, float Softcap = 0, bool Backward = false, bool Deterministic = false,
    int[]? UsedK = null, int TrailingRows = 0, bool CheckInputs = false, VarlenBreak Break = VarlenBreak.None)
{
    public AttentionOptions Options => new()
    {
        Causal = Causal, WindowLeft = WindowLeft, WindowRight = Causal ? -1 : WindowRight, Softcap = Softcap, Deterministic = Deterministic,
    };

    /// <summary>Keys sequence b attends to.</summary>
    public int KeysOf(int b) => UsedK?[b] ?? LensK[b];

    private static string Lengths(int[] lens) => lens.Length <= 6 ? string.Join(",", lens) : $"{lens.Length} seqs {lens.Min()}…{lens.Max()}";

    public override string ToString()
    {
        string mask = Causal ? (WindowLeft >= 0 ? $"causal+left{WindowLeft}" : "causal")
            : WindowLeft >= 0 || WindowRight >= 0 ? $"window({WindowLeft},{WindowRight})" : "full";
        return $"varlen {(Backward ? "bwd" : "fwd")} {DataTypes.ShortName(Type)} q[{Lengths(LensQ)}] k[{Lengths(LensK)}]" +
               (UsedK is null ? "" : $" used[{Lengths(UsedK)}]") + $" h{HeadsQ}" + (HeadsK != HeadsQ ? $"/{HeadsK}" : "") + $" d{HeadDim} {mask}" +
               (Softcap > 0 ? $" softcap{Softcap}" : "") + (Deterministic ? " deterministic" : "") + (TrailingRows > 0 ? $" +{TrailingRows} rows" : "") +
               (CheckInputs ? " checked" : "") + (Break != VarlenBreak.None ? $" broken:{Break}" : "");
    }
}

/// <summary>The varlen cases of <c>flashattn verify --device cuda</c>.</summary>
public static class VarlenGrids
{
    public static IEnumerable<VarlenCase> Cases(bool quick = false)
    {
        var bf = DataType.BFloat16;
        int[] ragged = [0, 1, 77, 300, 129, 64, 1000], raggedK = [5, 1, 77, 420, 0, 200, 1000];
        if (quick)
        {
            yield return new(bf, [0, 1, 200, 70], [3, 1, 200, 130], 2, 1, 128, Causal: true);
            yield return new(bf, [1, 150, 90], [1, 150, 90], 2, 2, 64, Causal: false, Backward: true);
            yield return new(bf, [100, 37], [80, 37], 2, 2, 256, Causal: true, Backward: true);
            yield break;
        }
        foreach (int d in new[] { 64, 128, 256 })
            foreach (bool causal in new[] { false, true })
            {
                yield return new(bf, ragged, ragged, 4, 4, d, causal);                               // lengths 0 and 1, none a tile multiple
                yield return new(bf, ragged, raggedK, 8, 2, d, causal);                              // sq ≠ sk per sequence, GQA
                yield return new(bf, [3000, 17, 5, 250], [3000, 17, 5, 250], 4, 1, d, causal);       // one long among short, MQA
                yield return new(bf, ragged, raggedK, 4, 2, d, causal, Backward: true);
                yield return new(bf, [700, 33, 1, 258], [700, 33, 1, 258], 4, 4, d, causal, Backward: true);
            }
        yield return new(DataType.Float16, ragged, raggedK, 4, 4, 128, Causal: true, Backward: true);
        yield return new(bf, [500, 260, 40], [500, 700, 40], 4, 4, 128, Causal: false, WindowLeft: 100, WindowRight: 30);
        yield return new(bf, [500, 260, 40], [500, 700, 40], 4, 4, 64, Causal: true, WindowLeft: 120, Backward: true);
        yield return new(bf, [300, 400, 7], [300, 400, 7], 4, 2, 128, Causal: false, Softcap: 30f);
        yield return new(DataType.Float16, [300, 130], [300, 130], 4, 4, 256, Causal: true, Softcap: 15f, Backward: true);
        // used keys (a KV cache's filled prefix), rows past the last sequence, the checked mode on valid offsets
        yield return new(bf, [64, 128, 1], [300, 200, 50], 4, 2, 128, Causal: true, UsedK: [250, 0, 49], TrailingRows: 40, CheckInputs: true);
        // (a sequence of 90 queries on one used key has dS = P·(dP − D) ≈ 0 by cancellation: the plain bf16 dK error then
        // exceeds its bound, flagging the reference; the H200 run of 2026-12-05 call 4 showed it, so two dozen keys here)
        yield return new(bf, [200, 90], [300, 120], 4, 4, 64, Causal: false, UsedK: [260, 24], Backward: true, TrailingRows: 17);
        yield return new(bf, [1000, 33, 0, 600], [1000, 33, 0, 600], 8, 2, 128, Causal: true, Backward: true, Deterministic: true);
        yield return new(bf, [257, 1, 700], [257, 1, 700], 4, 4, 64, Causal: false, Backward: true, Deterministic: true);
        // broken contracts: refused in checked mode, nothing written
        yield return new(bf, [100, 50], [100, 50], 2, 2, 128, Causal: true, CheckInputs: true, Break: VarlenBreak.QueryOffsetsDecrease);
        yield return new(bf, [100, 50], [100, 50], 2, 2, 128, Causal: true, CheckInputs: true, Break: VarlenBreak.KeyOffsetsPastTotal);
        yield return new(bf, [100, 50], [100, 50], 2, 2, 128, Causal: true, CheckInputs: true, Break: VarlenBreak.MaxQueryTooSmall);
        yield return new(bf, [100, 50], [100, 50], 2, 2, 64, Causal: false, CheckInputs: true, Break: VarlenBreak.UsedKeysTooMany, UsedK: [100, 50], Backward: true);
    }
}

/// <summary>One checked quantity of a varlen case.</summary>
public sealed record VarlenRow(VarlenCase Case, string Quantity, double Error, double PlainError, double Tolerance, bool Passed, string? Note = null);

/// <summary>
/// Runs a variable-length case on the GPU (offsets on the device) and on the CPU reference (host offsets, the used keys
/// packed), on fresh random inputs with every output poisoned (NaN) first, under <see cref="GpuAttentionVerifier"/>'s
/// rule. Rows outside every sequence, and key rows past a sequence's used keys, must still hold the poison: the kernels
/// never write them.
/// </summary>
public static class GpuVarlenVerifier
{
    public static List<VarlenRow> Run(VarlenCase c, CudaDevice device, int seed) => c.Type switch
    {
        DataType.BFloat16 => Run<BFloat16>(c, device, seed),
        DataType.Float16 => Run<Half>(c, device, seed),
        _ => throw new ArgumentOutOfRangeException(nameof(c), c.Type, "GPU kernels take bf16 or fp16"),
    };

    private static int[] Cumulative(IEnumerable<int> lens)
    {
        var cu = new List<int> { 0 };
        foreach (int n in lens) cu.Add(cu[^1] + n);
        return [.. cu];
    }

    private static List<VarlenRow> Run<T>(VarlenCase c, CudaDevice device, int seed) where T : unmanaged
    {
        var rng = new Random(seed);
        int batch = c.LensQ.Length, hq = c.HeadsQ, hk = c.HeadsK, d = c.HeadDim;
        int[] cuQ = Cumulative(c.LensQ), cuK = Cumulative(c.LensK), cuKUsed = Cumulative(Enumerable.Range(0, batch).Select(c.KeysOf));
        int sumQ = cuQ[^1], totalQ = sumQ + c.TrailingRows, totalK = cuK[^1] + c.TrailingRows;
        int maxQ = c.LensQ.Max(), maxK = Enumerable.Range(0, batch).Max(c.KeysOf);
        var q = GpuAttentionVerifier.RandomNormal<T>([totalQ, hq, d], rng);
        var k = GpuAttentionVerifier.RandomNormal<T>([totalK, hk, d], rng);
        var v = GpuAttentionVerifier.RandomNormal<T>([totalK, hk, d], rng);
        var dO = GpuAttentionVerifier.RandomNormal<T>([totalQ, hq, d], rng);

        // The contract broken on the device copy of the offsets only (the host's stay valid for the reference).
        int[] devQ = (int[])cuQ.Clone(), devK = (int[])cuK.Clone();
        int[]? devUsed = c.UsedK is null ? null : (int[])c.UsedK.Clone();
        int devMaxQ = maxQ;
        switch (c.Break)
        {
            case VarlenBreak.QueryOffsetsDecrease: devQ[1] = devQ[2] + 1; break;
            case VarlenBreak.KeyOffsetsPastTotal: devK[^1] = totalK + 3; break;
            case VarlenBreak.MaxQueryTooSmall: devMaxQ = maxQ - 1; break;
            case VarlenBreak.UsedKeysTooMany: devUsed![0] = c.LensK[0] + 1; break;
        }

        using var gq = CudaTensor<T>.FromHost(q, [totalQ, hq, d], device);
        using var gk = CudaTensor<T>.FromHost(k, [totalK, hk, d], device);
        using var gv = CudaTensor<T>.FromHost(v, [totalK, hk, d], device);
        using var gCuQ = CudaTensor<int>.FromHost(devQ, [batch + 1], device);
        using var gCuK = CudaTensor<int>.FromHost(devK, [batch + 1], device);
        using var gUsed = devUsed is null ? null : CudaTensor<int>.FromHost(devUsed, [batch], device);
        using var gO = new CudaTensor<T>(device, null, [totalQ, hq, d]);
        using var gLse = new CudaTensor<float>(device, null, [hq, totalQ]);
        gO.Buffer.Fill(0xFF);
        gLse.Buffer.Fill(0xFF);
        var options = c.Options;
        var rows = new List<VarlenRow>();

        if (c.Break != VarlenBreak.None)
        {
            string? refused = null;
            using var g = new CudaTensor<T>(device, null, [totalQ, hq, d]);
            using var gdk = new CudaTensor<T>(device, null, [totalK, hk, d]);
            using var gdv = new CudaTensor<T>(device, null, [totalK, hk, d]);
            foreach (var t in new[] { g, gdk, gdv }) t.Buffer.Fill(0xFF);
            try
            {
                if (!c.Backward)
                    CudaAttention.ForwardVarlen(gq, gk, gv, gCuQ, gCuK, devMaxQ, maxK, gO, gLse, options, Used(gUsed), checkDeviceInputs: true, device: device);
                else
                    CudaAttention.BackwardVarlen(gq, gk, gv, gq, gq, gLse, gCuQ, gCuK, devMaxQ, maxK, g, gdk, gdv, options, Used(gUsed), checkDeviceInputs: true, device: device);
            }
            catch (AttentionArgumentException e) { refused = e.Message; }
            device.Synchronize();
            bool untouched = c.Backward
                ? g.ToArray().All(IsPoison) && gdk.ToArray().All(IsPoison) && gdv.ToArray().All(IsPoison)
                : gO.ToArray().All(IsPoison) && gLse.ToArray().All(float.IsNaN);
            bool ok = refused is not null && untouched;
            rows.Add(new VarlenRow(c, "refused", ok ? 0 : 1, 0, 0, ok,
                refused is null ? "the broken contract was not refused" : untouched ? refused : "refused, but outputs were written"));
            return rows;
        }

        CudaAttention.ForwardVarlen(gq, gk, gv, gCuQ, gCuK, maxQ, maxK, gO, gLse, options, Used(gUsed), c.CheckInputs, device: device);
        device.Synchronize();

        // The reference: queries of the sequences only, each sequence's used keys packed.
        var qRef = q.AsSpan(0, sumQ * hq * d).ToArray();
        var kRef = PackUsed(k, c, cuK, cuKUsed, hk * d);
        var vRef = PackUsed(v, c, cuK, cuKUsed, hk * d);
        var qSpan = Span(qRef, sumQ, hq, d);
        var kSpan = Span(kRef, cuKUsed[^1], hk, d);
        var vSpan = Span(vRef, cuKUsed[^1], hk, d);
        double eps = GpuAttentionVerifier.Epsilon(c.Type);
        var o = gO.ToArray();
        int strayO = o.Skip(sumQ * hq * d).Count(x => !IsPoison(x));

        if (!c.Backward)
        {
            var reference = ReferenceAttention.ForwardVarlen(qSpan, kSpan, vSpan, cuQ, cuKUsed, options);
            var plain = PlainAttention.ForwardVarlen(qSpan, kSpan, vSpan, cuQ, cuKUsed, options);
            rows.Add(Compare(c, "O", GpuAttentionVerifier.ToDouble(o[..(sumQ * hq * d)]), reference.Output, plain.Output, eps, maxQ, maxK, strayO));
            var lse = gLse.ToArray();
            var lseIn = new double[hq * sumQ];
            int strayLse = 0;
            for (int h = 0; h < hq; h++)
                for (int t = 0; t < totalQ; t++)
                    if (t < sumQ) lseIn[h * sumQ + t] = lse[h * totalQ + t];
                    else if (!float.IsNaN(lse[h * totalQ + t])) strayLse++;
            rows.Add(Compare(c, "LSE", lseIn, reference.LogSumExp, plain.LogSumExp, 1e-3, maxQ, maxK, strayLse));
            return rows;
        }

        using var gdO = CudaTensor<T>.FromHost(dO, [totalQ, hq, d], device);
        using var gdQ = new CudaTensor<T>(device, null, [totalQ, hq, d]);
        using var gdK = new CudaTensor<T>(device, null, [totalK, hk, d]);
        using var gdV = new CudaTensor<T>(device, null, [totalK, hk, d]);
        void Backward()
        {
            foreach (var t in new[] { gdQ, gdK, gdV }) t.Buffer.Fill(0xFF);
            CudaAttention.BackwardVarlen(gq, gk, gv, gO, gdO, gLse, gCuQ, gCuK, maxQ, maxK, gdQ, gdK, gdV, options, Used(gUsed), c.CheckInputs, device: device);
            device.Synchronize();
        }
        Backward();
        var (dq, dk, dv) = (gdQ.ToArray(), gdK.ToArray(), gdV.ToArray());
        var doSpan = Span(dO.AsSpan(0, sumQ * hq * d).ToArray(), sumQ, hq, d);
        var refGrad = ReferenceAttention.BackwardVarlen(qSpan, kSpan, vSpan, doSpan, cuQ, cuKUsed, options);
        var plainGrad = PlainAttention.BackwardVarlen(qSpan, kSpan, vSpan, doSpan, cuQ, cuKUsed, options);
        int strayQ = dq.Skip(sumQ * hq * d).Count(x => !IsPoison(x));
        rows.Add(Compare(c, "dQ", GpuAttentionVerifier.ToDouble(dq[..(sumQ * hq * d)]), refGrad.Query, plainGrad.Query, eps, maxQ, maxK, strayQ));
        var (dkUsed, strayK) = UsedRows(dk, c, cuK, cuKUsed, hk * d);
        var (dvUsed, strayV) = UsedRows(dv, c, cuK, cuKUsed, hk * d);
        rows.Add(Compare(c, "dK", GpuAttentionVerifier.ToDouble(dkUsed), refGrad.Key, plainGrad.Key, eps, maxQ, maxK, strayK));
        rows.Add(Compare(c, "dV", GpuAttentionVerifier.ToDouble(dvUsed), refGrad.Value, plainGrad.Value, eps, maxQ, maxK, strayV));
        if (c.Deterministic)
        {
            Backward();
            bool same = GpuAttentionVerifier.Bits(dq).SequenceEqual(GpuAttentionVerifier.Bits(gdQ.ToArray()))
                && GpuAttentionVerifier.Bits(dk).SequenceEqual(GpuAttentionVerifier.Bits(gdK.ToArray()))
                && GpuAttentionVerifier.Bits(dv).SequenceEqual(GpuAttentionVerifier.Bits(gdV.ToArray()));
            rows.Add(new VarlenRow(c, "repeat", same ? 0 : 1, 0, 0, same, same ? "two runs bitwise equal" : "two runs differ"));
        }
        return rows;
    }

    // (CudaTensor's conversion to DeviceTensor dereferences it: a null tensor must stay a null DeviceTensor?)
    private static DeviceTensor? Used(CudaTensor<int>? t) => t is null ? null : (DeviceTensor)t;

    private static bool IsPoison<T>(T x) where T : unmanaged => float.IsNaN(ElementConvert.ToSingle(x));

    private static ReadOnlyTensorSpan<T> Span<T>(T[] a, int tokens, int heads, int d) => new(a, [tokens, heads, d], []);

    /// <summary>Each sequence's used key rows, packed one after another (the reference's keys).</summary>
    private static T[] PackUsed<T>(T[] a, VarlenCase c, int[] cuK, int[] cuKUsed, int rowElements)
    {
        var r = new T[cuKUsed[^1] * rowElements];
        for (int b = 0; b < c.LensK.Length; b++)
            Array.Copy(a, (long)cuK[b] * rowElements, r, (long)cuKUsed[b] * rowElements, (long)c.KeysOf(b) * rowElements);
        return r;
    }

    /// <summary>A key gradient's used rows, packed as the reference's; and how many elements outside them were written.</summary>
    private static (T[] Used, int Stray) UsedRows<T>(T[] g, VarlenCase c, int[] cuK, int[] cuKUsed, int rowElements) where T : unmanaged
    {
        var used = PackUsed(g, c, cuK, cuKUsed, rowElements);
        var inside = new bool[g.Length / rowElements];
        for (int b = 0; b < c.LensK.Length; b++)
            for (int j = 0; j < c.KeysOf(b); j++) inside[cuK[b] + j] = true;
        int stray = 0;
        for (int row = 0; row < inside.Length; row++)
            if (!inside[row])
                for (int e = 0; e < rowElements; e++)
                    if (!IsPoison(g[row * rowElements + e])) stray++;
        return (used, stray);
    }

    private static VarlenRow Compare(VarlenCase c, string quantity, double[] got, double[] reference, float[] plain, double eps, int maxQ, int maxK, int stray)
    {
        var (err, plainErr, tol, unwritten) = GpuAttentionVerifier.Measure(got, reference, plain, eps);
        double plainBound = PlainAttention.ErrorBound(c.Type, c.HeadDim, Math.Max(maxQ, 1), Math.Max(maxK, 1), c.HeadsQ / c.HeadsK, plain);
        string? note = unwritten > 0 ? $"{unwritten} elements NaN (unwritten or invalid)"
            : stray > 0 ? $"{stray} elements written outside the sequences' rows"
            : plainErr > plainBound ? $"plain error above its bound {plainBound:G3}: the CPU reference is wrong" : null;
        return new VarlenRow(c, quantity, err, plainErr, tol, err <= tol && unwritten == 0 && stray == 0 && plainErr <= plainBound, note);
    }
}
