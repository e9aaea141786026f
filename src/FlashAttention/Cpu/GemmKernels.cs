using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace FlashAttention.Cpu;

/// <summary>
/// Small dense float32 GEMMs for the engine's tiles: <c>C[M×N] (+)= A[M×K] · B[K×N]</c>.
/// A is read one scalar at a time (broadcast), so it may have any row and column strides — a row-major tile,
/// a transposed one, or rows straight from the caller's strided tensor. B and C are row-major with their own
/// row strides, and N must be a multiple of the vector width (callers pad). The work is cut into register
/// blocks of 6 rows × up to 4 vectors (24 accumulators; 64 columns with AVX-512), computed by the generated
/// kernels in GemmKernels.Generated.cs: per reduction step one row of B is loaded (4 vectors) and 6 scalars of
/// A are broadcast into 24 FMAs, so the FMA pipes, not the loads, are the limit.
/// </summary>
internal static unsafe partial class GemmKernels
{
    /// <summary>
    /// 4-vector-wide blocks need 24 accumulators + 5 temporaries: only where the ISA has 32 vector registers
    /// (AVX-512, including its 256/128-bit forms, and Arm64). With 16 (AVX2) they would spill, so use 2-wide.
    /// </summary>
    private static readonly int MaxVectorsPerBlock = Avx512F.IsSupported || AdvSimd.Arm64.IsSupported ? 4 : 2;

    /// <summary>
    /// C[m×n] = A·B (<paramref name="accumulate"/> false) or C = diag(rowScale)·C + A·B (true; rowScale may be null).
    /// A(i, k) = a[i·aRow + k·aK]; B(k, j) = b[k·ldb + j]; C(i, j) = c[i·ldc + j]. n % TV.Count must be 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run<TV>(int m, int n, int k, float* a, nint aRow, nint aK, float* b, nint ldb, float* c, nint ldc,
        bool accumulate, float* rowScale = null) where TV : unmanaged, ISimd<TV>
    {
        if (m <= 0 || n <= 0) return;
        int w = TV.Count;
        int vectors = n / w;
        int maxNv = MaxVectorsPerBlock;
        for (int v0 = 0; v0 < vectors;)
        {
            int left = vectors - v0;
            float* bj = b + (nint)v0 * w, cj = c + (nint)v0 * w;
            if (left >= 4 && maxNv >= 4)
            {
                for (int i = 0; i < m; i += 6)
                    K6x4<TV>(Math.Min(6, m - i), k, a + i * aRow, aRow, aK, bj, ldb, cj + i * ldc, ldc, accumulate, rowScale == null ? null : rowScale + i);
                v0 += 4;
            }
            else if (left >= 2)
            {
                for (int i = 0; i < m; i += 6)
                    K6x2<TV>(Math.Min(6, m - i), k, a + i * aRow, aRow, aK, bj, ldb, cj + i * ldc, ldc, accumulate, rowScale == null ? null : rowScale + i);
                v0 += 2;
            }
            else
            {
                for (int i = 0; i < m; i += 6)
                    K6x1<TV>(Math.Min(6, m - i), k, a + i * aRow, aRow, aK, bj, ldb, cj + i * ldc, ldc, accumulate, rowScale == null ? null : rowScale + i);
                v0 += 1;
            }
        }
    }

    /// <summary>Rounds <paramref name="n"/> up to a multiple of <paramref name="multiple"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int RoundUp(int n, int multiple) => (n + multiple - 1) / multiple * multiple;
}
