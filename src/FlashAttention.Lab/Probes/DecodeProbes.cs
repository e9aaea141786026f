using System.Runtime.InteropServices;
using FlashAttention.Cuda;
using FlashAttention.Cuda.Compiler;
using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;
using FlashAttention.Numerics;

namespace FlashAttention.Lab.Probes;

/// <summary>
/// Runs the decode family's unit kernels against the CPU on fresh random data (probes/decode_probes.cu): the packed Q operand through S = Q·Kᵀ in both of its forms, the producer warp's key-block loads from a
/// paged pool (pages of 16, 48 and 256 tokens, a page outside the pool, boxes past the keys) and from a contiguous cache
/// (rows past its capacity: zeros, the copy engine's out-of-bounds fill),
/// and the merge of split results through their LSE. A wrong layout or address fails here by name.
/// </summary>
internal static class DecodeProbes
{
    private const string Source = "probes/decode_probes.cu";

    private static string QName(DataType t, int d, QSource q) => $"fa::probe_decode_q<{KernelNames.ElementTag(t)}, {d}, fa::QSource::k{q}>";
    private static string KvName(DataType t, int d, int blockN) => $"fa::probe_decode_kv<{KernelNames.ElementTag(t)}, {d}, {blockN}>";
    private static string CombineName(DataType t, int d) => $"fa::probe_combine<{KernelNames.ElementTag(t)}, {d}>";
    private static KernelSpec ProbeSpec(string name) => KernelCatalog.Spec(Source, name, LabKernelSources.Instance);
    private static CudaKernel Kernel(CudaDevice device, string name) => KernelModuleCache.For(device).GetKernel(ProbeSpec(name), name);

    // The head dims' default variants: their Q form and key block, as the decode kernel runs them.
    private static IEnumerable<DecodeVariant> Variants => DecodeVariants.HeadDims.Select(DecodeVariants.For);

    public static IEnumerable<KernelCatalog.Entry> Entries()
    {
        foreach (var t in KernelCatalog.KernelTypes)
            foreach (var v in Variants)
            {
                string q = QName(t, v.HeadDim, v.QSource), kv = KvName(t, v.HeadDim, v.BlockN);
                yield return new($"probe decode-q {DataTypes.ShortName(t)} d{v.HeadDim} {v.QSource}", ProbeSpec(q), q);
                yield return new($"probe decode-kv {DataTypes.ShortName(t)} d{v.HeadDim} n{v.BlockN}", ProbeSpec(kv), kv);
                string combine = CombineName(t, v.HeadDim);
                yield return new($"probe combine {DataTypes.ShortName(t)} d{v.HeadDim}", ProbeSpec(combine), combine);
            }
    }

    public static List<ProbeResult> RunAll(CudaDevice device, int seed)
    {
        var results = new List<ProbeResult>();
        foreach (var t in KernelCatalog.KernelTypes)
            foreach (var v in Variants)
            {
                results.Add(PackedQ(device, t, v, seqLenQ: 3, group: 4, headK: 1, mBlock: 0, seed));           // 12 rows of 64
                results.Add(PackedQ(device, t, v, seqLenQ: 5, group: 16, headK: 0, mBlock: 1, seed + 1));     // rows 64-79 of 80
                results.Add(KeyBlock(device, t, v, pageSize: 16, keys: 2 * v.BlockN + 22, badPage: true, seed + 2));
                results.Add(KeyBlock(device, t, v, pageSize: 48, keys: 5 * v.BlockN, badPage: false, seed + 3));
                results.Add(KeyBlock(device, t, v, pageSize: 256, keys: 5 * v.BlockN - 1, badPage: false, seed + 4));
                results.Add(KeyBlock(device, t, v, pageSize: 0, keys: v.BlockN + v.BlockN / 2 + 3, badPage: false, seed + 5));
                results.Add(Combine(device, t, v.HeadDim, seed + 6));
            }
        return results;
    }

    private static ushort ToBits(DataType t, float x) => t == DataType.BFloat16 ? BFloat16.RoundToBits(x) : BitConverter.HalfToUInt16Bits((Half)x);
    private static float FromBits(DataType t, ushort b) => t == DataType.BFloat16 ? BFloat16.ToSingle(b) : (float)BitConverter.UInt16BitsToHalf(b);
    private static float Normal(Random r) => (float)(Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble()));

    private static ushort[] RandomBits(DataType t, long count, Random rng)
    {
        var bits = new ushort[count];
        for (long i = 0; i < count; i++) bits[i] = ToBits(t, Normal(rng));
        return bits;
    }

    private static DeviceBuffer Upload<T>(T[] data, CudaDevice device) where T : unmanaged
    {
        var buffer = new DeviceBuffer(Math.Max(1, data.Length) * (long)System.Runtime.CompilerServices.Unsafe.SizeOf<T>(), device);
        buffer.CopyFrom<T>(data);
        return buffer;
    }

    /// <summary>
    /// S = Q·Kᵀ where Q's rows are the packed rows of one m-block: row R of KV head h_k is query R / group of query head
    /// h_k·group + R % group; rows past seqlen_q·group are zero.
    /// </summary>
    private static ProbeResult PackedQ(CudaDevice device, DataType t, DecodeVariant v, int seqLenQ, int group, int headK, int mBlock, int seed)
    {
        int d = v.HeadDim, batch = 2, b = 1, headsQ = 2 * group, rows = seqLenQ * group;
        var rng = new Random(seed);
        var q = RandomBits(t, (long)batch * seqLenQ * headsQ * d, rng);
        var k = RandomBits(t, 64L * d, rng);
        using var qb = Upload(q, device);
        using var kb = Upload(k, device);
        using var ob = new DeviceBuffer(64L * 64 * 4, device);
        using var flag = new DeviceBuffer(4, device);
        ob.Fill(0xFF);
        flag.Fill(0);
        var p = new DecodeParams
        {
            Batch = batch, SeqLenQ = seqLenQ, HeadsQ = headsQ, HeadsK = 2, Group = group, Rows = rows,
            Q = qb.Pointer, QStrideB = (long)seqLenQ * headsQ * d, QStrideS = (long)headsQ * d, QStrideH = d,
        };
        var map = AttentionTensorMaps.Tokens(DeviceTensor.Contiguous(kb.Pointer, t, 1, 64, 1, d).ToLayout("probe"), 64, device);
        int smem = 1024 + 2 * 64 * d * 2 + (v.QSource == QSource.SharedMemory ? 64 * d * 2 : 0) + 32;
        Kernel(device, QName(t, d, v.QSource)).Launch(new LaunchConfig(1, 128, smem),
            new KernelArguments().Add(p).Add(map).Add(b).Add(headK).Add(mBlock).Add(ob.Address).Add(flag.Address));
        var got = new float[64 * 64];
        ob.CopyTo<float>(got);
        var timedOut = new int[1];
        flag.CopyTo<int>(timedOut);
        double maxErr = 0, maxRef = 0;
        for (int r = 0; r < 64; r++)
        {
            int packed = mBlock * 64 + r;
            for (int j = 0; j < 64; j++)
            {
                double s = 0;
                if (packed < rows)
                {
                    long row = (((long)b * seqLenQ + packed / group) * headsQ + headK * group + packed % group) * d;
                    for (int c = 0; c < d; c++) s += (double)FromBits(t, q[row + c]) * FromBits(t, k[j * d + c]);
                }
                maxRef = Math.Max(maxRef, Math.Abs(s));
                double g = got[r * 64 + j];
                maxErr = Math.Max(maxErr, double.IsFinite(g) ? Math.Abs(g - s) : double.PositiveInfinity);
            }
        }
        double rel = timedOut[0] != 0 ? double.PositiveInfinity : maxErr / Math.Max(maxRef, 1e-30);
        return new ProbeResult($"decode-q {DataTypes.ShortName(t)} d{d} {v.QSource} sq{seqLenQ}×{group} m{mBlock}",
            v.QSource == QSource.Registers ? "packed query heads → wgmma A fragment from global memory, S = Q·Kᵀ" : "packed query heads → swizzled shared-memory Q tile, S = Q·Kᵀ",
            rel, 1e-5, rel <= 1e-5);
    }

    /// <summary>
    /// One key block loaded by the producer warp: from a pool of pages (<paramref name="pageSize"/> &gt; 0, a random page
    /// table; with <paramref name="badPage"/> one entry past the pool, which must be recorded and read as page 0) or from a
    /// contiguous cache (rows past its capacity read as zeros). The stage must hold, at each loaded box's rows, the
    /// tokens in the 128-byte-swizzled layout; boxes past the keys are not loaded and not checked.
    /// </summary>
    private static ProbeResult KeyBlock(CudaDevice device, DataType t, DecodeVariant v, int pageSize, int keys, bool badPage, int seed)
    {
        int d = v.HeadDim, bn = v.BlockN, headsK = 2, hk = 1, batch = 2, b = 1, slabs = d / 64;
        int nBlock = (keys - 1) / bn;  // the block that holds the last key: cut by it when keys is no multiple of bn
        var rng = new Random(seed);
        bool paged = pageSize > 0;
        int maxPages = paged ? (keys + pageSize - 1) / pageSize : 0;
        int numPages = paged ? batch * maxPages + 3 : batch;
        int rowsPerPage = paged ? pageSize : keys - 7;  // a contiguous cache shorter than the keys: the block's tail lies past it
        var pool = RandomBits(t, (long)numPages * rowsPerPage * headsK * d, rng);
        var poolV = RandomBits(t, pool.Length, rng);
        var table = new int[Math.Max(1, batch * maxPages)];
        var order = Enumerable.Range(0, numPages).OrderBy(_ => rng.Next()).ToArray();
        for (int i = 0; i < batch * maxPages; i++) table[i] = order[i];
        int badIndex = -1;
        if (paged && badPage)
        {
            badIndex = (nBlock * bn + (bn > pageSize ? pageSize : 0)) / pageSize;  // the block's second page (its first when a page holds the block)
            table[b * maxPages + badIndex] = numPages + 5;
        }
        using var kb = Upload(pool, device);
        using var vb = Upload(poolV, device);
        using var tb = Upload(table, device);
        using var err = new DeviceBuffer(16, device);
        using var outK = new DeviceBuffer(bn * d * 2L, device);
        using var outV = new DeviceBuffer(bn * d * 2L, device);
        using var flag = new DeviceBuffer(4, device);
        err.Fill(0);
        flag.Fill(0);
        outK.Fill(0xFF);
        outV.Fill(0xFF);
        int boxRows = FlashDecodeLauncher.BoxRows(pageSize, bn);
        var p = new DecodeParams
        {
            Batch = batch, HeadsK = headsK, PageSize = pageSize, BoxRows = boxRows, NumPages = numPages, MaxPages = maxPages,
            PageTable = paged ? tb.Pointer : 0, PageTableStride = maxPages, Error = err.Pointer,
        };
        TensorLayout Layout(DeviceBuffer buffer) => DeviceTensor.Contiguous(buffer.Pointer, t, numPages, rowsPerPage, headsK, d).ToLayout("probe");
        var mapK = AttentionTensorMaps.Tokens(Layout(kb), (uint)boxRows, device);
        var mapV = AttentionTensorMaps.Tokens(Layout(vb), (uint)boxRows, device);
        int smem = 1024 + 2 * bn * d * 2 + 32;
        Kernel(device, KvName(t, d, bn)).Launch(new LaunchConfig(1, 160, smem),
            new KernelArguments().Add(p).Add(mapK).Add(mapV).Add(b).Add(hk).Add(keys).Add(nBlock).Add(outK.Address).Add(outV.Address).Add(flag.Address));
        var gotK = new ushort[bn * d];
        var gotV = new ushort[bn * d];
        outK.CopyTo<ushort>(gotK);
        outV.CopyTo<ushort>(gotV);
        var words = new int[4];
        err.CopyTo<int>(words);
        var timedOut = new int[1];
        flag.CopyTo<int>(timedOut);

        int wrong = 0;
        for (int box = 0; box < bn / boxRows; box++)
        {
            int token = nBlock * bn + box * boxRows;
            if (token >= keys) continue;  // not loaded
            int page = paged ? table[b * maxPages + token / pageSize] : b, row0 = paged ? token % pageSize : token;
            if (page < 0 || page >= numPages) page = 0;  // a page outside the pool: page 0 is read in its place
            for (int r = 0; r < boxRows; r++)
            {
                int stageRow = box * boxRows + r, row = row0 + r;
                bool inside = page >= 0 && page < numPages && row < rowsPerPage;
                for (int c = 0; c < d; c++)
                {
                    int slab = c / 64, col = c % 64;
                    int offset = slab * bn * 64 + stageRow * 64 + (((col / 8) ^ (stageRow % 8)) * 8) + col % 8;  // in 16-bit elements
                    long src = (((long)page * rowsPerPage + row) * headsK + hk) * d + c;
                    if (gotK[offset] != (inside ? pool[src] : 0)) wrong++;
                    if (gotV[offset] != (inside ? poolV[src] : 0)) wrong++;
                }
            }
        }
        bool recorded = badIndex < 0 ? words[0] == 0 : words.SequenceEqual([2, b, badIndex, numPages + 5]);
        double error = timedOut[0] != 0 ? double.PositiveInfinity : wrong + (recorded ? 0 : 1);
        string layout = paged ? $"pages of {pageSize}{(badPage ? ", one past the pool" : "")}" : "contiguous, tail past the capacity";
        return new ProbeResult($"decode-kv {DataTypes.ShortName(t)} d{d} n{bn} {layout}, {keys} keys",
            "producer warp: page lookups, page-aligned TMA boxes in the stage, skipped and zero-filled boxes, transaction bytes, error word",
            error, 0, error == 0);
    }

    /// <summary>
    /// The merge of split results through their LSE (common/combine.cuh's merge_row, a warp per row as the decode
    /// kernel's last split runs it) against a float64 merge: parts with random LSE, some empty (−∞), one row with every
    /// part empty (O = 0, LSE = −∞).
    /// </summary>
    private static ProbeResult Combine(CudaDevice device, DataType t, int d, int seed)
    {
        const int parts = 5, batch = 3, seqLenQ = 2, heads = 4;
        int rows = batch * seqLenQ * heads;
        var rng = new Random(seed);
        var lse = new float[parts * rows];
        var o = new float[parts * rows * d];
        for (int i = 0; i < lse.Length; i++) lse[i] = rng.Next(4) == 0 ? float.NegativeInfinity : (float)(rng.NextDouble() * 6 - 2);
        for (int p = 0; p < parts; p++) lse[p * rows + 5] = float.NegativeInfinity;  // row 5: every part empty
        for (int i = 0; i < o.Length; i++) o[i] = Normal(rng);
        using var ob = Upload(o, device);
        using var lb = Upload(lse, device);
        using var outO = new DeviceBuffer(rows * d * 2L, device);
        using var outLse = new DeviceBuffer(rows * 4L, device);
        outO.Fill(0xFF);
        outLse.Fill(0xFF);
        var args = new ProbeCombineParams
        {
            NumParts = parts, Batch = batch, SeqLenQ = seqLenQ, HeadsQ = heads, OPartial = ob.Pointer, LsePartial = lb.Pointer,
            O = outO.Pointer, OStrideB = (long)seqLenQ * heads * d, OStrideS = heads * d, OStrideH = d,
            Lse = outLse.Pointer, LseStrideB = heads * seqLenQ, LseStrideH = seqLenQ, LseStrideS = 1,
        };
        Kernel(device, CombineName(t, d)).Launch(new LaunchConfig((rows + 3) / 4, 128), new KernelArguments().Add(args));
        var gotO = new ushort[rows * d];
        var gotLse = new float[rows];
        outO.CopyTo<ushort>(gotO);
        outLse.CopyTo<float>(gotLse);

        double worst = 0;
        for (int row = 0; row < rows; row++)
        {
            int h = row % heads, s = row / heads % seqLenQ, b = row / (heads * seqLenQ);
            int lseAt = (b * heads + h) * seqLenQ + s;
            double max = double.NegativeInfinity;
            for (int p = 0; p < parts; p++) max = Math.Max(max, lse[p * rows + row]);
            double sum = 0;
            for (int p = 0; p < parts; p++) sum += double.IsNegativeInfinity(lse[p * rows + row]) ? 0 : Math.Exp(lse[p * rows + row] - max);
            double merged = sum > 0 ? max + Math.Log(sum) : double.NegativeInfinity;
            double got = gotLse[lseAt];
            worst = Math.Max(worst, double.IsNegativeInfinity(merged) ? (double.IsNegativeInfinity(got) ? 0 : double.PositiveInfinity) : Math.Abs(got - merged));
            for (int c = 0; c < d; c++)
            {
                double expected = 0;
                for (int p = 0; p < parts; p++)
                    if (!double.IsNegativeInfinity(lse[p * rows + row])) expected += Math.Exp(lse[p * rows + row] - merged) * o[((long)p * rows + row) * d + c];
                double g = FromBits(t, gotO[row * d + c]);
                // The output's rounding to the element type: half a unit in the last place of the value.
                double ulp = (t == DataType.BFloat16 ? 1.0 / 128 : 1.0 / 1024) * Math.Max(Math.Abs(expected), 1e-3);
                worst = Math.Max(worst, double.IsFinite(g) ? Math.Max(0, Math.Abs(g - expected) - ulp) : double.PositiveInfinity);
            }
        }
        return new ProbeResult($"combine {DataTypes.ShortName(t)} d{d} {parts} parts, empty parts and rows",
            "LSE merge of split results (common/combine.cuh's merge_row)", worst, 1e-4, worst <= 1e-4);
    }

    /// <summary>Mirror of <c>fa::ProbeCombineParams</c> (probes/decode_probes.cu, 96 bytes).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 96)]
    private struct ProbeCombineParams
    {
        [FieldOffset(0)] public int NumParts;
        [FieldOffset(4)] public int Batch;
        [FieldOffset(8)] public int SeqLenQ;
        [FieldOffset(12)] public int HeadsQ;
        [FieldOffset(16)] public nint OPartial;
        [FieldOffset(24)] public nint LsePartial;
        [FieldOffset(32)] public nint O;
        [FieldOffset(40)] public long OStrideB;
        [FieldOffset(48)] public long OStrideS;
        [FieldOffset(56)] public long OStrideH;
        [FieldOffset(64)] public nint Lse;
        [FieldOffset(72)] public long LseStrideB;
        [FieldOffset(80)] public long LseStrideH;
        [FieldOffset(88)] public long LseStrideS;
    }
}
