using FlashAttention.Cuda.Compiler;

namespace FlashAttention.Lab;

/// <summary>The lab's kernel sources (probes/…) over the library's, whose headers they include.</summary>
internal static class LabKernelSources
{
    public static readonly IKernelSourceProvider Instance =
        new CompositeKernelSources(new EmbeddedKernelSources(typeof(LabKernelSources).Assembly), EmbeddedKernelSources.Instance);
}
