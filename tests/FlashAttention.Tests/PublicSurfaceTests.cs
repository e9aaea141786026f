using System.Reflection;
using System.Text.RegularExpressions;

namespace FlashAttention.Tests;

/// <summary>
/// The library's public surface is what a user calls: the entry points, tensor types, options, numerics types and
/// exceptions. Lab code (verification, studies, probes, overrides, ablations) lives in FlashAttention.Lab; the list of
/// public types is committed (PublicTypes.txt) so that any change to the surface is a visible, reviewed change.
/// </summary>
public partial class PublicSurfaceTests
{
    private static readonly string ListPath = Path.Join(AppContext.BaseDirectory, "PublicTypes.txt");

    private static List<string> PublicTypes() => typeof(Attention).Assembly.GetExportedTypes()
        .Select(t => t.FullName!).Order(StringComparer.Ordinal).ToList();

    [Fact]
    public void The_public_types_are_the_committed_list()
    {
        var expected = File.ReadAllLines(ListPath).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        var actual = PublicTypes();
        var added = actual.Except(expected).ToList();
        var removed = expected.Except(actual).ToList();
        Assert.True(added.Count == 0 && removed.Count == 0,
            $"public types of FlashAttention.dll changed; update tests/FlashAttention.Tests/PublicTypes.txt if intended.\nadded: {string.Join(", ", added)}\nremoved: {string.Join(", ", removed)}");
    }

    [Fact]
    public void No_lab_type_is_public()
    {
        var lab = PublicTypes().Where(t => LabWord().IsMatch(t)).ToList();
        Assert.True(lab.Count == 0, "lab types in the public surface: " + string.Join(", ", lab));
    }

    [Fact]
    public void The_launch_path_reads_no_environment_variable()
    {
        // Tuning enters through VariantPolicy alone; the launchers' sources must not read the environment.
        string root = Path.GetFullPath(Path.Join(AppContext.BaseDirectory, "../../../../../src/FlashAttention/Cuda/Launchers"));
        Assert.True(Directory.Exists(root), root);
        var readers = Directory.EnumerateFiles(root, "*.cs").Where(f => File.ReadAllText(f).Contains("GetEnvironmentVariable", StringComparison.Ordinal)).ToList();
        Assert.True(readers.Count == 0, string.Join(", ", readers));
    }

    [GeneratedRegex("Verif|Study|Probe|Override|Ablation|Plain|Emulation|Tuning|Selftest", RegexOptions.IgnoreCase)]
    private static partial Regex LabWord();
}
