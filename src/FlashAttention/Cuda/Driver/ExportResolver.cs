using System.Runtime.InteropServices;

namespace FlashAttention.Cuda;

/// <summary>Looks a loaded library's exports up by name, remembering which are missing.</summary>
internal sealed class ExportResolver(nint library)
{
    public List<string> MissingRequired { get; } = [];
    public List<string> MissingOptional { get; } = [];

    /// <summary>The first of <paramref name="names"/> the library exports (later names are older/newer aliases); 0 and noted when none.</summary>
    public nint Required(params string[] names) => Find(names, MissingRequired);

    public nint Optional(params string[] names) => Find(names, MissingOptional);

    private nint Find(string[] names, List<string> missing)
    {
        foreach (string name in names)
            if (NativeLibrary.TryGetExport(library, name, out nint address)) return address;
        missing.Add(names[0]);
        return 0;
    }
}
