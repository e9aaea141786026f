using System.Collections.Concurrent;
using FlashAttention.Cuda.Compiler;
using FlashAttention.Cuda.Variants;

namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// Every kernel variant the library can launch, as NVRTC compilation specs: one module per variant, so
/// variants compile in parallel and are cached independently. Specs are interned (one instance per name
/// expression) because the module cache's fast path is keyed on the spec instance.
/// </summary>
internal static class KernelCatalog
{
    public const string ForwardSource = "fwd/flash_fwd.cu";
    public const string BackwardSource = "bwd/flash_bwd.cu";
    public const string Fp8Source = "fp8/fp8_fwd.cu";
    public const string QuantizeSource = "fp8/fp8_quantize.cu";
    public const string DecodeSource = "decode/flash_decode.cu";
    public const string KvCacheSource = "decode/kv_cache.cu";
    public const string KvCheckExpression = "fa::kv_check_kernel";
    public const string VarlenPrepareSource = "varlen/varlen_prepare.cu";
    public const string VarlenPrepareExpression = "fa::varlen_prepare_kernel";

    // ptxas -v puts registers and spills of each kernel into the log; line info serves compute-sanitizer and ncu.
    public static readonly CompileOptions Options = CompileOptions.Default with { PtxasVerbose = true, LineInfo = true };
    private static readonly ConcurrentDictionary<string, KernelSpec> Specs = new(StringComparer.Ordinal);

    public static KernelSpec Spec(string sourceFile, string nameExpression, IKernelSourceProvider? sources = null)
        => Specs.GetOrAdd(sourceFile + "|" + nameExpression, _ => new KernelSpec(sourceFile, [nameExpression], Options, sources));

    public static readonly DataType[] KernelTypes = [DataType.BFloat16, DataType.Float16];

    /// <summary>A named variant for <c>flashattn warmup</c>: a label, its spec and its name expression.</summary>
    public sealed record Entry(string Label, KernelSpec Spec, string NameExpression);

    /// <summary>Every variant the attention entry points may launch under the current <see cref="VariantPolicy"/>.</summary>
    public static IEnumerable<Entry> All()
    {
        var policy = VariantPolicy.Current;
        foreach (var type in KernelTypes)
        {
            foreach (int d in ForwardVariants.HeadDims)
                foreach (var v in policy.ForwardVariantsOf(d))
                {
                    yield return ForwardEntry(type, v);
                    yield return ForwardEntry(type, v with { Varlen = true });
                }
            foreach (int d in BackwardVariants.HeadDims)
            {
                var variants = policy.BackwardVariantsOf(d).ToArray();
                foreach (var v in variants)
                {
                    yield return BackwardEntry(type, v).Main;
                    yield return BackwardEntry(type, v with { Varlen = true }).Main;
                }
                var (_, pre, post) = BackwardEntry(type, variants[0]);  // one pre- and post-pass per head dim
                yield return pre;
                yield return post;
            }
            foreach (int d in DecodeVariants.HeadDims)
            {
                var variants = policy.DecodeVariantsOf(d).ToArray();
                foreach (var v in variants) yield return DecodeEntry(type, v).Main;
                yield return DecodeEntry(type, variants[0]).Append;  // one append per head dim
            }
        }
        foreach (int d in Fp8Variants.HeadDims)
        {
            foreach (var type in KernelTypes)
            {
                yield return Fp8Entry(policy.Fp8(d), type);
                yield return QuantizeEntry(type, policy.Quantizer(d));
            }
            yield return TransposeVtEntry(d);
        }
        yield return KvCheckEntry;
        yield return VarlenPrepareEntry;
        foreach (var e in ContextParallel.ContextParallelKernels.All()) yield return e;
    }

    private static readonly ConcurrentDictionary<string, Entry> Named = new(StringComparer.Ordinal);

    private static Entry NamedEntry(string source, string label, string name)
        => Named.GetOrAdd(source + "|" + name, _ => new Entry(label, Spec(source, name), name));

    /// <summary>The FP8 forward kernel of a variant writing O in <paramref name="output"/>.</summary>
    public static Entry Fp8Entry(Fp8Variant v, DataType output)
        => NamedEntry(Fp8Source, $"fp8 e4m3→{DataTypes.ShortName(output)} {v}", v.NameExpression(output));

    /// <summary>The quantiser of a bf16/fp16 call's Q, K and V in one launch, in the given shape.</summary>
    public static Entry QuantizeEntry(DataType type, QuantizerShape shape)
        => NamedEntry(QuantizeSource, $"fp8-quantize {DataTypes.ShortName(type)} d{shape.HeadDim} kv-block {shape.KvBlock}{(shape.Resident ? " resident" : " per-job")}",
            shape.NameExpression(KernelNames.ElementTag(type)));

    /// <summary>The transposer of a caller's E4M3 V into the FP8 kernel's Vᵀ layout.</summary>
    public static Entry TransposeVtEntry(int headDim)
        => NamedEntry(QuantizeSource, $"fp8-transpose vt d{headDim}", $"fa::fp8_transpose_vt<{headDim}>");

    // The launchers' look-ups, memoised by value: a name expression is a dozen formatted fields, built once per variant
    // instead of on every call.
    private static readonly ConcurrentDictionary<(DataType, ForwardVariant), Entry> ForwardEntries = new();
    private static readonly ConcurrentDictionary<(DataType, BackwardVariant), (Entry Main, Entry Pre, Entry Post)> BackwardEntries = new();

    private static readonly ConcurrentDictionary<(DataType, DecodeVariant), (Entry Main, Entry Append)> DecodeEntries = new();

    /// <summary>The decode variant's kernel and the KV-cache append (for calls with no queries) at its head dim.</summary>
    public static (Entry Main, Entry Append) DecodeEntry(DataType type, DecodeVariant v)
        => DecodeEntries.GetOrAdd((type, v), key =>
        {
            var (t, d) = key;
            string main = d.NameExpression(t), append = d.AppendExpression(t);
            string name = DataTypes.ShortName(t);
            return (new Entry($"decode {name} {d}", Spec(DecodeSource, main), main),
                    new Entry($"kv-append {name} d{d.HeadDim}", Spec(KvCacheSource, append), append));
        });

    /// <summary>The check of a KV cache's device-resident lengths and page table (the checked mode's first launch).</summary>
    public static readonly Entry KvCheckEntry = new("kv-check", Spec(KvCacheSource, KvCheckExpression), KvCheckExpression);

    /// <summary>The variable-length batches' check of their offsets and the forward's tile order.</summary>
    public static readonly Entry VarlenPrepareEntry = new("varlen-prepare", Spec(VarlenPrepareSource, VarlenPrepareExpression), VarlenPrepareExpression);

    /// <summary>The forward variant's entry (labelled as <c>flashattn warmup</c> lists it).</summary>
    public static Entry ForwardEntry(DataType type, ForwardVariant v)
        => ForwardEntries.GetOrAdd((type, v), key =>
        {
            string name = key.Item2.NameExpression(key.Item1);
            return new Entry($"fwd {DataTypes.ShortName(key.Item1)} {key.Item2}", Spec(ForwardSource, name), name);
        });

    /// <summary>The backward variant's main kernel and its pre- and post-pass.</summary>
    public static (Entry Main, Entry Pre, Entry Post) BackwardEntry(DataType type, BackwardVariant v)
        => BackwardEntries.GetOrAdd((type, v), key =>
        {
            var (t, b) = key;
            string main = b.NameExpression(t), pre = b.PreprocessExpression(t), post = b.PostprocessExpression(t);
            string name = DataTypes.ShortName(t);
            return (new Entry($"bwd {name} {b}", Spec(BackwardSource, main), main),
                    new Entry($"bwd-pre {name} d{b.HeadDim}", Spec(BackwardSource, pre), pre),
                    new Entry($"bwd-post {name} d{b.HeadDim}", Spec(BackwardSource, post), post));
        });
}
