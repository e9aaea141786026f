using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FlashAttention.Cpu;

/// <summary>
/// FlashAttention-2 on the CPU: tiles of <see cref="QueryTile"/> queries against tiles of <see cref="KeyTile"/> keys,
/// online softmax, float32 accumulation, no Sq×Sk memory, tiles outside the mask skipped, vectorised
/// (<see cref="ISimd{TSelf}"/>: AVX-512 where the hardware has it, else 256/128-bit) and parallel over all cores.
/// <para>
/// Forward layout (per work item = one (batch, head, query tile)): the query tile is transposed once into
/// <c>Qᵀ</c> (head_dim × Br), so for every key tile the scores come out transposed, <c>Sᵀ = K·Qᵀ</c> (Bc × Br):
/// the K rows are broadcast straight from the caller's tensor (float32) or a converted copy, and the softmax
/// statistics run down the columns, i.e. vectorised across 16 query rows at once with no horizontal reductions.
/// Then <c>O += P·V</c> reads P from that transposed tile (broadcasts) and V rows as vectors. Both products use the
/// register-blocked kernels of <see cref="GemmKernels"/>. Scores are kept in the log2 domain
/// (<c>t = s·scale·log2 e</c>) so the exponential is one <see cref="SimdMath.Exp2{TV}"/>.
/// </para>
/// <para>Backward: see CpuFlashAttention.Backward.cs.</para>
/// </summary>
internal static unsafe partial class CpuFlashAttention
{
    // Tile sizes. The micro-kernels work in blocks of 6 rows × 4 vectors (64 columns with AVX-512), so tiles whose
    // GEMM rows are multiples of 6 and whose GEMM columns are multiples of 64 waste nothing. Measured on the 2-core
    // Zen 5 (S=2048, D=128, one thread; noisy, differences of a few %): forward Br 64 → 128 gained ~5%, 192 ~2% more
    // but halves the work items of short or causal problems; Bc 96 gained nothing. Backward 96×64 ≥ 64×64 ≈ 96×96.

    /// <summary>Forward: query rows per tile (Br). A multiple of 16 so Sᵀ's rows are whole vectors; 128 = 2 kernel blocks.</summary>
    internal const int QueryTile = 128;
    /// <summary>Forward: key rows per tile (Bc).</summary>
    internal const int KeyTile = 64;
    /// <summary>Backward: query rows per tile: 16 whole 6-row blocks for S, dP and dQ.</summary>
    internal const int BackwardQueryTile = 96;
    /// <summary>Backward: key rows per tile (one dK/dV accumulator block; 64 = one 4-vector block wide for S and dP).</summary>
    internal const int BackwardKeyTile = 64;

    private const float Log2E = 1.4426950408889634f;
    private const double Ln2 = 0.69314718055994530942;

    public static void Forward<T>(AttentionProblem p, T* q, T* k, T* v, T* o, float* lse) where T : unmanaged
        => Forward<T, NoRounding>(p, q, k, v, o, lse);

    /// <summary>Forward with P rounded by <typeparamref name="TRound"/> before P·V (see <see cref="IProbabilityRounding"/>).</summary>
    public static void Forward<T, TRound>(AttentionProblem p, T* q, T* k, T* v, T* o, float* lse)
        where T : unmanaged where TRound : struct, IProbabilityRounding
    {
        if (Vector512.IsHardwareAccelerated) Forward<T, TRound, Simd512>(p, q, k, v, o, lse);
        else if (Vector256.IsHardwareAccelerated) Forward<T, TRound, Simd256>(p, q, k, v, o, lse);
        else Forward<T, TRound, Simd128>(p, q, k, v, o, lse);
    }

    /// <summary>The forward at a chosen vector width (tests run every width on one machine).</summary>
    internal static void Forward<T, TRound, TV>(AttentionProblem p, T* q, T* k, T* v, T* o, float* lse)
        where T : unmanaged where TRound : struct, IProbabilityRounding where TV : unmanaged, ISimd<TV>
    {
        // Work items: every (head, batch, query tile). Consecutive items share (batch, head), hence K/V in cache.
        var tileBatch = new List<int>();
        var tileStart = new List<int>();
        for (int b = 0; b < p.Batch; b++)
            for (int i0 = 0; i0 < p.SeqLenQOf(b); i0 += QueryTile)
            {
                tileBatch.Add(b);
                tileStart.Add(i0);
            }
        int tiles = tileBatch.Count;
        if (tiles == 0) return;
        int[] tb = tileBatch.ToArray(), ts = tileStart.ToArray();
        nint pq = (nint)q, pk = (nint)k, pv = (nint)v, po = (nint)o, plse = (nint)lse;
        ParallelWork.For(tiles * p.HeadsQ, item =>
        {
            int h = item / tiles, t = item % tiles;
            ForwardTile<T, TRound, TV>(p, (T*)pq, (T*)pk, (T*)pv, (T*)po, (float*)plse, tb[t], h, ts[t]);
        });
    }

    // Full optimisation from the first call: at tier 0 the ISimd wrappers are calls, ~10× slower, and a one-shot
    // caller (the CLI on user files) would pay for it. Same for the other per-tile methods and the kernels.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardTile<T, TRound, TV>(AttentionProblem p, T* q, T* k, T* v, T* o, float* lse, int b, int h, int i0)
        where T : unmanaged where TRound : struct, IProbabilityRounding where TV : unmanaged, ISimd<TV>
    {
        int w = TV.Count, d = p.HeadDim, dp = GemmKernels.RoundUp(d, w);
        int sq = p.SeqLenQOf(b);
        var mask = p.MaskOf(b);
        int rows = Math.Min(QueryTile, sq - i0);
        int nq = GemmKernels.RoundUp(rows, w); // Sᵀ row length: query rows padded to whole vectors
        int hk = h / p.GroupSize;
        // K rows are only broadcast, so float32 K is used in place; V rows are loaded as vectors, so in place
        // only when head_dim is whole vectors. Anything else is converted (and padded) once per tile. (Copying
        // float32 tiles into contiguous scratch anyway, against 4 KiB aliasing of strided rows, measured ~8% slower.)
        bool kInPlace = typeof(T) == typeof(float);
        bool vInPlace = typeof(T) == typeof(float) && d % w == 0;

        const int bc = KeyTile, br = QueryTile;
        long need = CpuScratch.Carver.Size((long)d * br) + CpuScratch.Carver.Size((long)bc * br) + CpuScratch.Carver.Size((long)br * dp)
            + CpuScratch.Carver.Size((long)bc * d) + CpuScratch.Carver.Size((long)bc * dp) + 5 * CpuScratch.Carver.Size(br)
            + CpuScratch.Carver.Size(dp);
        var carve = new CpuScratch.Carver(CpuScratch.Get(need));
        float* qt = carve.Take((long)d * br);     // Qᵀ: d × nq
        float* st = carve.Take((long)bc * br);    // Sᵀ, then Pᵀ: kc × nq
        float* acc = carve.Take((long)br * dp);   // O accumulator: rows × dp
        float* kf = carve.Take((long)bc * d);     // converted K tile: kc × d
        float* vf = carve.Take((long)bc * dp);    // converted V tile: kc × dp
        float* rowMax = carve.Take(br);           // running max (log2 domain), per query row
        float* rowSum = carve.Take(br);           // running sum
        float* alpha = carve.Take(br);            // this tile's rescale factor exp2(m_old − m_new)
        int* firstKey = carve.TakeInts(br), lastKey = carve.TakeInts(br);
        float* row = carve.Take(dp);

        // Qᵀ, zero in the padding columns.
        for (int i = 0; i < rows; i++)
        {
            TileConvert.ToSingle(q + p.QueryOffset(p.Q, b, i0 + i, h), row, d, d);
            for (int c = 0; c < d; c++) qt[(nint)c * nq + i] = row[c];
        }
        for (int i = rows; i < nq; i++)
            for (int c = 0; c < d; c++) qt[(nint)c * nq + i] = 0;
        for (int i = 0; i < nq; i++)
        {
            firstKey[i] = mask.FirstKey(i0 + i);
            lastKey[i] = mask.LastKey(i0 + i);
            rowMax[i] = float.NegativeInfinity;
            rowSum[i] = 0;
        }
        new Span<float>(acc, rows * dp).Clear();

        bool softcap = p.Softcap > 0;
        TV toLog2 = TV.Broadcast(p.Scale * Log2E);                 // t = s · scale · log2 e
        TV capIn = TV.Broadcast(softcap ? p.Scale / p.Softcap : 0); // t = log2 e · cap · tanh(s · scale / cap)
        TV capOut = TV.Broadcast(p.Softcap * Log2E);
        TV one = TV.Broadcast(1f);

        // Keys seen by any row of the tile: first key of the first row … last key of the last row (both monotone).
        int kLo = mask.FirstKey(i0), kHi = mask.LastKey(i0 + rows - 1);
        for (int j0 = kLo; j0 <= kHi; j0 += bc)
        {
            int kc = Math.Min(bc, kHi + 1 - j0);
            float* kp; nint ldk;
            if (kInPlace) { kp = (float*)(k + p.KeyOffset(p.K, b, j0, hk)); ldk = (nint)p.K.Sequence; }
            else
            {
                for (int r = 0; r < kc; r++) TileConvert.ToSingle(k + p.KeyOffset(p.K, b, j0 + r, hk), kf + (nint)r * d, d, d);
                kp = kf; ldk = d;
            }
            float* vp; nint ldv;
            if (vInPlace) { vp = (float*)(v + p.KeyOffset(p.V, b, j0, hk)); ldv = (nint)p.V.Sequence; }
            else
            {
                for (int r = 0; r < kc; r++) TileConvert.ToSingle(v + p.KeyOffset(p.V, b, j0 + r, hk), vf + (nint)r * dp, d, dp);
                vp = vf; ldv = dp;
            }

            // Sᵀ = K · Qᵀ  (kc × nq, reduction over d)
            GemmKernels.Run<TV>(kc, nq, d, kp, ldk, 1, qt, nq, st, nq, accumulate: false);

            // Whole tile visible to every real row? Then no per-element mask.
            bool full = mask.FirstKey(i0 + rows - 1) <= j0 && mask.LastKey(i0) >= j0 + kc - 1;
            bool rescale = false;
            for (int c0 = 0; c0 < nq; c0 += w)
            {
                float* col = st + c0;
                TV mOld = TV.Load(rowMax + c0), mNew = mOld;
                for (int j = 0; j < kc; j++)
                {
                    float* cell = col + (nint)j * nq;
                    TV s = TV.Load(cell);
                    TV t = softcap ? TV.Mul(SimdMath.Tanh(TV.Mul(s, capIn)), capOut) : TV.Mul(s, toLog2);
                    if (!full) t = TV.KeepWhereInRange(t, firstKey + c0, lastKey + c0, j0 + j, float.NegativeInfinity);
                    TV.Store(cell, t);
                    mNew = TV.Max(mNew, t);
                }
                // A row that has seen no key keeps max −∞; subtract 0 instead so exp2(−∞ − 0) = 0, never NaN.
                TV mSafe = SimdMath.NegativeInfinityToZero(mNew);
                TV a = SimdMath.Exp2(TV.Sub(mOld, mSafe));
                TV sum = TV.Zero;
                for (int j = 0; j < kc; j++)
                {
                    float* cell = col + (nint)j * nq;
                    TV pj = SimdMath.Exp2(TV.Sub(TV.Load(cell), mSafe));
                    TV.Store(cell, pj);
                    sum = TV.Add(sum, pj); // the row sum takes the unrounded P
                }
                TV.Store(rowSum + c0, TV.Fma(TV.Load(rowSum + c0), a, sum));
                TV.Store(rowMax + c0, mNew);
                TV.Store(alpha + c0, a);
                if (!TV.EqualsAll(a, one)) rescale = true;
            }
            TRound.Round(new Span<float>(st, kc * nq));

            // O = diag(alpha)·O + P · V  (rows × dp, reduction over kc); Pᵀ is read as P(i, j) = st[j·nq + i].
            GemmKernels.Run<TV>(rows, dp, kc, st, 1, nq, vp, ldv, acc, dp, accumulate: true, rescale ? alpha : null);
        }

        // O / l, and LSE = ln 2 · m + ln l (−∞ and O = 0 for a row that saw no key; NaN for both when a score was NaN,
        // which leaves l NaN: a row that saw a NaN must not read as a row that saw nothing).
        for (int i = 0; i < rows; i++)
        {
            float l = rowSum[i];
            float* orow = acc + (nint)i * dp;
            TV inv = TV.Broadcast(l > 0 ? 1f / l : float.IsNaN(l) ? float.NaN : 0f);
            for (int c = 0; c < dp; c += w) TV.Store(orow + c, TV.Mul(TV.Load(orow + c), inv));
            TileConvert.FromSingle(orow, o + p.QueryOffset(p.O, b, i0 + i, h), d);
            if (lse != null)
                lse[p.LseOffset(b, h, i0 + i)] = l > 0 ? (float)(rowMax[i] * Ln2 + Math.Log(l)) : float.IsNaN(l) ? float.NaN : float.NegativeInfinity;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long TokenQ(AttentionProblem p, int b, int i) => p.IsVarlen ? p.CuSeqLensQ![b] + (long)i : (long)b * p.SeqLenQ + i;
}
