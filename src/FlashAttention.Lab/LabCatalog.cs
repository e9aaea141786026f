using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;
using FlashAttention.Lab.Probes;
using FlashAttention.Lab.Tuning;

namespace FlashAttention.Lab;

/// <summary>The lab's kernels beside the library's catalogue: the ablation variants and the primitive probes.</summary>
internal static class LabCatalog
{
    /// <summary>The forward variants of the paper's ablation table (bf16, d128), labelled with the switch.</summary>
    internal static IEnumerable<KernelCatalog.Entry> Ablations()
        => ForwardAblation.PaperTable.Select(a =>
        {
            var v = a.Apply(VariantPolicy.Current.Forward(128, ForwardVariants.LongKeysFrom, keysCutFromRight: false));
            var entry = KernelCatalog.ForwardEntry(DataType.BFloat16, v);
            return entry with { Label = $"{entry.Label} ({a.Name})" };
        });

    internal static IEnumerable<KernelCatalog.Entry> Probes() => PrimitiveProbes.Entries().Concat(DecodeProbes.Entries());

    /// <summary>Every kernel: the library's catalogue, the ablations and the probes.</summary>
    internal static IEnumerable<KernelCatalog.Entry> Everything() => KernelCatalog.All().Concat(Ablations()).Concat(Probes());
}
