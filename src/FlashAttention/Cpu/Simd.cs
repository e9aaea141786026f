using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FlashAttention.Cpu;

/// <summary>
/// The handful of float32 SIMD operations the CPU engine is written in, abstracted over the vector width so one
/// generic body serves AVX-512 (<see cref="Simd512"/>), AVX2/NEON-class hardware (<see cref="Simd256"/>,
/// <see cref="Simd128"/>) and, through .NET's own software fallback, anything else. The implementations are
/// single-field structs around <see cref="Vector512{T}"/> etc.; the JIT specialises every generic method per struct
/// and keeps the wrappers in registers, so the code is what hand-written <c>Vector512</c> code would be.
/// </summary>
internal unsafe interface ISimd<TSelf> where TSelf : unmanaged, ISimd<TSelf>
{
    /// <summary>Lanes per vector.</summary>
    static abstract int Count { get; }
    static abstract TSelf Zero { get; }
    static abstract TSelf Load(float* p);
    static abstract void Store(float* p, TSelf v);
    static abstract TSelf Broadcast(float x);
    /// <summary>a·b + c (fused where the hardware has FMA).</summary>
    static abstract TSelf Fma(TSelf a, TSelf b, TSelf c);
    static abstract TSelf Add(TSelf a, TSelf b);
    static abstract TSelf Sub(TSelf a, TSelf b);
    static abstract TSelf Mul(TSelf a, TSelf b);
    static abstract TSelf Div(TSelf a, TSelf b);
    /// <summary>The hardware max (operand order decides NaN handling; no −0/+0 ordering).</summary>
    static abstract TSelf Max(TSelf a, TSelf b);
    static abstract TSelf Min(TSelf a, TSelf b);
    static abstract TSelf Abs(TSelf a);
    /// <summary>All-ones lanes where a &lt; b.</summary>
    static abstract TSelf LessThan(TSelf a, TSelf b);
    /// <summary>All-ones lanes where a == b.</summary>
    static abstract TSelf Equal(TSelf a, TSelf b);
    /// <summary>mask ? a : b, per lane.</summary>
    static abstract TSelf Select(TSelf mask, TSelf a, TSelf b);
    /// <summary>Copies the sign of <paramref name="sign"/> onto |<paramref name="magnitude"/>|.</summary>
    static abstract TSelf CopySign(TSelf magnitude, TSelf sign);
    /// <summary>
    /// For lanes holding y = 1.5·2²³ + n with n an integer in [−126, 127] (the "magic" rounding of n), returns 2ⁿ,
    /// built directly as exponent bits: ((bits(y) + 127) &lt;&lt; 23) keeps only n + 127 in the exponent field.
    /// </summary>
    static abstract TSelf PowerOfTwoFromMagic(TSelf y);
    static abstract float Sum(TSelf v);
    /// <summary>True when every lane of a equals the same lane of b.</summary>
    static abstract bool EqualsAll(TSelf a, TSelf b);
    /// <summary>Lane l keeps v when lo[l] ≤ j ≤ hi[l], else becomes <paramref name="fill"/>.</summary>
    static abstract TSelf KeepWhereInRange(TSelf v, int* lo, int* hi, int j, float fill);
    /// <summary>Lane l keeps v when lo ≤ start + l ≤ hi, else becomes <paramref name="fill"/>.</summary>
    static abstract TSelf KeepWhereIndexInRange(TSelf v, int start, int lo, int hi, float fill);
}

/// <summary>Vectorised elementary functions, written once over <see cref="ISimd{TSelf}"/>.</summary>
internal static class SimdMath
{
    private const float Magic = 12582912f; // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits

    /// <summary>
    /// 2^x with relative error about 1e-7 (degree-7 Taylor polynomial of 2^f on |f| ≤ ½, truncation below 1e-8,
    /// the rest is float rounding). x ≤ −126 (including −∞) gives 0 (no subnormals); x is clamped at 127 above.
    /// NaN stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exp2<TV>(TV x) where TV : unmanaged, ISimd<TV>
    {
        TV lowest = TV.Broadcast(-126f);
        TV underflow = TV.LessThan(x, lowest);
        TV xc = TV.Min(TV.Max(x, lowest), TV.Broadcast(127f)); // vmaxps/vminps return the 2nd operand on NaN
        xc = TV.Select(TV.Equal(x, x), xc, x);                 // so put NaN back explicitly
        TV y = TV.Add(xc, TV.Broadcast(Magic));
        TV n = TV.Sub(y, TV.Broadcast(Magic));
        TV f = TV.Sub(xc, n); // |f| ≤ ½
        TV p = TV.Broadcast(1.525273380405984e-05f);
        p = TV.Fma(p, f, TV.Broadcast(1.5403530393381606e-04f));
        p = TV.Fma(p, f, TV.Broadcast(1.3333558146428443e-03f));
        p = TV.Fma(p, f, TV.Broadcast(9.618129107628477e-03f));
        p = TV.Fma(p, f, TV.Broadcast(5.550410866482158e-02f));
        p = TV.Fma(p, f, TV.Broadcast(2.402265069591007e-01f));
        p = TV.Fma(p, f, TV.Broadcast(6.931471805599453e-01f));
        p = TV.Fma(p, f, TV.Broadcast(1f));
        TV r = TV.Mul(p, TV.PowerOfTwoFromMagic(y));
        return TV.Select(underflow, TV.Zero, r);
    }

    /// <summary>
    /// tanh(x) to a few ulp: the odd/even rational approximation used by Eigen (13th-degree numerator,
    /// 6th-degree denominator) on x clamped to ±7.9053 (where tanh rounds to ±1 in float32), and x itself for |x| &lt; 4e-4.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Tanh<TV>(TV x) where TV : unmanaged, ISimd<TV>
    {
        TV clamp = TV.Broadcast(7.90531110763549805f);
        TV xc = TV.Min(TV.Max(x, TV.Sub(TV.Zero, clamp)), clamp);
        TV tiny = TV.LessThan(TV.Abs(x), TV.Broadcast(0.0004f));
        TV x2 = TV.Mul(xc, xc);
        TV p = TV.Broadcast(-2.76076847742355e-16f);
        p = TV.Fma(x2, p, TV.Broadcast(2.00018790482477e-13f));
        p = TV.Fma(x2, p, TV.Broadcast(-8.60467152213735e-11f));
        p = TV.Fma(x2, p, TV.Broadcast(5.12229709037114e-08f));
        p = TV.Fma(x2, p, TV.Broadcast(1.48572235717979e-05f));
        p = TV.Fma(x2, p, TV.Broadcast(6.37261928875436e-04f));
        p = TV.Fma(x2, p, TV.Broadcast(4.89352455891786e-03f));
        p = TV.Mul(xc, p);
        TV q = TV.Broadcast(1.19825839466702e-06f);
        q = TV.Fma(x2, q, TV.Broadcast(1.18534705686654e-04f));
        q = TV.Fma(x2, q, TV.Broadcast(2.26843463243900e-03f));
        q = TV.Fma(x2, q, TV.Broadcast(4.89352518554385e-03f));
        return TV.Select(tiny, x, TV.Div(p, q));
    }

    /// <summary>Replaces −∞ lanes by 0 (the "safe max" of a row that has seen no key yet).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV NegativeInfinityToZero<TV>(TV m) where TV : unmanaged, ISimd<TV>
        => TV.Select(TV.Equal(m, TV.Broadcast(float.NegativeInfinity)), TV.Zero, m);
}

internal unsafe struct Simd512 : ISimd<Simd512>
{
    public Vector512<float> V;
    private Simd512(Vector512<float> v) => V = v;

    public static int Count => 16;
    public static Simd512 Zero { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => new(Vector512<float>.Zero); }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Load(float* p) => new(Vector512.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Simd512 v) => v.V.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Broadcast(float x) => new(Vector512.Create(x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Fma(Simd512 a, Simd512 b, Simd512 c) => new(Vector512.FusedMultiplyAdd(a.V, b.V, c.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Add(Simd512 a, Simd512 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Sub(Simd512 a, Simd512 b) => new(a.V - b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Mul(Simd512 a, Simd512 b) => new(a.V * b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Div(Simd512 a, Simd512 b) => new(a.V / b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Max(Simd512 a, Simd512 b) => new(Vector512.MaxNative(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Min(Simd512 a, Simd512 b) => new(Vector512.MinNative(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Abs(Simd512 a) => new(Vector512.Abs(a.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 LessThan(Simd512 a, Simd512 b) => new(Vector512.LessThan(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Equal(Simd512 a, Simd512 b) => new(Vector512.Equals(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Select(Simd512 m, Simd512 a, Simd512 b) => new(Vector512.ConditionalSelect(m.V, a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 CopySign(Simd512 m, Simd512 s) => new(Vector512.CopySign(m.V, s.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 PowerOfTwoFromMagic(Simd512 y) => new(Vector512.ShiftLeft(y.V.AsInt32() + Vector512.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Simd512 v) => Vector512.Sum(v.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool EqualsAll(Simd512 a, Simd512 b) => Vector512.EqualsAll(a.V, b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 KeepWhereInRange(Simd512 v, int* lo, int* hi, int j, float fill)
    {
        var jj = Vector512.Create(j);
        var keep = Vector512.LessThanOrEqual(Vector512.Load(lo), jj) & Vector512.LessThanOrEqual(jj, Vector512.Load(hi));
        return new(Vector512.ConditionalSelect(keep.AsSingle(), v.V, Vector512.Create(fill)));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 KeepWhereIndexInRange(Simd512 v, int start, int lo, int hi, float fill)
    {
        var idx = Vector512.Create(start) + Vector512<int>.Indices;
        var keep = Vector512.GreaterThanOrEqual(idx, Vector512.Create(lo)) & Vector512.LessThanOrEqual(idx, Vector512.Create(hi));
        return new(Vector512.ConditionalSelect(keep.AsSingle(), v.V, Vector512.Create(fill)));
    }
}

internal unsafe struct Simd256 : ISimd<Simd256>
{
    public Vector256<float> V;
    private Simd256(Vector256<float> v) => V = v;

    public static int Count => 8;
    public static Simd256 Zero { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => new(Vector256<float>.Zero); }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Load(float* p) => new(Vector256.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Simd256 v) => v.V.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Broadcast(float x) => new(Vector256.Create(x));
    // MultiplyAddEstimate: fused where FMA exists, multiply-then-add elsewhere (never the slow software FMA).
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Fma(Simd256 a, Simd256 b, Simd256 c) => new(Vector256.MultiplyAddEstimate(a.V, b.V, c.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Add(Simd256 a, Simd256 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Sub(Simd256 a, Simd256 b) => new(a.V - b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Mul(Simd256 a, Simd256 b) => new(a.V * b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Div(Simd256 a, Simd256 b) => new(a.V / b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Max(Simd256 a, Simd256 b) => new(Vector256.MaxNative(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Min(Simd256 a, Simd256 b) => new(Vector256.MinNative(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Abs(Simd256 a) => new(Vector256.Abs(a.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 LessThan(Simd256 a, Simd256 b) => new(Vector256.LessThan(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Equal(Simd256 a, Simd256 b) => new(Vector256.Equals(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Select(Simd256 m, Simd256 a, Simd256 b) => new(Vector256.ConditionalSelect(m.V, a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 CopySign(Simd256 m, Simd256 s) => new(Vector256.CopySign(m.V, s.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 PowerOfTwoFromMagic(Simd256 y) => new(Vector256.ShiftLeft(y.V.AsInt32() + Vector256.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Simd256 v) => Vector256.Sum(v.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool EqualsAll(Simd256 a, Simd256 b) => Vector256.EqualsAll(a.V, b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 KeepWhereInRange(Simd256 v, int* lo, int* hi, int j, float fill)
    {
        var jj = Vector256.Create(j);
        var keep = Vector256.LessThanOrEqual(Vector256.Load(lo), jj) & Vector256.LessThanOrEqual(jj, Vector256.Load(hi));
        return new(Vector256.ConditionalSelect(keep.AsSingle(), v.V, Vector256.Create(fill)));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 KeepWhereIndexInRange(Simd256 v, int start, int lo, int hi, float fill)
    {
        var idx = Vector256.Create(start) + Vector256<int>.Indices;
        var keep = Vector256.GreaterThanOrEqual(idx, Vector256.Create(lo)) & Vector256.LessThanOrEqual(idx, Vector256.Create(hi));
        return new(Vector256.ConditionalSelect(keep.AsSingle(), v.V, Vector256.Create(fill)));
    }
}

internal unsafe struct Simd128 : ISimd<Simd128>
{
    public Vector128<float> V;
    private Simd128(Vector128<float> v) => V = v;

    public static int Count => 4;
    public static Simd128 Zero { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => new(Vector128<float>.Zero); }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Load(float* p) => new(Vector128.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Simd128 v) => v.V.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Broadcast(float x) => new(Vector128.Create(x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Fma(Simd128 a, Simd128 b, Simd128 c) => new(Vector128.MultiplyAddEstimate(a.V, b.V, c.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Add(Simd128 a, Simd128 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Sub(Simd128 a, Simd128 b) => new(a.V - b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Mul(Simd128 a, Simd128 b) => new(a.V * b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Div(Simd128 a, Simd128 b) => new(a.V / b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Max(Simd128 a, Simd128 b) => new(Vector128.MaxNative(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Min(Simd128 a, Simd128 b) => new(Vector128.MinNative(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Abs(Simd128 a) => new(Vector128.Abs(a.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 LessThan(Simd128 a, Simd128 b) => new(Vector128.LessThan(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Equal(Simd128 a, Simd128 b) => new(Vector128.Equals(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Select(Simd128 m, Simd128 a, Simd128 b) => new(Vector128.ConditionalSelect(m.V, a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 CopySign(Simd128 m, Simd128 s) => new(Vector128.CopySign(m.V, s.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 PowerOfTwoFromMagic(Simd128 y) => new(Vector128.ShiftLeft(y.V.AsInt32() + Vector128.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Simd128 v) => Vector128.Sum(v.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool EqualsAll(Simd128 a, Simd128 b) => Vector128.EqualsAll(a.V, b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 KeepWhereInRange(Simd128 v, int* lo, int* hi, int j, float fill)
    {
        var jj = Vector128.Create(j);
        var keep = Vector128.LessThanOrEqual(Vector128.Load(lo), jj) & Vector128.LessThanOrEqual(jj, Vector128.Load(hi));
        return new(Vector128.ConditionalSelect(keep.AsSingle(), v.V, Vector128.Create(fill)));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 KeepWhereIndexInRange(Simd128 v, int start, int lo, int hi, float fill)
    {
        var idx = Vector128.Create(start) + Vector128<int>.Indices;
        var keep = Vector128.GreaterThanOrEqual(idx, Vector128.Create(lo)) & Vector128.LessThanOrEqual(idx, Vector128.Create(hi));
        return new(Vector128.ConditionalSelect(keep.AsSingle(), v.V, Vector128.Create(fill)));
    }
}
