using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FlashAttention.Cpu;

/// <summary>
/// FlashAttention-2's backward on the CPU.
/// <para>
/// Pre-pass: per query row, <c>D = rowsum(dO ∘ O)</c> and the log-sum-exp in the log2 domain. Main pass: work items
/// are (batch, key head, slab of key tiles). An item walks its key tiles; for each it holds <c>Kᵀ</c>, <c>Vᵀ</c>
/// and float32 accumulators for <c>dK</c>, <c>dV</c>, and loops over the query heads of its GQA group and the query
/// tiles that see the key tile: <c>S = Q·Kᵀ</c>, <c>dP = dO·Vᵀ</c>, <c>P = exp2(t − lse)</c> recomputed from the
/// forward's LSE (no max/sum pass, no Sq×Sk memory), <c>dS = P∘(dP − D)</c> (∘ (1 − tanh²) under softcap, × scale),
/// <c>dV += Pᵀ·dO</c>, <c>dK += dSᵀ·Q</c>, <c>dQ += dS·K</c>: five products per tile pair, all through
/// <see cref="GemmKernels"/>. dK/dV of a key tile belong to exactly one item, so GQA's sum over query heads happens
/// inside it, in float32, in a fixed order.
/// </para>
/// <para>
/// dQ without races or atomics, and the same bits whatever the core count: the key tiles of each (batch, key head) are
/// dealt round-robin to S slabs (<see cref="QueryGradientSlabs"/>, a function of the problem alone; round-robin
/// balances causal masks, where early keys see more queries). A slab's terms are summed in float32 in ascending tile
/// order from zero, and dQ = slab 0 + slab 1 + … + slab S−1 in that order. Two schemes compute exactly that sum: with
/// at least <c>2 × cores</c> (batch, key head) pairs, an item is a whole pair that walks its slabs one after the other
/// in its own buffers; with fewer pairs (small batch, MQA) an item is one slab of one pair, writing a float32 partial
/// that a final pass adds in slab order. Which scheme runs, and which thread runs an item, never changes the bits.
/// Measured on 2 cores (Zen 5), B=1, H=8, S=4096, D=128, i.e. 8 pairs: one slab reached 290–299 GFLOP/s on a quiet
/// machine, 2 and 4 partials 238–273 (the partials' zeroing and the reduction, O(S·Sq·D) per head, plus a less
/// cache-friendly dQ); under load from other processes all three fell to 70–160 with no consistent order.
/// </para>
/// </summary>
internal static unsafe partial class CpuFlashAttention
{
    public static void Backward<T>(AttentionProblem p, T* q, T* k, T* v, T* o, T* dO, float* lse, T* dq, T* dk, T* dv) where T : unmanaged
    {
        if (Vector512.IsHardwareAccelerated) Backward<T, Simd512>(p, q, k, v, o, dO, lse, dq, dk, dv);
        else if (Vector256.IsHardwareAccelerated) Backward<T, Simd256>(p, q, k, v, o, dO, lse, dq, dk, dv);
        else Backward<T, Simd128>(p, q, k, v, o, dO, lse, dq, dk, dv);
    }

    /// <summary>
    /// Work items the slab count aims at when the (batch, key head) pairs are few: two per core on 16 cores. A constant,
    /// not the machine's core count, so that dQ's order of summation is the same on every machine. Walking extra slabs
    /// costs an item a pass over its dQ per slab, which did not show: 2 cores (Xeon), B=1, H=8, S=4096, D=128, fp32,
    /// best of 8: 1, 2 and 4 slabs walked 820, 815 and 819 ms (2 slabs as items with partials: 957 ms).
    /// </summary>
    internal const int SlabTargetItems = 32;

    /// <summary>
    /// How many slabs dQ of each (batch, key head) is summed from (see the class remarks): enough for
    /// <see cref="SlabTargetItems"/> items, at most one per key tile, the float32 partials within 1 GiB.
    /// </summary>
    internal static int QueryGradientSlabs(AttentionProblem p)
    {
        int pairs = p.Batch * p.HeadsK;
        if (pairs == 0) return 1;
        int maxTiles = 1;
        for (int b = 0; b < p.Batch; b++) maxTiles = Math.Max(maxTiles, (p.SeqLenKOf(b) + BackwardKeyTile - 1) / BackwardKeyTile);
        int slabs = Math.Min(maxTiles, (SlabTargetItems + pairs - 1) / pairs);
        long partialBytes = p.TotalQ * p.HeadsQ * (long)GemmKernels.RoundUp(p.HeadDim, 16) * sizeof(float);
        while (slabs > 1 && slabs * partialBytes > (1L << 30)) slabs--;
        return slabs;
    }

    /// <summary>
    /// True when the slabs of a pair run as separate items with float32 partials (fewer than two pairs per core), false
    /// when each pair is one item walking its slabs. Either gives the same bits.
    /// </summary>
    internal static bool SlabsAsItems(AttentionProblem p, int slabs, int cores) => slabs > 1 && p.Batch * p.HeadsK < 2 * cores;

    /// <summary>The backward at a chosen vector width.</summary>
    internal static void Backward<T, TV>(AttentionProblem p, T* q, T* k, T* v, T* o, T* dO, float* lse, T* dq, T* dk, T* dv)
        where T : unmanaged where TV : unmanaged, ISimd<TV>
    {
        int slabs = QueryGradientSlabs(p);
        Backward<T, TV>(p, q, k, v, o, dO, lse, dq, dk, dv, slabs, SlabsAsItems(p, slabs, Environment.ProcessorCount));
    }

    /// <summary>The backward at a chosen vector width, slab count and scheme (tests run every combination).</summary>
    internal static void Backward<T, TV>(AttentionProblem p, T* q, T* k, T* v, T* o, T* dO, float* lse, T* dq, T* dk, T* dv,
        int slabs, bool slabsAsItems)
        where T : unmanaged where TV : unmanaged, ISimd<TV>
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slabs, 1);
        int w = TV.Count, d = p.HeadDim, dp = GemmKernels.RoundUp(d, w);
        long totalQ = p.TotalQ;
        int hq = p.HeadsQ;
        nint pq = (nint)q, pk = (nint)k, pv = (nint)v, po = (nint)o, pdo = (nint)dO, plse = (nint)lse, pdq = (nint)dq, pdk = (nint)dk, pdv = (nint)dv;

        // Pre-pass: D = rowsum(dO ∘ O) and LSE·log2 e per (head, token); a row that saw no key gets +∞ so P = 0.
        var rowD = new float[hq * totalQ];
        var rowLse2 = new float[hq * totalQ];
        bool partial = slabsAsItems && slabs > 1;
        int items = p.Batch * p.HeadsK * (partial ? slabs : 1);
        long partialFloats = totalQ * hq * dp;
        float* partials = partial ? (float*)NativeMemory.AllocZeroed((nuint)(slabs * partialFloats), sizeof(float)) : null;
        try
        {
            fixed (float* pD = rowD, pL = rowLse2)
            {
                nint ppD = (nint)pD, ppL = (nint)pL, ppart = (nint)partials;
                ParallelWork.For(p.Batch * hq, bh =>
                    BackwardPrepass<T, TV>(p, (T*)po, (T*)pdo, (float*)plse, (float*)ppD, (float*)ppL, bh / hq, bh % hq));
                ParallelWork.For(items, item =>
                {
                    int slab = partial ? item % slabs : -1, bhk = partial ? item / slabs : item;
                    BackwardItem<T, TV>(p, (T*)pq, (T*)pk, (T*)pv, (T*)pdo, (T*)pdq, (T*)pdk, (T*)pdv,
                        (float*)ppD, (float*)ppL, bhk / p.HeadsK, bhk % p.HeadsK, slab, slabs, (float*)ppart);
                });
                if (partial)
                    ParallelWork.For(p.Batch * hq, bh => ReduceQueryGradient<T, TV>(p, (float*)ppart, slabs, (T*)pdq, bh / hq, bh % hq));
            }
        }
        finally
        {
            if (partials != null) NativeMemory.Free(partials);
        }
    }

    /// <summary>D = rowsum(dO ∘ O) and LSE·log2 e of every query row of (b, h), indexed (head, token).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardPrepass<T, TV>(AttentionProblem p, T* o, T* dO, float* lse, float* rowD, float* rowLse2, int b, int h)
        where T : unmanaged where TV : unmanaged, ISimd<TV>
    {
        int w = TV.Count, d = p.HeadDim, dp = GemmKernels.RoundUp(d, w);
        long totalQ = p.TotalQ;
        float* tmp = CpuScratch.Get(2 * dp);
        float* orow = tmp, grow = tmp + dp;
        for (int i = 0; i < p.SeqLenQOf(b); i++)
        {
            TileConvert.ToSingle(o + p.QueryOffset(p.O, b, i, h), orow, d, dp);
            TileConvert.ToSingle(dO + p.QueryOffset(p.DO, b, i, h), grow, d, dp);
            TV s = TV.Zero;
            for (int c = 0; c < dp; c += w) s = TV.Fma(TV.Load(orow + c), TV.Load(grow + c), s);
            long idx = h * totalQ + TokenQ(p, b, i);
            rowD[idx] = TV.Sum(s);
            float l = lse[p.LseOffset(b, h, i)];
            rowLse2[idx] = float.IsNegativeInfinity(l) ? float.PositiveInfinity : l * Log2E;
        }
    }

    /// <summary>dQ of (b, h) = Σ_s partial_s in slab order 0…S−1, converted once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ReduceQueryGradient<T, TV>(AttentionProblem p, float* partials, int slabs, T* dq, int b, int h)
        where T : unmanaged where TV : unmanaged, ISimd<TV>
    {
        int w = TV.Count, d = p.HeadDim, dp = GemmKernels.RoundUp(d, w), hq = p.HeadsQ;
        long partialFloats = p.TotalQ * hq * dp;
        float* sum = CpuScratch.Get(dp);
        for (int i = 0; i < p.SeqLenQOf(b); i++)
        {
            long off = (TokenQ(p, b, i) * hq + h) * dp;
            for (int x = 0; x < dp; x += w)
            {
                TV s = TV.Load(partials + off + x);
                for (int slab = 1; slab < slabs; slab++) s = TV.Add(s, TV.Load(partials + slab * partialFloats + off + x));
                TV.Store(sum + x, s);
            }
            TileConvert.FromSingle(sum, dq + p.QueryOffset(p.DQ, b, i, h), d);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardItem<T, TV>(AttentionProblem p, T* q, T* k, T* v, T* dO, T* dq, T* dk, T* dv,
        float* rowD, float* rowLse2, int b, int hk, int slab, int slabs, float* partials)
        where T : unmanaged where TV : unmanaged, ISimd<TV>
    {
        int w = TV.Count, d = p.HeadDim, dp = GemmKernels.RoundUp(d, w);
        int sq = p.SeqLenQOf(b), sk = p.SeqLenKOf(b);
        var mask = p.MaskOf(b);
        int group = p.GroupSize, hq = p.HeadsQ;
        long totalQ = p.TotalQ;
        const int bc = BackwardKeyTile, br = BackwardQueryTile;
        // Q and dO rows are broadcast (S, dP) and loaded as vectors (dK, dV); K rows are loaded as vectors (dQ):
        // in place when float32 with whole-vector rows, else converted per tile.
        bool inPlace = typeof(T) == typeof(float) && d % w == 0;

        // dQ of this item's query heads: one slab's float32 partial (slab ≥ 0), or, when the item is a whole pair
        // (slab = −1), its own buffer, which takes slab 0, and a second one for each later slab, added in after it.
        bool wholePair = slab < 0;
        long ownFloats = (long)group * sq * dp;
        float* dqOwn = wholePair ? (float*)NativeMemory.AllocZeroed((nuint)ownFloats, sizeof(float)) : null;
        float* dqSlab = wholePair && slabs > 1 ? (float*)NativeMemory.Alloc((nuint)ownFloats, sizeof(float)) : null;
        try
        {
            long need = 3 * CpuScratch.Carver.Size((long)bc * dp) + 2 * CpuScratch.Carver.Size((long)d * bc)
                + 2 * CpuScratch.Carver.Size((long)br * dp) + 2 * CpuScratch.Carver.Size((long)br * bc) + CpuScratch.Carver.Size(dp);
            var carve = new CpuScratch.Carver(CpuScratch.Get(need));
            float* kf = carve.Take((long)bc * dp);   // K tile, row-major kc × dp (B of dQ += dS·K)
            float* dkAcc = carve.Take((long)bc * dp);
            float* dvAcc = carve.Take((long)bc * dp);
            float* kt = carve.Take((long)d * bc);    // Kᵀ: d × bcp
            float* vt = carve.Take((long)d * bc);    // Vᵀ: d × bcp
            float* qf = carve.Take((long)br * dp);   // converted Q rows
            float* gf = carve.Take((long)br * dp);   // converted dO rows
            float* sP = carve.Take((long)br * bc);   // S, then P: rows × bcp
            float* dpS = carve.Take((long)br * bc);  // dP, then scale·dS: rows × bcp
            float* row = carve.Take(dp);

            bool softcap = p.Softcap > 0;
            TV toLog2 = TV.Broadcast(p.Scale * Log2E);
            TV capIn = TV.Broadcast(softcap ? p.Scale / p.Softcap : 0);
            TV capOut = TV.Broadcast(p.Softcap * Log2E);
            TV scale = TV.Broadcast(p.Scale);
            TV one = TV.Broadcast(1f);

            int keyTiles = (sk + bc - 1) / bc;
            for (int si = wholePair ? 0 : slab; si <= (wholePair ? slabs - 1 : slab); si++)
            {
                float* dqBase;
                nint dqHead, dqRow;
                if (wholePair)
                {
                    dqBase = si == 0 ? dqOwn : dqSlab;
                    dqHead = (nint)sq * dp; dqRow = dp;
                    if (si > 0) new Span<float>(dqSlab, checked((int)ownFloats)).Clear();
                }
                else
                {
                    dqBase = partials + si * totalQ * hq * dp + (TokenQ(p, b, 0) * hq + (long)hk * group) * dp;
                    dqHead = dp; dqRow = (nint)hq * dp;
                }
                for (int jt = si; jt < keyTiles; jt += slabs)
                {
                    int j0 = jt * bc, kc = Math.Min(bc, sk - j0), bcp = GemmKernels.RoundUp(kc, w);
                    float* kp; nint ldk;
                    if (inPlace) { kp = (float*)(k + p.KeyOffset(p.K, b, j0, hk)); ldk = (nint)p.K.Sequence; }
                    else
                    {
                        for (int r = 0; r < kc; r++) TileConvert.ToSingle(k + p.KeyOffset(p.K, b, j0 + r, hk), kf + (nint)r * dp, d, dp);
                        kp = kf; ldk = dp;
                    }
                    // Kᵀ and Vᵀ, zero in the padding columns kc…bcp.
                    for (int r = 0; r < kc; r++)
                    {
                        float* kr = kp + r * ldk;
                        for (int c = 0; c < d; c++) kt[(nint)c * bcp + r] = kr[c];
                        TileConvert.ToSingle(v + p.KeyOffset(p.V, b, j0 + r, hk), row, d, d);
                        for (int c = 0; c < d; c++) vt[(nint)c * bcp + r] = row[c];
                    }
                    for (int r = kc; r < bcp; r++)
                        for (int c = 0; c < d; c++) { kt[(nint)c * bcp + r] = 0; vt[(nint)c * bcp + r] = 0; }
                    new Span<float>(dkAcc, kc * dp).Clear();
                    new Span<float>(dvAcc, kc * dp).Clear();

                    // Query rows that see at least one key of this tile: a contiguous range, both mask bounds being monotone.
                    int iLo = FirstRowReaching(mask, sq, j0), iHi = LastRowReaching(mask, sq, j0 + kc - 1);
                    for (int hh = 0; hh < group && iLo <= iHi; hh++)
                    {
                        int h = hk * group + hh;
                        for (int i0 = iLo; i0 <= iHi; i0 += br)
                        {
                            int rows = Math.Min(br, iHi + 1 - i0);
                            float* qp, gp; nint ldq, ldg;
                            if (inPlace)
                            {
                                qp = (float*)(q + p.QueryOffset(p.Q, b, i0, h)); ldq = (nint)p.Q.Sequence;
                                gp = (float*)(dO + p.QueryOffset(p.DO, b, i0, h)); ldg = (nint)p.DO.Sequence;
                            }
                            else
                            {
                                for (int r = 0; r < rows; r++)
                                {
                                    TileConvert.ToSingle(q + p.QueryOffset(p.Q, b, i0 + r, h), qf + (nint)r * dp, d, dp);
                                    TileConvert.ToSingle(dO + p.QueryOffset(p.DO, b, i0 + r, h), gf + (nint)r * dp, d, dp);
                                }
                                qp = qf; ldq = dp; gp = gf; ldg = dp;
                            }

                            GemmKernels.Run<TV>(rows, bcp, d, qp, ldq, 1, kt, bcp, sP, bcp, accumulate: false);  // S = Q·Kᵀ
                            GemmKernels.Run<TV>(rows, bcp, d, gp, ldg, 1, vt, bcp, dpS, bcp, accumulate: false); // dP = dO·Vᵀ

                            bool full = mask.FirstKey(i0 + rows - 1) <= j0 && mask.LastKey(i0) >= j0 + kc - 1;
                            for (int r = 0; r < rows; r++)
                            {
                                long idx = h * totalQ + TokenQ(p, b, i0 + r);
                                TV lse2 = TV.Broadcast(rowLse2[idx]), dd = TV.Broadcast(rowD[idx]);
                                int lo = mask.FirstKey(i0 + r), hi = mask.LastKey(i0 + r);
                                float* sr = sP + (nint)r * bcp, gr = dpS + (nint)r * bcp;
                                for (int x = 0; x < bcp; x += w)
                                {
                                    TV s = TV.Load(sr + x);
                                    TV t, dsdt;
                                    if (softcap)
                                    {
                                        TV th = SimdMath.Tanh(TV.Mul(s, capIn));
                                        t = TV.Mul(th, capOut);
                                        dsdt = TV.Mul(scale, TV.Sub(one, TV.Mul(th, th))); // d(cap·tanh(scale·s/cap))/ds
                                    }
                                    else
                                    {
                                        t = TV.Mul(s, toLog2);
                                        dsdt = scale;
                                    }
                                    if (!full) t = TV.KeepWhereIndexInRange(t, j0 + x, lo, hi, float.NegativeInfinity);
                                    TV pr = SimdMath.Exp2(TV.Sub(t, lse2));
                                    TV ds = TV.Mul(TV.Mul(pr, TV.Sub(TV.Load(gr + x), dd)), dsdt);
                                    TV.Store(sr + x, pr);
                                    TV.Store(gr + x, ds);
                                }
                            }

                            // Pᵀ and dSᵀ are read as A(j, i) = tile[i·bcp + j].
                            GemmKernels.Run<TV>(kc, dp, rows, sP, 1, bcp, gp, ldg, dvAcc, dp, accumulate: true);   // dV += Pᵀ·dO
                            GemmKernels.Run<TV>(kc, dp, rows, dpS, 1, bcp, qp, ldq, dkAcc, dp, accumulate: true);  // dK += dSᵀ·Q
                            GemmKernels.Run<TV>(rows, dp, kc, dpS, bcp, 1, kp, ldk,                                // dQ += dS·K
                                dqBase + hh * dqHead + i0 * dqRow, dqRow, accumulate: true);
                        }
                    }
                    for (int r = 0; r < kc; r++)
                    {
                        TileConvert.FromSingle(dkAcc + (nint)r * dp, dk + p.KeyOffset(p.DK, b, j0 + r, hk), d);
                        TileConvert.FromSingle(dvAcc + (nint)r * dp, dv + p.KeyOffset(p.DV, b, j0 + r, hk), d);
                    }
                }
                // The slab's sum joins the running total in slab order, as the partials' reduction adds them.
                if (wholePair && si > 0)
                    for (long x = 0; x < ownFloats; x += w) TV.Store(dqOwn + x, TV.Add(TV.Load(dqOwn + x), TV.Load(dqSlab + x)));
            }
            if (wholePair)
                for (int hh = 0; hh < group; hh++)
                    for (int i = 0; i < sq; i++)
                        TileConvert.FromSingle(dqOwn + (hh * (nint)sq + i) * dp, dq + p.QueryOffset(p.DQ, b, i, hk * group + hh), d);
        }
        finally
        {
            if (dqOwn != null) NativeMemory.Free(dqOwn);
            if (dqSlab != null) NativeMemory.Free(dqSlab);
        }
    }

    /// <summary>Smallest query row whose last visible key is ≥ j (sq when none).</summary>
    private static int FirstRowReaching(AttentionMask mask, int sq, int j)
    {
        int lo = 0, hi = sq;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (mask.LastKey(mid) >= j) hi = mid; else lo = mid + 1;
        }
        return lo;
    }

    /// <summary>Largest query row whose first visible key is ≤ j (−1 when none).</summary>
    private static int LastRowReaching(AttentionMask mask, int sq, int j)
    {
        int lo = -1, hi = sq - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >>> 1;
            if (mask.FirstKey(mid) <= j) lo = mid; else hi = mid - 1;
        }
        return lo;
    }
}
