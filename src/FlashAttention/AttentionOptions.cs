namespace FlashAttention;

/// <summary>
/// How attention is computed. The conventions are FlashAttention's, so a caller can switch without surprises:
/// <list type="bullet">
/// <item>scores are <c>s = scale · q·k</c> with <see cref="SoftmaxScale"/> defaulting to <c>1/sqrt(headDim)</c>;</item>
/// <item>with <see cref="Softcap"/> &gt; 0 the score becomes <c>cap · tanh(s / cap)</c>, before the mask;</item>
/// <item>query row <c>i</c> of a sequence with <c>Sq</c> queries and <c>Sk</c> keys sits at key position
///   <c>i + Sk − Sq</c> (the bottom-right alignment); the causal mask lets it see keys <c>j ≤ i + Sk − Sq</c>,
///   and a sliding window <c>(left, right)</c> lets it see <c>i + Sk − Sq − left ≤ j ≤ i + Sk − Sq + right</c>,
///   where −1 means unbounded on that side;</item>
/// <item>a row that sees no key has output 0 and log-sum-exp −∞.</item>
/// </list>
/// </summary>
public sealed record AttentionOptions
{
    /// <summary>The options every call gets when it passes none: full attention, default scale.</summary>
    public static AttentionOptions Default { get; } = new();

    /// <summary>Multiplier of <c>q·k</c>; null means <c>1/sqrt(headDim)</c>. Must be finite and positive.</summary>
    public float? SoftmaxScale { get; init; }

    /// <summary>Causal mask, aligned to the bottom-right corner when the query and key lengths differ.</summary>
    public bool Causal { get; init; }

    /// <summary>Keys visible to the left of a query's diagonal position; −1 = unbounded.</summary>
    public int WindowLeft { get; init; } = -1;

    /// <summary>Keys visible to the right of a query's diagonal position; −1 = unbounded (0 with <see cref="Causal"/>).</summary>
    public int WindowRight { get; init; } = -1;

    /// <summary>Softcap <c>cap</c> in <c>cap·tanh(s/cap)</c>; 0 turns it off. Must be finite and ≥ 0.</summary>
    public float Softcap { get; init; }

    /// <summary>
    /// The precision of the matrix products. <see cref="AttentionPrecision.Fp8"/> (GPU forward only): Q, K and V are
    /// quantised to E4M3 on the GPU, per block of tokens, and the FP8 kernel computes bf16/fp16 O and the LSE.
    /// </summary>
    public AttentionPrecision Precision { get; init; }

    /// <summary>
    /// FP8 only: rotate Q and K by the same Hadamard × random-sign matrix before quantising them (FlashAttention-3's
    /// incoherent processing; <c>(QM)(KM)ᵀ = QKᵀ</c>, so only the rounding changes), default on. Off gives the plain
    /// block-quantised path.
    /// </summary>
    public bool IncoherentProcessing { get; init; } = true;

    /// <summary>FP8 with <see cref="IncoherentProcessing"/>: the seed of the random signs (<see cref="Numerics.Hadamard.RandomSigns"/>).</summary>
    public int HadamardSeed { get; init; }

    /// <summary>
    /// Backward only: make the GPU's gradients bitwise reproducible run to run (ordered accumulation) at some cost in
    /// speed. The CPU engine needs no flag: every sum it forms has a fixed order, so its outputs and gradients are the
    /// same bits on every run, in every thread and for any number of cores; they may differ between machines whose
    /// vector width differs (AVX-512 against AVX2 or 128-bit), whose tile kernels group some sums by the width.
    /// </summary>
    public bool Deterministic { get; init; }
}

/// <summary>The precision attention's matrix products run in.</summary>
public enum AttentionPrecision
{
    /// <summary>The inputs' own type (bf16/fp16 operands with float32 accumulation on the GPU; float32 on the CPU).</summary>
    Default = 0,
    /// <summary>E4M3 operands, quantised on the GPU per block of tokens (GPU forward only; see <see cref="AttentionOptions.IncoherentProcessing"/>).</summary>
    Fp8 = 1,
}
