using System.Runtime.InteropServices;

namespace FlashAttention.Cuda;

/// <summary>The outcome of trying a list of <see cref="LibraryCandidate"/>s.</summary>
internal sealed class LoadedLibrary
{
    public required nint Handle { get; init; }
    /// <summary>The candidate that loaded.</summary>
    public required LibraryCandidate Candidate { get; init; }
    /// <summary>The file the loader actually mapped (from <c>/proc/self/maps</c>), or the candidate's path when that cannot be read.</summary>
    public required string ResolvedPath { get; init; }
}

/// <summary>Loads the first loadable candidate with <see cref="NativeLibrary"/> (no DllImport, so nothing is bound at build time).</summary>
internal static class NativeLibraryLoader
{
    /// <summary>The first candidate that loads, or null; an explicit candidate (named by the user) that fails ends the search.</summary>
    public static LoadedLibrary? TryLoad(IReadOnlyList<LibraryCandidate> candidates)
    {
        foreach (var candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate.Path, out nint handle)) return Loaded(handle, candidate);
            if (candidate.IsExplicit) return null;
        }
        return null;
    }

    private static LoadedLibrary Loaded(nint handle, LibraryCandidate candidate)
        => new() { Handle = handle, Candidate = candidate, ResolvedPath = ResolveMappedPath(candidate.Path) ?? candidate.Path };

    /// <summary>
    /// The first candidate that loads and whose API is usable. One that loads but is not (it lacks exports, or
    /// <paramref name="versionProblem"/> names a fault) is passed over, since a newer one may come later in the list,
    /// and is reported only if nothing better is found; an explicit candidate (named by the user) ends the search.
    /// Never throws.
    /// </summary>
    /// <param name="create">The API over a loaded library, its exports looked up through the resolver.</param>
    /// <param name="versionProblem">What makes an API with all its exports unusable ("is version 11.8"), or null.</param>
    /// <param name="unusable">The error for the first unusable library, given what is wrong with it.</param>
    /// <param name="explicitNotLoadable">The error when the explicit candidate cannot be loaded.</param>
    /// <param name="notFound">The error when no candidate loads.</param>
    public static (TApi?, CudaUnavailableException?) LoadFirstUsable<TApi>(IReadOnlyList<LibraryCandidate> candidates,
        Func<LoadedLibrary, ExportResolver, TApi> create, Func<TApi, string?> versionProblem,
        Func<LoadedLibrary, string, CudaUnavailableException> unusable,
        Func<LibraryCandidate, CudaUnavailableException> explicitNotLoadable, Func<CudaUnavailableException> notFound)
        where TApi : class
    {
        CudaUnavailableException? firstUnusable = null;
        foreach (var candidate in candidates)
        {
            if (!NativeLibrary.TryLoad(candidate.Path, out nint handle))
            {
                if (candidate.IsExplicit) return (null, explicitNotLoadable(candidate));
                continue;
            }
            var library = Loaded(handle, candidate);
            var exports = new ExportResolver(handle);
            var api = create(library, exports);
            string? problem = exports.MissingRequired.Count > 0 ? $"lacks {string.Join(", ", exports.MissingRequired)}" : versionProblem(api);
            if (problem is null) return (api, null);
            firstUnusable ??= unusable(library, problem);
            if (candidate.IsExplicit) return (null, firstUnusable);
            // Not freed: the library may already have been loaded by someone else in this process, and a stale handle is harmless.
        }
        return (null, firstUnusable ?? notFound());
    }

    /// <summary>
    /// The absolute path of an already loaded library whose file name starts with the candidate's file name, read from
    /// <c>/proc/self/maps</c> (Linux); null elsewhere or when not found. Used only for reports such as <c>flashattn info</c>.
    /// </summary>
    internal static string? ResolveMappedPath(string candidatePath)
    {
        if (Path.IsPathRooted(candidatePath)) return candidatePath;
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            // The candidate is usually a link name (libcuda.so.1 → libcuda.so.580.65.06): match on the part up to ".so".
            string prefix = Path.GetFileName(candidatePath);
            int so = prefix.IndexOf(".so", StringComparison.Ordinal);
            if (so > 0) prefix = prefix[..(so + 3)];
            foreach (string line in File.ReadLines("/proc/self/maps"))
            {
                int slash = line.IndexOf('/');
                if (slash < 0) continue;
                string path = line[slash..].Trim();
                if (Path.GetFileName(path).StartsWith(prefix, StringComparison.Ordinal)) return path;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }
}
