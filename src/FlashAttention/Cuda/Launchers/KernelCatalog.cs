using System.Collections.Concurrent;
using FlashAttention.Cuda.Compiler;

namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// Every kernel variant the library can launch, as NVRTC compilation specs: one module per variant, so
/// variants compile in parallel and are cached independently. Specs are interned (one instance per name
/// expression) because the module cache's fast path is keyed on the spec instance.
/// </summary>
internal static class KernelCatalog
{
    // ptxas -v puts registers and spills of each kernel into the log; line info serves compute-sanitizer and ncu.
    private static readonly CompileOptions Options = CompileOptions.Default with { PtxasVerbose = true, LineInfo = true };
    private static readonly ConcurrentDictionary<string, KernelSpec> Specs = new(StringComparer.Ordinal);

    public static KernelSpec Spec(string sourceFile, string nameExpression)
        => Specs.GetOrAdd(sourceFile + "|" + nameExpression, _ => new KernelSpec(sourceFile, [nameExpression], Options));

    public static readonly DataType[] KernelTypes = [DataType.BFloat16, DataType.Float16];

    /// <summary>A named variant for <c>flashattn warmup</c>: a label, its spec and its name expression.</summary>
    public sealed record Entry(string Label, KernelSpec Spec, string NameExpression);

    /// <summary>All variants the attention entry points use (not the ablations or probes unless asked).</summary>
    public static IEnumerable<Entry> All(bool includeAblations = false, bool includeProbes = false)
    {
        foreach (var type in KernelTypes)
        {
            foreach (int d in TileTables.ForwardHeadDims)
                foreach (var c in TileTables.ForwardVariants(d))
                    yield return ForwardEntry(type, c);
            foreach (int d in TileTables.BackwardHeadDims)
            {
                var c = TileTables.Backward(d);
                var (main, pre, post) = BackwardEntry(type, c);
                yield return main;
                yield return BackwardEntry(type, c.ForSoftcap(true)).Main;  // (its pre- and post-pass are c's)
                yield return pre;
                yield return post;
            }
        }
        if (includeAblations)
        {
            foreach (var a in Ablations)
            {
                var c = TileTables.Forward(128, a);
                yield return Forward(DataType.BFloat16, c, $"fwd bf16 {c} ({a.Name})");
            }
        }
        if (includeProbes)
            foreach (var e in PrimitiveProbes.Entries()) yield return e;
    }

    public static readonly ForwardAblation[] Ablations =
    [
        // the overlap switched to what d128 (the ablation's head dim) does not do by default
        new(IntraWarpgroupOverlap: !TileTables.Forward(128).IntraWgOverlap),
        new(NoPingPong: true),
        new(NoWarpSpecialization: true),
    ];

    public static Entry Forward(DataType type, ForwardKernelConfig c, string label)
        => new(label, Spec("flash_fwd.cu", c.NameExpression(type)), c.NameExpression(type));

    // The launchers' look-ups, memoised by value: a name expression is a dozen formatted fields, built once per variant
    // instead of on every call.
    private static readonly ConcurrentDictionary<(DataType, ForwardKernelConfig), Entry> ForwardEntries = new();
    private static readonly ConcurrentDictionary<(DataType, BackwardKernelConfig), (Entry Main, Entry Pre, Entry Post)> BackwardEntries = new();

    /// <summary>The forward variant's entry (labelled as <c>flashattn warmup</c> lists it).</summary>
    public static Entry ForwardEntry(DataType type, ForwardKernelConfig c)
        => ForwardEntries.GetOrAdd((type, c), key => Forward(key.Item1, key.Item2, $"fwd {DataTypes.ShortName(key.Item1)} {key.Item2}"));

    /// <summary>The backward variant's main kernel and its pre- and post-pass.</summary>
    public static (Entry Main, Entry Pre, Entry Post) BackwardEntry(DataType type, BackwardKernelConfig c)
        => BackwardEntries.GetOrAdd((type, c), key =>
        {
            var (t, b) = key;
            string main = b.NameExpression(t), pre = b.PreprocessExpression(t), post = b.PostprocessExpression(t);
            string name = DataTypes.ShortName(t);
            return (new Entry($"bwd {name} {b}", Spec("flash_bwd.cu", main), main),
                    new Entry($"bwd-pre {name} d{b.HeadDim}", Spec("flash_bwd.cu", pre), pre),
                    new Entry($"bwd-post {name} d{b.HeadDim}", Spec("flash_bwd.cu", post), post));
        });
}
