using FlashAttention.Cuda.Compiler;
using FlashAttention.Lab;

namespace FlashAttention.Tests.Cuda;

/// <summary>Specs of the kernels in the lab's probes/selftest.cu.</summary>
internal static class SelftestKernels
{
    public const string Source = "probes/selftest.cu";

    public static readonly KernelSpec Axpy = new(Source, ["axpy<float>", "axpy<double>"], sources: LabKernelSources.Instance);

    public static readonly KernelSpec All = new(Source,
        ["axpy<float>", "axpy<double>", "copy_param_blob", "reverse_in_shared", "report_cluster_rank"],
        new CompileOptions { PtxasVerbose = true, LineInfo = true }, LabKernelSources.Instance);
}
