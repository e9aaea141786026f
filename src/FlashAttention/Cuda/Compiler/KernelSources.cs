using System.Collections.Concurrent;
using System.Text.RegularExpressions;

namespace FlashAttention.Cuda.Compiler;

/// <summary>One kernel source or header: the name NVRTC knows it by and its text.</summary>
internal sealed record KernelSourceFile(string Name, string Text);

/// <summary>A kernel source with every header it includes, directly or not, ready for nvrtcCreateProgram.</summary>
/// <param name="Main">The <c>.cu</c> file.</param>
/// <param name="Headers">Headers in the order they were first reached, each once; their <see cref="KernelSourceFile.Name"/> is the include string NVRTC will look up.</param>
internal sealed record ResolvedKernelSource(KernelSourceFile Main, IReadOnlyList<KernelSourceFile> Headers);

/// <summary>Where kernel sources come from: the assembly's embedded resources, or a dictionary in tests.</summary>
internal interface IKernelSourceProvider
{
    /// <summary>The text of a source by file name (e.g. <c>selftest.cu</c>), or null when there is none.</summary>
    string? TryGetText(string fileName);

    /// <summary>Every file name available.</summary>
    IEnumerable<string> FileNames { get; }
}

/// <summary>
/// Kernel sources embedded in an assembly with logical names <c>FlashAttention.Kernels.&lt;path&gt;</c>, the path relative
/// to the kernels folder with '/' separators (see FlashAttention.csproj: everything under Cuda/Kernels), which is also
/// how sources include each other (<c>#include "common/ptx.cuh"</c>). Reading manifest resources is trimming- and AOT-safe.
/// </summary>
internal sealed class EmbeddedKernelSources(System.Reflection.Assembly assembly) : IKernelSourceProvider
{
    /// <summary>The resource-name prefix.</summary>
    public const string ResourcePrefix = "FlashAttention.Kernels.";

    /// <summary>The library's own kernels.</summary>
    public static readonly EmbeddedKernelSources Instance = new(typeof(EmbeddedKernelSources).Assembly);

    private readonly ConcurrentDictionary<string, string?> _texts = new(StringComparer.Ordinal);

    public string? TryGetText(string fileName) => _texts.GetOrAdd(fileName, static (name, assembly) =>
    {
        using var stream = assembly.GetManifestResourceStream(ResourcePrefix + name);
        if (stream is null) return null;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }, assembly);

    public IEnumerable<string> FileNames => assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal))
        .Select(n => n[ResourcePrefix.Length..])
        .Order(StringComparer.Ordinal);
}

/// <summary>Several providers searched in order (the lab's probe kernels, which include the library's headers).</summary>
internal sealed class CompositeKernelSources(params IKernelSourceProvider[] providers) : IKernelSourceProvider
{
    public string? TryGetText(string fileName) => providers.Select(p => p.TryGetText(fileName)).FirstOrDefault(t => t is not null);

    public IEnumerable<string> FileNames => providers.SelectMany(p => p.FileNames).Distinct().Order(StringComparer.Ordinal);
}

/// <summary>Sources held in memory (tests, experiments).</summary>
internal sealed class InMemoryKernelSources(IReadOnlyDictionary<string, string> files) : IKernelSourceProvider
{
    public string? TryGetText(string fileName) => files.TryGetValue(fileName, out var text) ? text : null;

    public IEnumerable<string> FileNames => files.Keys.Order(StringComparer.Ordinal);
}

/// <summary>
/// Loads kernel sources and resolves the headers they include. NVRTC gets no include path: every
/// <c>#include "x.cuh"</c> must name another embedded source, and is handed over by name (nvrtcCreateProgram's
/// headers/includeNames). An <c>#include &lt;…&gt;</c> (a toolkit or system header) is refused, because the library must
/// work where only the driver and NVRTC exist.
/// </summary>
internal static partial class KernelSources
{
    /// <summary>The text of an embedded source; throws <see cref="FileNotFoundException"/> naming what is available.</summary>
    public static string Load(string fileName, IKernelSourceProvider? provider = null)
    {
        provider ??= EmbeddedKernelSources.Instance;
        return provider.TryGetText(fileName) ?? throw new FileNotFoundException(
            $"no kernel source named {fileName} (embedded resource {EmbeddedKernelSources.ResourcePrefix}{fileName}); available: {string.Join(", ", provider.FileNames)}", fileName);
    }

    /// <summary>
    /// <paramref name="fileName"/> with every header it reaches through <c>#include "…"</c>, transitively, each header
    /// once (include guards or <c>#pragma once</c> in the headers handle repeated inclusion inside NVRTC).
    /// </summary>
    public static ResolvedKernelSource Resolve(string fileName, IKernelSourceProvider? provider = null)
    {
        provider ??= EmbeddedKernelSources.Instance;
        var main = new KernelSourceFile(fileName, Load(fileName, provider));
        var headers = new List<KernelSourceFile>();
        var seen = new HashSet<string>(StringComparer.Ordinal) { fileName };
        var pending = new Stack<KernelSourceFile>();
        pending.Push(main);
        while (pending.Count > 0)
        {
            var file = pending.Pop();
            var found = new List<KernelSourceFile>();
            foreach (var include in ScanIncludes(file.Text))
            {
                if (include.IsSystem)
                    throw new InvalidOperationException(
                        $"{file.Name}:{include.Line}: #include <{include.Name}> names a toolkit or system header; kernel sources may include only other embedded sources, with #include \"name.cuh\"");
                if (!seen.Add(include.Name)) continue;
                // Include strings are paths from the kernels folder, as the resources are named; NVRTC matches headers by
                // the include string as written.
                string text = provider.TryGetText(include.Name) ?? throw new FileNotFoundException(
                    $"{file.Name}:{include.Line}: #include \"{include.Name}\" names no embedded kernel source ({EmbeddedKernelSources.ResourcePrefix}{include.Name}); available: {string.Join(", ", provider.FileNames)}",
                    include.Name);
                var header = new KernelSourceFile(include.Name, text);
                headers.Add(header);
                found.Add(header);
            }
            // Depth-first in source order: push in reverse so the first include is expanded first.
            for (int i = found.Count - 1; i >= 0; i--) pending.Push(found[i]);
        }
        return new ResolvedKernelSource(main, headers);
    }

    /// <summary>An <c>#include</c> directive.</summary>
    internal readonly record struct IncludeDirective(string Name, bool IsSystem, int Line);

    /// <summary>The <c>#include</c> directives of a source, comments ignored (a commented-out include is not a dependency).</summary>
    internal static IReadOnlyList<IncludeDirective> ScanIncludes(string text)
    {
        string code = StripComments(text);
        var result = new List<IncludeDirective>();
        int line = 1, start = 0;
        for (int i = 0; i <= code.Length; i++)
        {
            if (i < code.Length && code[i] != '\n') continue;
            var match = IncludePattern().Match(code, start, i - start);
            if (match.Success)
            {
                bool quoted = match.Groups["q"].Success;
                result.Add(new IncludeDirective(quoted ? match.Groups["q"].Value : match.Groups["a"].Value, !quoted, line));
            }
            line++;
            start = i + 1;
        }
        return result;
    }

    /// <summary>Replaces comments with spaces, keeping newlines (so line numbers stay right) and string literals intact.</summary>
    internal static string StripComments(string text)
    {
        var sb = new System.Text.StringBuilder(text.Length);
        int i = 0;
        while (i < text.Length)
        {
            char c = text[i];
            if (c == '"' || c == '\'')
            {
                // Copy a literal through, honouring escapes, so "//" inside it is not taken for a comment.
                sb.Append(c);
                i++;
                while (i < text.Length && text[i] != c && text[i] != '\n')
                {
                    if (text[i] == '\\' && i + 1 < text.Length) sb.Append(text[i++]);
                    sb.Append(text[i++]);
                }
                if (i < text.Length) sb.Append(text[i++]);
            }
            else if (c == '/' && i + 1 < text.Length && text[i + 1] == '/')
            {
                while (i < text.Length && text[i] != '\n') { sb.Append(' '); i++; }
            }
            else if (c == '/' && i + 1 < text.Length && text[i + 1] == '*')
            {
                sb.Append("  ");
                i += 2;
                while (i < text.Length && !(text[i] == '*' && i + 1 < text.Length && text[i + 1] == '/'))
                {
                    sb.Append(text[i] == '\n' ? '\n' : ' ');
                    i++;
                }
                if (i < text.Length) { sb.Append("  "); i += 2; }
            }
            else
            {
                sb.Append(c);
                i++;
            }
        }
        return sb.ToString();
    }

    [GeneratedRegex("""^[ \t]*#[ \t]*include[ \t]*(?:"(?<q>[^"]+)"|<(?<a>[^>]+)>)""", RegexOptions.CultureInvariant)]
    private static partial Regex IncludePattern();
}
