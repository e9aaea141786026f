using System.Runtime.CompilerServices;
using FlashAttention.Cuda;
using FlashAttention.Cuda.Compiler;
using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;
using FlashAttention.Numerics;

namespace FlashAttention.Lab.Probes;

/// <summary>The outcome of one primitive check: the measured error, the bound it had to meet, and what it proves.</summary>
public sealed record ProbeResult(string Name, string Proves, double Error, double Tolerance, bool Passed);

/// <summary>
/// Runs the unit kernels of primitives.cu against the CPU on fresh random data: the TMA map and its 128-byte
/// swizzle, the K-major and MN-major wgmma descriptors, the accumulator layout and the conversion of P to a
/// register A operand — each in the exact code path the attention kernels use (gemm_qk / gemm_pv). A wrong layout
/// fails here by name instead of as a wrong attention output.
/// </summary>
internal static class PrimitiveProbes
{
    // The GEMM shapes the kernels run: the forward's key blocks (128 at d64/d128, 80 and 64 at d256) and the backward's
    // 64- and 128-query steps.
    private static readonly (int N, int D)[] QkShapes = [(128, 128), (128, 64), (80, 256), (64, 256), (64, 128), (64, 64)];
    // Q as a register fragment (ldmatrix), as the d64 forward takes it.
    private static readonly (int N, int D)[] QkRegisterShapes = [(128, 64), (128, 128)];
    private static readonly (int N, int D)[] PvShapes = [(128, 128), (128, 64), (80, 256), (64, 256), (64, 128), (64, 64)];

    private static string QkName(DataType t, int n, int d, bool qInRegisters = false)
        => $"fa::probe_qk<{KernelNames.ElementTag(t)}, {n}, {d}, {KernelNames.Bool(qInRegisters)}>";
    private static string PvName(DataType t, int n, int d) => $"fa::probe_pv<{KernelNames.ElementTag(t)}, {n}, {d}>";
    private const string SwizzleName = "fa::probe_tma_swizzle";
    private static string TransposeName(DataType t) => $"fa::probe_store_transposed<{KernelNames.ElementTag(t)}>";
    // The FP8 kernel's GEMM shapes: S over 128 keys at every head dim (64-byte swizzle at d64), P·V into every head dim.
    private static readonly int[] Fp8HeadDims = [64, 128, 256];
    private static string Fp8QkName(int d) => $"fa::probe_fp8_qk<128, {d}>";
    private static string Fp8PvName(int d) => $"fa::probe_fp8_pv<128, {d}>";

    private const string Source = "probes/primitives.cu";

    private static KernelSpec ProbeSpec(string name) => KernelCatalog.Spec(Source, name, LabKernelSources.Instance);

    public static IEnumerable<KernelCatalog.Entry> Entries()
    {
        yield return new("probe tma-swizzle", ProbeSpec(SwizzleName), SwizzleName);
        foreach (var t in KernelCatalog.KernelTypes)
        {
            foreach (var (n, d) in QkShapes) yield return new($"probe qk {DataTypes.ShortName(t)} n{n} d{d}", ProbeSpec(QkName(t, n, d)), QkName(t, n, d));
            foreach (var (n, d) in QkRegisterShapes) yield return new($"probe qk-regs {DataTypes.ShortName(t)} n{n} d{d}", ProbeSpec(QkName(t, n, d, true)), QkName(t, n, d, true));
            foreach (var (n, d) in PvShapes) yield return new($"probe pv {DataTypes.ShortName(t)} n{n} d{d}", ProbeSpec(PvName(t, n, d)), PvName(t, n, d));
            yield return new($"probe store-transposed {DataTypes.ShortName(t)}", ProbeSpec(TransposeName(t)), TransposeName(t));
        }
        foreach (int d in Fp8HeadDims)
        {
            yield return new($"probe fp8-qk n128 d{d}", ProbeSpec(Fp8QkName(d)), Fp8QkName(d));
            yield return new($"probe fp8-pv n128 d{d}", ProbeSpec(Fp8PvName(d)), Fp8PvName(d));
        }
    }

    public static List<ProbeResult> RunAll(CudaDevice device, int seed)
    {
        var results = new List<ProbeResult> { TmaSwizzle(device, seed) };
        foreach (var t in KernelCatalog.KernelTypes)
        {
            foreach (var (n, d) in QkShapes) results.Add(Qk(device, t, n, d, seed + n + d));
            foreach (var (n, d) in QkRegisterShapes) results.Add(Qk(device, t, n, d, seed + 5 * n + d, qInRegisters: true));
            foreach (var (n, d) in PvShapes) results.Add(Pv(device, t, n, d, seed + 3 * n + d));
            results.Add(StoreTransposed(device, t, seed + 7));
        }
        foreach (int d in Fp8HeadDims)
        {
            results.Add(Fp8Qk(device, d, seed + 11 * d));
            results.Add(Fp8Pv(device, d, seed + 13 * d));
        }
        return results;
    }

    private static ushort ToBits(DataType t, float x) => t == DataType.BFloat16 ? BFloat16.RoundToBits(x) : BitConverter.HalfToUInt16Bits((Half)x);
    private static float FromBits(DataType t, ushort b) => t == DataType.BFloat16 ? BFloat16.ToSingle(b) : (float)BitConverter.UInt16BitsToHalf(b);

    private static ushort[] RandomBits(DataType t, int count, Random rng, Func<Random, float> draw)
    {
        var bits = new ushort[count];
        for (int i = 0; i < count; i++) bits[i] = ToBits(t, draw(rng));
        return bits;
    }

    private static float Normal(Random r) => (float)(Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble()));

    private static CudaKernel Kernel(CudaDevice device, string name)
        => KernelModuleCache.For(device).GetKernel(ProbeSpec(name), name);

    /// <summary>A device copy of <paramref name="data"/>.</summary>
    private static DeviceBuffer Upload<T>(T[] data, CudaDevice device) where T : unmanaged
    {
        var buffer = new DeviceBuffer((long)data.Length * Unsafe.SizeOf<T>(), device);
        try
        {
            buffer.CopyFrom<T>(data);
            return buffer;
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>An output buffer filled with 0xFF bytes (NaN as float32), so that what a kernel leaves unwritten shows.</summary>
    private static DeviceBuffer Poisoned(long bytes, CudaDevice device)
    {
        var buffer = new DeviceBuffer(bytes, device);
        try
        {
            buffer.Fill(0xFF);
            return buffer;
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    private static T[] Download<T>(DeviceBuffer buffer, int count) where T : unmanaged
    {
        var values = new T[count];
        buffer.CopyTo<T>(values);
        return values;
    }

    /// <summary>
    /// The largest error of a rows × cols result over the largest magnitude of <paramref name="expected"/>; a value that
    /// is not finite (unwritten: NaN) is an infinite error.
    /// </summary>
    private static double RelativeError(float[] got, int rows, int cols, Func<int, int, double> expected)
    {
        double maxErr = 0, maxRef = 0;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
            {
                double e = expected(i, j);
                maxRef = Math.Max(maxRef, Math.Abs(e));
                maxErr = Math.Max(maxErr, double.IsFinite(got[i * cols + j]) ? Math.Abs(got[i * cols + j] - e) : double.PositiveInfinity);
            }
        return maxErr / maxRef;
    }

    /// <summary>A (1, rows, 1, cols) token tensor in device memory, as the attention maps see it.</summary>
    private static TensorLayout Layout(DeviceBuffer buffer, DataType t, int batch, int rows, int heads, int cols)
        => DeviceTensor.Contiguous(buffer.Pointer, t, batch, rows, heads, cols).ToLayout("probe");

    private static ProbeResult TmaSwizzle(CudaDevice device, int seed)
    {
        const int batch = 2, seq = 100, heads = 3, dim = 128, rows = 64, row0 = 40, head = 1, b = 1;
        var rng = new Random(seed);
        var input = RandomBits(DataType.BFloat16, batch * seq * heads * dim, rng, Normal);
        using var src = Upload(input, device);
        using var dst = Poisoned(rows * 64 * 2L, device);
        var map = AttentionTensorMaps.Tokens(Layout(src, DataType.BFloat16, batch, seq, heads, dim), rows, device);
        Kernel(device, SwizzleName).Launch(new LaunchConfig(1, 128, 1024 + rows * 128 + 16),
            new KernelArguments().Add(map).Add(dst.Address).Add(rows).Add(row0).Add(head).Add(b));
        var got = Download<ushort>(dst, rows * 64);
        int wrong = 0;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < 64; c++)
            {
                int s = row0 + r;
                ushort expected = s < seq ? input[((b * seq + s) * heads + head) * dim + c] : (ushort)0;
                // 128-byte swizzle: the 16-byte chunk index of a 128-byte row is XORed with the row index mod 8.
                if (got[r * 64 + ((c / 8) ^ (r % 8)) * 8 + c % 8] != expected) wrong++;
            }
        return new ProbeResult("tma-swizzle bf16 box{64,64} rows 40..103 of 100", "4-D tensor map, 128-byte swizzle, zero fill past the end",
            wrong, 0, wrong == 0);
    }

    private static ProbeResult Qk(CudaDevice device, DataType t, int n, int d, int seed, bool qInRegisters = false)
    {
        var rng = new Random(seed);
        var q = RandomBits(t, 64 * d, rng, Normal);
        var k = RandomBits(t, n * d, rng, Normal);
        using var qb = Upload(q, device);
        using var kb = Upload(k, device);
        using var ob = Poisoned(64L * n * 4, device);
        var args = new KernelArguments()
            .Add(AttentionTensorMaps.Tokens(Layout(qb, t, 1, 64, 1, d), 64, device))
            .Add(AttentionTensorMaps.Tokens(Layout(kb, t, 1, n, 1, d), (uint)n, device))
            .Add(ob.Address);
        int smem = 1024 + 64 * d * 2 + n * d * 2 + 16;
        Kernel(device, QkName(t, n, d, qInRegisters)).Launch(new LaunchConfig(1, 128, smem), args);
        double rel = RelativeError(Download<float>(ob, 64 * n), 64, n, (i, j) =>
        {
            double s = 0;
            for (int c = 0; c < d; c++) s += (double)FromBits(t, q[i * d + c]) * FromBits(t, k[j * d + c]);
            return s;
        });
        string proves = qInRegisters
            ? "ldmatrix.x4 of a swizzled tile → register A fragment, wgmma RS with K-major B"
            : "K-major SW128 descriptors, wgmma SS, accumulator layout";
        return new ProbeResult($"qk{(qInRegisters ? "-regs" : "")} {DataTypes.ShortName(t)} S[64x{n}] = Q[64x{d}]·K[{n}x{d}]ᵀ", proves, rel, 1e-5, rel <= 1e-5);
    }

    private static ProbeResult Pv(CudaDevice device, DataType t, int n, int d, int seed)
    {
        var rng = new Random(seed);
        var p = new float[64 * n];
        for (int i = 0; i < p.Length; i++) p[i] = (float)rng.NextDouble();
        var v = RandomBits(t, n * d, rng, Normal);
        using var pb = Upload(p, device);
        using var vb = Upload(v, device);
        using var ob = Poisoned(64L * d * 4, device);
        var args = new KernelArguments()
            .Add(pb.Address)
            .Add(AttentionTensorMaps.Tokens(Layout(vb, t, 1, n, 1, d), (uint)n, device))
            .Add(ob.Address);
        int smem = 1024 + n * d * 2 + 16;
        Kernel(device, PvName(t, n, d)).Launch(new LaunchConfig(1, 128, smem), args);
        double rel = RelativeError(Download<float>(ob, 64 * d), 64, d, (i, c) =>
        {
            double o = 0;
            for (int j = 0; j < n; j++) o += (double)FromBits(t, ToBits(t, p[i * n + j])) * FromBits(t, v[j * d + c]);
            return o;
        });
        return new ProbeResult($"pv {DataTypes.ShortName(t)} O[64x{d}] = P[64x{n}]·V[{n}x{d}]", "P accumulator → register A fragment (cvt pairs), MN-major SW128 B, wgmma RS",
            rel, 1e-5, rel <= 1e-5);
    }

    private static byte[] RandomE4M3(int count, Random rng, float scale)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = Normal(rng) * scale;
        var codes = new Float8E4M3[count];
        Float8E4M3.ConvertFromSingleSaturating(values, codes);
        return System.Runtime.InteropServices.MemoryMarshal.AsBytes(codes.AsSpan()).ToArray();
    }

    private static float E4M3(byte code) => Float8E4M3.ToSingle(code);

    // FP8 wgmma accumulates in less than float32 (about 1e-4 relative per k32 step); a layout error is off by O(1).
    private const double Fp8Tolerance = 2e-3;

    /// <summary>S = Q·Kᵀ with E4M3 operands through the FP8 kernel's TMA boxes, swizzle and K-major descriptors.</summary>
    private static ProbeResult Fp8Qk(CudaDevice device, int d, int seed)
    {
        const int n = 128;
        var rng = new Random(seed);
        var q = RandomE4M3(64 * d, rng, 8f);
        var k = RandomE4M3(n * d, rng, 8f);
        using var qb = Upload(q, device);
        using var kb = Upload(k, device);
        using var ob = Poisoned(64L * n * 4, device);
        var args = new KernelArguments()
            .Add(AttentionTensorMaps.Tokens(Layout(qb, DataType.Float8E4M3, 1, 64, 1, d), 64, device))
            .Add(AttentionTensorMaps.Tokens(Layout(kb, DataType.Float8E4M3, 1, n, 1, d), n, device))
            .Add(ob.Address);
        Kernel(device, Fp8QkName(d)).Launch(new LaunchConfig(1, 128, 1024 + 64 * d + n * d + 16), args);
        double rel = RelativeError(Download<float>(ob, 64 * n), 64, n, (i, j) =>
        {
            double s = 0;
            for (int c = 0; c < d; c++) s += (double)E4M3(q[i * d + c]) * E4M3(k[j * d + c]);
            return s;
        });
        return new ProbeResult($"fp8-qk S[64x{n}] = Q[64x{d}]·K[{n}x{d}]ᵀ e4m3", $"E4M3 TMA boxes, {(d >= 128 ? 128 : 64)}-byte swizzle, K-major descriptors, wgmma k32 SS",
            rel, Fp8Tolerance, rel <= Fp8Tolerance);
    }

    /// <summary>
    /// O = P·V with P from an f32 accumulator cast to E4M3 A registers without shuffles and V as Vᵀ, keys permuted inside
    /// every 16 (position 4q + b holds key 2q + b%2 + 8(b/2)); the same check with the keys unpermuted would be off by O(1).
    /// </summary>
    private static ProbeResult Fp8Pv(CudaDevice device, int d, int seed)
    {
        const int n = 128;
        var rng = new Random(seed);
        var pCodes = RandomE4M3(64 * n, rng, 16f);
        var p = new float[64 * n];
        for (int i = 0; i < p.Length; i++) p[i] = Math.Abs(E4M3(pCodes[i]));  // exact E4M3 values in [0, 448]: the cast is the identity
        var v = RandomE4M3(n * d, rng, 4f);
        var vt = new byte[d * n];
        for (int key = 0; key < n; key++)
            for (int c = 0; c < d; c++)
                vt[c * n + VtPosition(key)] = v[key * d + c];
        using var pb = Upload(p, device);
        using var vb = Upload(vt, device);
        using var ob = Poisoned(64L * d * 4, device);
        var args = new KernelArguments()
            .Add(pb.Address)
            .Add(AttentionTensorMaps.KeysMajor((nuint)vb.Pointer, n, d, 1, 1, device))
            .Add(ob.Address);
        Kernel(device, Fp8PvName(d)).Launch(new LaunchConfig(1, 128, 1024 + n * d + 16), args);
        double rel = RelativeError(Download<float>(ob, 64 * d), 64, d, (i, c) =>
        {
            double o = 0;
            for (int key = 0; key < n; key++) o += (double)p[i * n + key] * E4M3(v[key * d + c]);
            return o;
        });
        return new ProbeResult($"fp8-pv O[64x{d}] = P[64x{n}]·V[{n}x{d}] e4m3", "P accumulator → E4M3 A registers (no shuffles), permuted Vᵀ, wgmma k32 RS",
            rel, Fp8Tolerance, rel <= Fp8Tolerance);
    }

    /// <summary>Where key <paramref name="key"/> sits in a permuted Vᵀ row (fp8_gemm.cuh's vt_position_of_key).</summary>
    internal static int VtPosition(int key)
    {
        int k = key & 15;
        return (key & ~15) + 4 * ((k & 7) >> 1) + (k & 1) + 2 * (k >> 3);
    }

    /// <summary>
    /// The backward's dS store (store_transposed_sw128: stmatrix.trans into a 128-byte-swizzled slab): element (r, c) of
    /// a 64x64 accumulator fragment must land, rounded to the element type, at slab row c, 16-byte chunk
    /// (r / 8) XOR (c % 8), position r % 8 — the K-major layout the dQ GEMM reads. Compared bit for bit.
    /// </summary>
    private static ProbeResult StoreTransposed(CudaDevice device, DataType t, int seed)
    {
        var rng = new Random(seed);
        var input = new float[64 * 64];
        for (int i = 0; i < input.Length; i++) input[i] = Normal(rng);
        using var ib = Upload(input, device);
        using var ob = Poisoned(64L * 64 * 2, device);
        Kernel(device, TransposeName(t)).Launch(new LaunchConfig(1, 128, 1024 + 64 * 128), new KernelArguments().Add(ib.Address).Add(ob.Address));
        var got = Download<ushort>(ob, 64 * 64);
        int wrong = 0;
        for (int r = 0; r < 64; r++)
            for (int c = 0; c < 64; c++)
            {
                int offset = c * 128 + (((r >> 3) ^ (c & 7)) << 4) + (r & 7) * 2;
                if (got[offset / 2] != ToBits(t, input[r * 64 + c])) wrong++;
            }
        return new ProbeResult($"store-transposed {DataTypes.ShortName(t)} dS[64x64] → swizzled slab", "stmatrix.trans x4 addressing, 128-byte swizzle of the transposed tile, pack rounding",
            wrong, 0, wrong == 0);
    }
}
