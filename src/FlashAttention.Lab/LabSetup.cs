using FlashAttention.Cuda.Compiler;
using FlashAttention.Cuda.Variants;
using FlashAttention.Lab.Tuning;

namespace FlashAttention.Lab;

/// <summary>
/// What the lab's environment variables turn on in a process (the CLI calls it once at start-up): the tuning policy
/// (<see cref="TuningPolicy.FromEnvironment"/>) and the cubin dump folder. The library itself reads none of them.
/// </summary>
internal static class LabSetup
{
    /// <summary>Folder where every compiled or cache-loaded cubin is written with its log (<c>scripts/local-sass.sh</c>).</summary>
    public const string DumpDirectoryVariable = "FLASHATTN_DUMP_DIR";

    /// <summary>Installs what the environment asks for; throws <see cref="ArgumentException"/> naming a malformed variable.</summary>
    public static void FromEnvironment()
    {
        var policy = TuningPolicy.FromEnvironment();
        if (!policy.IsDefault) VariantPolicy.Install(policy);
        if (Environment.GetEnvironmentVariable(DumpDirectoryVariable) is { Length: > 0 } dump) KernelCompiler.DumpDirectory = dump;
    }

    /// <summary>The installed tuning policy, or one with the library's defaults.</summary>
    public static TuningPolicy CurrentTuning => VariantPolicy.Current as TuningPolicy ?? new TuningPolicy();
}
