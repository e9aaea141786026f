using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;

namespace FlashAttention.Cuda;

/// <summary>
/// Exact softmax attention on NVIDIA Hopper GPUs (H100/H200, compute capability 9.0) with FlashAttention-3 kernels,
/// compiled on first use by NVRTC and cached on disk (see <c>flashattn warmup</c>). Tensors are device memory
/// described by <see cref="DeviceTensor"/> views in FlashAttention's layout (batch, seqlen, heads, head_dim), so memory
/// owned by TorchSharp, ONNX Runtime or raw CUDA code passes without copies; <see cref="CudaTensor{T}"/> owns memory
/// for callers who have none. Calls are asynchronous on the given stream (the default stream when null).
/// Arguments go through the same validation as the CPU API (<see cref="Attention"/>) plus what the kernels need:
/// BFloat16 or Float16 elements, head dim 64, 128 or 256, 16-byte aligned tensors whose
/// strides are multiples of 8 elements (the TMA copy engine moves 16-byte units).
/// </summary>
public static class CudaAttention
{
    /// <summary>Forward pass; see <see cref="Attention.Forward{T}(System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.TensorSpan{T}, System.Numerics.Tensors.TensorSpan{float}, AttentionOptions?)"/> for the conventions.</summary>
    /// <param name="query">(batch, seqlen_q, heads_q, head_dim).</param>
    /// <param name="key">(batch, seqlen_k, heads_k, head_dim).</param>
    /// <param name="value">Same shape as <paramref name="key"/>.</param>
    /// <param name="output">(batch, seqlen_q, heads_q, head_dim), written in full.</param>
    /// <param name="logSumExp">(batch, heads_q, seqlen_q) float32, or null when not needed (the backward pass needs it).</param>
    /// <param name="options">Scale, mask, softcap.</param>
    /// <param name="stream">Stream to run on; null for the default stream.</param>
    /// <param name="device">GPU; null for device 0.</param>
    public static void Forward(DeviceTensor query, DeviceTensor key, DeviceTensor value, DeviceTensor output,
        DeviceTensor? logSumExp = null, AttentionOptions? options = null, CudaStream? stream = null, CudaDevice? device = null)
    {
        var (q, k, v, o) = (query.ToLayout("query"), key.ToLayout("key"), value.ToLayout("value"), output.ToLayout("output"));
        TensorLayout? lse = logSumExp?.ToLayout("logSumExp");
        var problem = AttentionValidation.Forward(q, k, v, o, lse, options);
        GpuRequirements.Check(problem, ForwardVariants.HeadDims, "forward", q, k, v, o);
        bool fp8 = options is { Precision: AttentionPrecision.Fp8 };
        if (fp8)
        {
            AttentionValidation.ExpectFp8Options(problem);
            GpuRequirements.CheckFp8(problem, q, k, v, o);
        }
        var gpu = stream?.Device ?? device ?? CudaDevice.Get(0);
        if (fp8)
        {
            gpu.EnsureSupported();
            Fp8ForwardLauncher.LaunchFromHalf(problem, q, k, v, o, lse, options!.IncoherentProcessing, options.HadamardSeed, stream, gpu);
            return;
        }
        FlashForwardLauncher.Launch(problem, q, k, v, o, lse, stream, gpu);
    }

    /// <summary>
    /// Forward pass over a variable-length batch, as FlashAttention's <c>flash_attn_varlen_func</c>: Q, K, V and O packed
    /// as (total_tokens, heads, head_dim), sequence <c>b</c> owning query rows <c>cuSeqLensQ[b] … cuSeqLensQ[b+1]−1</c> and
    /// key rows <c>cuSeqLensK[b] … cuSeqLensK[b+1]−1</c> (the CPU's <see cref="Attention.ForwardVarlen{T}"/> with the offsets
    /// on the device). Masks apply per sequence (causal: bottom-right, the last query at the last key), GQA/MQA as in
    /// <see cref="Forward"/>. <paramref name="seqUsedK"/> limits sequence <c>b</c> to its first <c>seqUsedK[b]</c> keys.
    /// </summary>
    /// <remarks>
    /// The offsets live on the device, where the host cannot read them without waiting for the stream; everything else is
    /// checked before anything runs. They must start at 0, not decrease, end within the packed tensors, and give no
    /// sequence more queries than <paramref name="maxSeqLenQ"/> or more (used) keys than <paramref name="maxSeqLenK"/>.
    /// With <paramref name="checkDeviceInputs"/> a small kernel checks exactly that first and the call waits for it: a
    /// violation throws <see cref="AttentionArgumentException"/> naming the entry, with nothing written. Without it, offsets
    /// that break the contract make that sequence's output unspecified, and no read or write leaves the tensors. Rows of
    /// <paramref name="output"/> outside every sequence are not written.
    /// </remarks>
    /// <param name="query">(total_q, heads_q, head_dim).</param>
    /// <param name="key">(total_k, heads_k, head_dim).</param>
    /// <param name="value">Same shape as <paramref name="key"/>.</param>
    /// <param name="cuSeqLensQ">(batch + 1) int32, contiguous: the sequences' query offsets.</param>
    /// <param name="cuSeqLensK">(batch + 1) int32, contiguous: their key offsets.</param>
    /// <param name="maxSeqLenQ">The longest query sequence (sizes the launch; FlashAttention's <c>max_seqlen_q</c>).</param>
    /// <param name="maxSeqLenK">The longest key sequence (its used keys with <paramref name="seqUsedK"/>).</param>
    /// <param name="output">(total_q, heads_q, head_dim).</param>
    /// <param name="logSumExp">(heads_q, total_q) float32, or null.</param>
    /// <param name="options">Scale, mask, softcap.</param>
    /// <param name="seqUsedK">(batch) int32, contiguous: keys each sequence attends to (a prefix of its keys); null for all.</param>
    /// <param name="checkDeviceInputs">Check the device-resident offsets first and wait for the result.</param>
    /// <param name="stream">Stream to run on; null for the default stream.</param>
    /// <param name="device">GPU; null for device 0.</param>
    public static void ForwardVarlen(DeviceTensor query, DeviceTensor key, DeviceTensor value, DeviceTensor cuSeqLensQ,
        DeviceTensor cuSeqLensK, int maxSeqLenQ, int maxSeqLenK, DeviceTensor output, DeviceTensor? logSumExp = null,
        AttentionOptions? options = null, DeviceTensor? seqUsedK = null, bool checkDeviceInputs = false,
        CudaStream? stream = null, CudaDevice? device = null)
    {
        var (q, k, v, o) = (query.ToLayout("query"), key.ToLayout("key"), value.ToLayout("value"), output.ToLayout("output"));
        var (cuQ, cuK) = (cuSeqLensQ.ToLayout("cuSeqLensQ"), cuSeqLensK.ToLayout("cuSeqLensK"));
        TensorLayout? lse = logSumExp?.ToLayout("logSumExp"), used = seqUsedK?.ToLayout("seqUsedK");
        AttentionValidation.ExpectDefaultPrecision(options, "the variable-length forward");
        var problem = AttentionValidation.ForwardVarlenOnDevice(q, k, v, o, lse, cuQ, cuK, maxSeqLenQ, maxSeqLenK, used, options);
        GpuRequirements.Check(problem.Attention, ForwardVariants.HeadDims, "forward", q, k, v, o);
        GpuRequirements.CheckVarlen(problem);
        var gpu = stream?.Device ?? device ?? CudaDevice.Get(0);
        FlashVarlenLauncher.Forward(problem, q, k, v, o, lse, checkDeviceInputs, stream, gpu);
    }

    /// <summary>
    /// Backward pass over a variable-length batch (the layout and contract of <see cref="ForwardVarlen"/>): gradients of the
    /// packed query, key and value. Rows of a gradient outside every sequence, and key rows past <c>seqUsedK[b]</c>, are not
    /// written. <see cref="AttentionOptions.Deterministic"/> gives bitwise-reproducible gradients, as for dense batches.
    /// </summary>
    /// <param name="logSumExp">(heads_q, total_q) float32, as <see cref="ForwardVarlen"/> wrote it.</param>
    public static void BackwardVarlen(DeviceTensor query, DeviceTensor key, DeviceTensor value, DeviceTensor output,
        DeviceTensor outputGradient, DeviceTensor logSumExp, DeviceTensor cuSeqLensQ, DeviceTensor cuSeqLensK, int maxSeqLenQ,
        int maxSeqLenK, DeviceTensor queryGradient, DeviceTensor keyGradient, DeviceTensor valueGradient,
        AttentionOptions? options = null, DeviceTensor? seqUsedK = null, bool checkDeviceInputs = false,
        CudaStream? stream = null, CudaDevice? device = null)
    {
        var (q, k, v, o) = (query.ToLayout("query"), key.ToLayout("key"), value.ToLayout("value"), output.ToLayout("output"));
        var (dO, lse) = (outputGradient.ToLayout("outputGradient"), logSumExp.ToLayout("logSumExp"));
        var (dq, dk, dv) = (queryGradient.ToLayout("queryGradient"), keyGradient.ToLayout("keyGradient"), valueGradient.ToLayout("valueGradient"));
        var (cuQ, cuK) = (cuSeqLensQ.ToLayout("cuSeqLensQ"), cuSeqLensK.ToLayout("cuSeqLensK"));
        TensorLayout? used = seqUsedK?.ToLayout("seqUsedK");
        AttentionValidation.ExpectDefaultPrecision(options, "the backward");
        var problem = AttentionValidation.BackwardVarlenOnDevice(q, k, v, o, dO, lse, dq, dk, dv, cuQ, cuK, maxSeqLenQ, maxSeqLenK, used, options);
        GpuRequirements.Check(problem.Attention, BackwardVariants.HeadDims, "backward", q, k, v, o, dO, dq, dk, dv);
        GpuRequirements.CheckVarlen(problem);
        var gpu = stream?.Device ?? device ?? CudaDevice.Get(0);
        FlashVarlenLauncher.Backward(problem, q, k, v, o, dO, lse, dq, dk, dv, checkDeviceInputs, stream, gpu);
    }

    /// <summary>Tokens per K/V descale block the FP8 kernel takes a multiple of (a multiple of its key block at every head dim).</summary>
    public const int Fp8KeyBlock = Fp8Variants.KeyBlock;

    /// <summary>Tokens per Q descale block the FP8 kernel takes a multiple of (one consumer warpgroup's rows).</summary>
    public const int Fp8QueryBlock = AttentionValidation.Fp8QueryBlockMultiple;

    /// <summary>
    /// FP8 forward on pre-quantised inputs (callers that keep FP8 activations or an FP8 KV cache): E4M3 Q, K, V with
    /// float32 descales per (batch, head, block of tokens), bf16 or fp16 O and the float32 LSE. Q's blocks are a multiple of
    /// <see cref="Fp8QueryBlock"/> tokens, K's and V's (the same size) a multiple of <see cref="Fp8KeyBlock"/>, or
    /// either covers the whole sequence (a per-head descale). Masks and GQA as in <see cref="Forward"/>; no softcap. V is
    /// transposed into the stream's workspace first (the FP8 tensor cores take no transposed operand).
    /// </summary>
    public static void ForwardFp8(Fp8Tensor query, Fp8Tensor key, Fp8Tensor value, DeviceTensor output,
        DeviceTensor? logSumExp = null, AttentionOptions? options = null, CudaStream? stream = null, CudaDevice? device = null)
    {
        var (q, k, v, o) = (query.Codes.ToLayout("query"), key.Codes.ToLayout("key"), value.Codes.ToLayout("value"), output.ToLayout("output"));
        var (qd, kd, vd) = (query.Descales.ToLayout("query.Descales"), key.Descales.ToLayout("key.Descales"), value.Descales.ToLayout("value.Descales"));
        TensorLayout? lse = logSumExp?.ToLayout("logSumExp");
        var problem = AttentionValidation.ForwardFp8(q, k, v, o, lse, qd, kd, vd, query.BlockSize, key.BlockSize, value.BlockSize, Fp8KeyBlock, options);
        GpuRequirements.CheckFp8(problem, q, k, v, o, qd, kd, vd);
        var gpu = stream?.Device ?? device ?? CudaDevice.Get(0);
        gpu.EnsureSupported();
        Fp8ForwardLauncher.LaunchQuantized(problem, q, k, v, qd, kd, vd, query.BlockSize, key.BlockSize, o, lse, stream, gpu);
    }

    /// <summary>
    /// Attention against a KV cache, as FlashAttention's <c>flash_attn_with_kvcache</c>: the query (seqlen_q ≥ 1 new tokens
    /// per sequence) attends to each sequence's cached keys and values, after <paramref name="newKeys"/> and
    /// <paramref name="newValues"/> (when given) have been written into the cache in place at positions
    /// <c>cacheSeqLens[b]</c> … <c>cacheSeqLens[b] + seqlen_new − 1</c>. Sequence <c>b</c> then has
    /// <c>cacheSeqLens[b] + seqlen_new</c> keys; its query rows sit at its last seqlen_q positions (the causal mask's
    /// bottom-right alignment). <paramref name="cacheSeqLens"/> is not updated: the caller advances it.
    /// The cache is contiguous, (batch, capacity, heads_k, head_dim), or paged: a pool (num_pages, page_size, heads_k,
    /// head_dim) with pages of any multiple of 16 tokens and <paramref name="pageTable"/> (batch, max_pages) int32 naming
    /// the pool page that holds tokens <c>i·page_size</c> … of sequence <c>b</c> at <c>pageTable[b, i]</c>.
    /// Decode-shaped calls (few query rows, long caches) split each key range across the SMs and merge the parts.
    /// </summary>
    /// <remarks>
    /// The lengths and the page table live on the device, where the host cannot read them without waiting for the
    /// stream. Everything else is checked before anything runs. They must satisfy <c>0 ≤ cacheSeqLens[b] ≤ maxCacheSeqLen</c>
    /// and every page-table entry a sequence's keys occupy (after the append) must lie in <c>0 … num_pages − 1</c>. With
    /// <paramref name="checkDeviceInputs"/> a small kernel checks exactly that first and the call waits for it: a violation
    /// throws <see cref="AttentionArgumentException"/> naming the entry, with nothing written (for tests and debugging;
    /// it costs a synchronisation). Without it the kernels still never touch memory outside the tensors given: a sequence
    /// whose length breaks the contract is neither read nor written, and a page outside the pool is neither written
    /// (the append skips that token) nor read (page 0 is read in its place: that sequence's output is unspecified).
    /// </remarks>
    /// <param name="query">(batch, seqlen_q, heads_q, head_dim).</param>
    /// <param name="keyCache">(batch, capacity, heads_k, head_dim), or with <paramref name="pageTable"/> (num_pages, page_size, heads_k, head_dim).</param>
    /// <param name="valueCache">Same shape as <paramref name="keyCache"/>.</param>
    /// <param name="cacheSeqLens">(batch) int32, contiguous: keys cached per sequence before the append.</param>
    /// <param name="output">(batch, seqlen_q, heads_q, head_dim), written in full.</param>
    /// <param name="logSumExp">(batch, heads_q, seqlen_q) float32, or null.</param>
    /// <param name="options">Scale, mask, softcap.</param>
    /// <param name="newKeys">(batch, seqlen_new, heads_k, head_dim) appended before attention, or null (with <paramref name="newValues"/>).</param>
    /// <param name="newValues">Same shape as <paramref name="newKeys"/>.</param>
    /// <param name="pageTable">(batch, max_pages) int32, rows contiguous, for a paged cache; null for a contiguous one.</param>
    /// <param name="maxCacheSeqLen">The largest <c>cacheSeqLens[b]</c> of this call; null for the most the cache allows
    /// (capacity − seqlen_new). A tighter bound lets the key range be split for the lengths actually present.</param>
    /// <param name="checkDeviceInputs">Check the device-resident lengths and page table first and wait for the result.</param>
    /// <param name="stream">Stream to run on; null for the default stream.</param>
    /// <param name="device">GPU; null for device 0.</param>
    public static void ForwardWithKvCache(DeviceTensor query, DeviceTensor keyCache, DeviceTensor valueCache, DeviceTensor cacheSeqLens,
        DeviceTensor output, DeviceTensor? logSumExp = null, AttentionOptions? options = null, DeviceTensor? newKeys = null,
        DeviceTensor? newValues = null, DeviceTensor? pageTable = null, int? maxCacheSeqLen = null, bool checkDeviceInputs = false,
        CudaStream? stream = null, CudaDevice? device = null)
    {
        var (q, kc, vc, o) = (query.ToLayout("query"), keyCache.ToLayout("keyCache"), valueCache.ToLayout("valueCache"), output.ToLayout("output"));
        var lens = cacheSeqLens.ToLayout("cacheSeqLens");
        TensorLayout? lse = logSumExp?.ToLayout("logSumExp"), table = pageTable?.ToLayout("pageTable");
        TensorLayout? kn = newKeys?.ToLayout("newKeys"), vn = newValues?.ToLayout("newValues");
        var problem = AttentionValidation.ForwardWithKvCache(q, kc, vc, lens, table, kn, vn, o, lse, options, maxCacheSeqLen);
        var tensors = new List<TensorLayout> { q, kc, vc, o };
        if (kn is { } k2 && vn is { } v2) { tensors.Add(k2); tensors.Add(v2); }
        GpuRequirements.Check(problem.Attention, DecodeVariants.HeadDims, "KV-cache", [.. tensors]);
        GpuRequirements.CheckKvCache(problem, lens, table);
        var gpu = stream?.Device ?? device ?? CudaDevice.Get(0);
        FlashDecodeLauncher.Launch(problem, q, kc, vc, lens, table, kn, vn, o, lse, checkDeviceInputs, stream, gpu);
    }

    /// <summary>
    /// Backward pass: gradients of query, key and value from the forward's output and log-sum-exp and the output
    /// gradient. With GQA, key/value gradients sum over the query heads sharing a key head. Set
    /// <see cref="AttentionOptions.Deterministic"/> for bitwise-reproducible gradients (dQ added in a fixed order).
    /// </summary>
    public static void Backward(DeviceTensor query, DeviceTensor key, DeviceTensor value, DeviceTensor output,
        DeviceTensor outputGradient, DeviceTensor logSumExp, DeviceTensor queryGradient, DeviceTensor keyGradient,
        DeviceTensor valueGradient, AttentionOptions? options = null, CudaStream? stream = null, CudaDevice? device = null)
    {
        var (q, k, v, o) = (query.ToLayout("query"), key.ToLayout("key"), value.ToLayout("value"), output.ToLayout("output"));
        var (dO, lse) = (outputGradient.ToLayout("outputGradient"), logSumExp.ToLayout("logSumExp"));
        var (dq, dk, dv) = (queryGradient.ToLayout("queryGradient"), keyGradient.ToLayout("keyGradient"), valueGradient.ToLayout("valueGradient"));
        AttentionValidation.ExpectDefaultPrecision(options, "the backward");
        var problem = AttentionValidation.Backward(q, k, v, o, dO, lse, dq, dk, dv, options);
        GpuRequirements.Check(problem, BackwardVariants.HeadDims, "backward", q, k, v, o, dO, dq, dk, dv);
        var gpu = stream?.Device ?? device ?? CudaDevice.Get(0);
        FlashBackwardLauncher.Launch(problem, q, k, v, o, dO, lse, dq, dk, dv, stream, gpu);
    }
}

/// <summary>What the GPU kernels need beyond the shared validation; messages name the argument and the expectation.</summary>
internal static class GpuRequirements
{
    /// <summary>The FP8 kernel's needs: head dims 64/128/256, grid sizes, 16-byte aligned codes and descales with 16-byte strides.</summary>
    public static void CheckFp8(AttentionProblem p, params TensorLayout[] tensors)
    {
        var first = tensors[0];
        if (Array.IndexOf(Fp8Variants.HeadDims, p.HeadDim) < 0)
            throw new AttentionArgumentException(first.Name, $"{first.Name}: the FP8 kernel supports head_dim {string.Join(", ", Fp8Variants.HeadDims)}; got {p.HeadDim}");
        if (p.HeadsQ > 65535 || p.HeadsK > 65535 || p.Batch > 65535)
            throw new AttentionArgumentException(first.Name, $"{first.Name}: the FP8 quantiser takes at most 65535 heads and 65535 batches; got {p.HeadsQ} query heads, batch {p.Batch}");
        foreach (var t in tensors)
        {
            if (t.Address % 16 != 0)
                throw new AttentionArgumentException(t.Name, $"{t.Name}: the GPU kernels need a 16-byte aligned address; got 0x{t.Address:x}");
            if (t.Type == DataType.Float32) continue;  // descales: read as floats, contiguous
            int multiple = 16 / DataTypes.SizeOf(t.Type);
            for (int i = 0; i < t.Rank - 1; i++)
                if (t.Lengths[i] > 1 && t.Strides[i] % multiple != 0)
                    throw new AttentionArgumentException(t.Name, $"{t.Name}: the GPU kernels need strides that are multiples of {multiple} elements (16 bytes); got strides {t.StrideText}");
        }
    }

    public static void Check(AttentionProblem p, int[] headDims, string direction, params TensorLayout[] tensors)
    {
        var first = tensors[0];
        if (p.Type is not (DataType.BFloat16 or DataType.Float16))
            throw new AttentionArgumentException(first.Name, $"{first.Name}: the GPU kernels take BFloat16 or Float16 elements; got {p.Type} (use the CPU engine, Attention.{(direction == "backward" ? "Backward" : "Forward")}, for Float32)");
        if (Array.IndexOf(headDims, p.HeadDim) < 0)
            throw new AttentionArgumentException(first.Name, $"{first.Name}: the GPU {direction} kernels support head_dim {string.Join(", ", headDims)}; got {p.HeadDim}");
        if (p.IsVarlen)
            throw new AttentionArgumentException("cuSeqLensQ", "cuSeqLensQ: the GPU takes variable-length offsets as device tensors (CudaAttention.ForwardVarlen / BackwardVarlen)");
        // The kernels index (batch, head, query block) tiles with int32; 64 rows is the smaller query block of the two.
        // (Variable-length batches: CheckVarlen bounds their tiles by the packed rows.)
        long queryBlocks = p.Packed ? 0 : (p.SeqLenQ + 63L) / 64 * p.HeadsQ * p.Batch;
        if (queryBlocks > int.MaxValue)
            throw new AttentionArgumentException(first.Name, $"{first.Name}: batch × heads × query blocks of 64 rows is {queryBlocks}; the GPU kernels index at most {int.MaxValue}");
        // The backward's kernels take heads and batches as the y and z of their grids (at most 65535 each).
        if (direction == "backward" && (p.HeadsQ > 65535 || p.Batch > 65535))
            throw new AttentionArgumentException(first.Name, $"{first.Name}: the GPU backward kernels take at most 65535 heads and 65535 batches; got {p.HeadsQ} query heads, batch {p.Batch}");
        foreach (var t in tensors)
        {
            if (t.Address % 16 != 0)
                throw new AttentionArgumentException(t.Name, $"{t.Name}: the GPU kernels need a 16-byte aligned address; got 0x{t.Address:x}");
            for (int i = 0; i < t.Rank - 1; i++)
                if (t.Lengths[i] > 1 && t.Strides[i] % 8 != 0)
                    throw new AttentionArgumentException(t.Name, $"{t.Name}: the GPU kernels need strides that are multiples of 8 elements (16 bytes); got strides {t.StrideText}");
        }
    }

    /// <summary>What the variable-length kernels need beyond <see cref="Check"/>: aligned offsets, tile and row counts int32 can index.</summary>
    public static void CheckVarlen(DeviceVarlenProblem vp)
    {
        foreach (var t in vp.SeqUsedK is { } u ? new[] { vp.CuSeqLensQ, vp.CuSeqLensK, u } : [vp.CuSeqLensQ, vp.CuSeqLensK])
            if (t.Address % 4 != 0)
                throw new AttentionArgumentException(t.Name, $"{t.Name}: the GPU kernels need a 4-byte aligned address for int32 elements; got 0x{t.Address:x}");
        var p = vp.Attention;
        long tiles = ((long)vp.TotalQ / 64 + p.Batch) * p.HeadsQ;
        long sideRows = ((long)vp.TotalQ / 128 + p.Batch) * 128 * p.HeadsQ;
        if (tiles > int.MaxValue || sideRows > int.MaxValue)
            throw new AttentionArgumentException("query", $"query: {vp.TotalQ} tokens × {p.HeadsQ} heads over {p.Batch} sequences is too large for the GPU kernels (at most {int.MaxValue} tiles and side-buffer rows)");
    }

    /// <summary>What the decode kernels need of a KV-cache call beyond the shared checks: aligned int32 tensors, grids they can index.</summary>
    public static void CheckKvCache(KvCacheProblem kv, in TensorLayout seqLens, TensorLayout? pageTable)
    {
        foreach (var t in pageTable is { } pt ? new[] { seqLens, pt } : [seqLens])
            if (t.Address % 4 != 0)
                throw new AttentionArgumentException(t.Name, $"{t.Name}: the GPU kernels need a 4-byte aligned address for int32 elements; got 0x{t.Address:x}");
        var p = kv.Attention;
        // The decode grid indexes (sequence, KV head, m-block) units with int32 (splits multiply them only while they
        // are fewer than the SMs hold); the append's, appended tokens.
        long units = (long)p.Batch * p.HeadsK * ((p.SeqLenQ * (long)p.GroupSize + DecodeVariant.BlockM - 1) / DecodeVariant.BlockM);
        if (units > int.MaxValue || (long)p.Batch * kv.SeqLenNew > int.MaxValue)
            throw new AttentionArgumentException("query", $"query: batch {p.Batch} × heads_k {p.HeadsK} × query blocks is too large for the GPU kernels' grids (at most {int.MaxValue} units of work)");
    }
}
