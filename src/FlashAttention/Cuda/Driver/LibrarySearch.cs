namespace FlashAttention.Cuda;

/// <summary>
/// What <see cref="LibrarySearch"/> may ask of the machine: environment variables, whether a file exists, and the
/// sub-folders of a folder. Behind an interface so the search order can be unit-tested with a fake file system.
/// </summary>
internal interface ILibraryProbe
{
    string? GetEnvironmentVariable(string name);
    bool FileExists(string path);
    /// <summary>Sub-folders of <paramref name="parent"/> whose names match <paramref name="pattern"/> (<c>*</c> wildcards); empty when the folder does not exist.</summary>
    IEnumerable<string> GetDirectories(string parent, string pattern);
    /// <summary>The user's home folder, or null.</summary>
    string? HomeDirectory { get; }
    bool IsWindows { get; }
}

/// <summary>The real machine.</summary>
internal sealed class SystemLibraryProbe : ILibraryProbe
{
    public static readonly SystemLibraryProbe Instance = new();

    public string? GetEnvironmentVariable(string name) => Environment.GetEnvironmentVariable(name);

    public bool FileExists(string path) => File.Exists(path);

    public IEnumerable<string> GetDirectories(string parent, string pattern)
    {
        try
        {
            return Directory.Exists(parent) ? Directory.GetDirectories(parent, pattern) : [];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    public string? HomeDirectory
    {
        get
        {
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            return string.IsNullOrEmpty(home) ? Environment.GetEnvironmentVariable("HOME") : home;
        }
    }

    public bool IsWindows => OperatingSystem.IsWindows();
}

/// <summary>One place to try loading a native library from.</summary>
/// <param name="Path">A bare file name (resolved by the system loader: <c>LD_LIBRARY_PATH</c>, ld.so.cache, …) or an absolute path.</param>
/// <param name="Origin">Why it is on the list, for messages: "FLASHATTN_NVRTC", "system loader", "CUDA_HOME", "python site-packages", …</param>
/// <param name="IsExplicit">The user named this file; if it fails to load the search stops with that error rather than silently using another copy.</param>
internal readonly record struct LibraryCandidate(string Path, string Origin, bool IsExplicit = false)
{
    public override string ToString() => $"{Path} ({Origin})";
}

/// <summary>
/// The places the CUDA driver, NVRTC and NCCL are looked for, in order. Pure functions of an <see cref="ILibraryProbe"/>:
/// nothing is loaded here, and no program (python, nvcc) is ever run to find a path.
/// </summary>
internal static class LibrarySearch
{
    /// <summary>Environment variable naming the NVRTC library file to use.</summary>
    public const string NvrtcVariable = "FLASHATTN_NVRTC";

    /// <summary>NVRTC file names, newest first: 13.x, then 12.x, then the unversioned development link.</summary>
    public static readonly string[] NvrtcFileNames = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];

    private static readonly string[] NvrtcWindowsFileNames = ["nvrtc64_130_0.dll", "nvrtc64_120_0.dll"];

    /// <summary>
    /// The driver: <c>libcuda.so.1</c> (what the NVIDIA driver installs) through the system loader, then
    /// <c>libcuda.so</c>. The toolkit's stub <c>libcuda.so</c> may be found this way; <c>cuInit</c> then reports
    /// <c>CUDA_ERROR_STUB_LIBRARY</c> and the driver is treated as missing.
    /// </summary>
    public static IReadOnlyList<LibraryCandidate> DriverCandidates(ILibraryProbe probe) => probe.IsWindows
        ? [new("nvcuda.dll", "system loader")]
        : [new("libcuda.so.1", "system loader"), new("libcuda.so", "system loader")];

    /// <summary>
    /// NVRTC, in this order:
    /// <list type="number">
    /// <item><c>$FLASHATTN_NVRTC</c> (explicit: the search stops there if it cannot be loaded);</item>
    /// <item><c>libnvrtc.so.13</c>, <c>libnvrtc.so.12</c>, <c>libnvrtc.so</c> through the system loader;</item>
    /// <item><c>$CUDA_HOME</c> and <c>$CUDA_PATH</c>: <c>lib64</c>, <c>lib</c>, <c>targets/x86_64-linux/lib</c>;</item>
    /// <item><c>/usr/local/cuda/lib64</c>, <c>/usr/local/cuda/targets/x86_64-linux/lib</c>, then versioned <c>/usr/local/cuda-*</c> (newest first);</item>
    /// <item>the NVRTC wheels (<c>nvidia/cu13/lib</c>, <c>nvidia/cuda_nvrtc/lib</c>) in Python site-packages folders:
    /// <c>$VIRTUAL_ENV</c>, <c>$CONDA_PREFIX</c>, <c>~/.local</c>, <c>/usr/local</c>, <c>/usr</c>, <c>/opt/conda</c>.</item>
    /// </list>
    /// Folder candidates are listed only when the file exists there; duplicates are dropped.
    /// </summary>
    public static IReadOnlyList<LibraryCandidate> NvrtcCandidates(ILibraryProbe probe)
    {
        var list = new CandidateList(probe, NvrtcVariable, probe.IsWindows ? NvrtcWindowsFileNames : NvrtcFileNames);
        list.AddSystemLoader();

        foreach (var (variable, root) in CudaRoots(probe))
        {
            if (probe.IsWindows)
            {
                list.AddFolder(Path.Join(root, "bin"), variable);
                list.AddFolder(Path.Join(root, "bin", "x64"), variable);
                continue;
            }
            list.AddFolder(Path.Join(root, "lib64"), variable);
            list.AddFolder(Path.Join(root, "lib"), variable);
            list.AddFolder(Path.Join(root, "targets", "x86_64-linux", "lib"), variable);
        }

        if (!probe.IsWindows)
        {
            list.AddFolder("/usr/local/cuda/lib64", "/usr/local/cuda");
            list.AddFolder("/usr/local/cuda/targets/x86_64-linux/lib", "/usr/local/cuda");
            foreach (string versioned in probe.GetDirectories("/usr/local", "cuda-*").OrderByDescending(VersionSortKey, StringComparer.Ordinal))
            {
                list.AddFolder(Path.Join(versioned, "lib64"), versioned);
                list.AddFolder(Path.Join(versioned, "targets", "x86_64-linux", "lib"), versioned);
            }
        }

        foreach (string sitePackages in PythonSitePackages(probe))
        {
            list.AddFolder(Path.Join(sitePackages, "nvidia", "cu13", "lib"), "python site-packages");
            list.AddFolder(Path.Join(sitePackages, "nvidia", "cuda_nvrtc", "lib"), "python site-packages");
            if (probe.IsWindows)
            {
                list.AddFolder(Path.Join(sitePackages, "nvidia", "cu13", "bin"), "python site-packages");
                list.AddFolder(Path.Join(sitePackages, "nvidia", "cuda_nvrtc", "bin"), "python site-packages");
            }
        }
        return list.Candidates;
    }

    /// <summary>Environment variable naming the NCCL library file to use.</summary>
    public const string NcclVariable = "FLASHATTN_NCCL";

    /// <summary>
    /// NCCL (Linux only), in this order: <c>$FLASHATTN_NCCL</c> (explicit); <c>libnccl.so.2</c> and <c>libnccl.so</c>
    /// through the system loader (the distribution's libnccl2 package); <c>$CUDA_HOME</c>/<c>$CUDA_PATH</c> and
    /// <c>/usr/local/cuda</c> lib folders; the <c>nvidia-nccl-cu13</c>/<c>-cu12</c> wheels' <c>nvidia/nccl/lib</c> in Python
    /// site-packages (where PyTorch's copy lives). Folder candidates are listed only when the file exists there.
    /// </summary>
    public static IReadOnlyList<LibraryCandidate> NcclCandidates(ILibraryProbe probe)
    {
        var list = new CandidateList(probe, NcclVariable, ["libnccl.so.2", "libnccl.so"]);
        if (probe.IsWindows) return list.Candidates;  // NCCL ships for Linux only

        list.AddSystemLoader();
        foreach (var (variable, root) in CudaRoots(probe))
        {
            list.AddFolder(Path.Join(root, "lib64"), variable);
            list.AddFolder(Path.Join(root, "lib"), variable);
        }
        list.AddFolder("/usr/local/cuda/lib64", "/usr/local/cuda");
        foreach (string sitePackages in PythonSitePackages(probe))
            list.AddFolder(Path.Join(sitePackages, "nvidia", "nccl", "lib"), "python site-packages");
        return list.Candidates;
    }

    /// <summary>The toolkit roots named by <c>$CUDA_HOME</c> and <c>$CUDA_PATH</c>, trimmed, with the variable that named each.</summary>
    private static IEnumerable<(string Variable, string Root)> CudaRoots(ILibraryProbe probe)
    {
        foreach (string variable in new[] { "CUDA_HOME", "CUDA_PATH" })
        {
            string? root = probe.GetEnvironmentVariable(variable);
            if (!string.IsNullOrWhiteSpace(root)) yield return (variable, root.Trim());
        }
    }

    /// <summary>
    /// A search list being built: the explicit file from the environment variable first (when set), then each place once,
    /// in the order added.
    /// </summary>
    private sealed class CandidateList
    {
        private readonly ILibraryProbe _probe;
        private readonly string[] _fileNames;
        private readonly HashSet<string> _seen = new(StringComparer.Ordinal);

        public List<LibraryCandidate> Candidates { get; } = [];

        public CandidateList(ILibraryProbe probe, string explicitVariable, string[] fileNames)
        {
            _probe = probe;
            _fileNames = fileNames;
            string? explicitPath = probe.GetEnvironmentVariable(explicitVariable);
            if (!string.IsNullOrWhiteSpace(explicitPath)) Add(new(explicitPath.Trim(), explicitVariable, IsExplicit: true));
        }

        /// <summary>The bare file names, for the system loader's own search path.</summary>
        public void AddSystemLoader()
        {
            foreach (string name in _fileNames) Add(new(name, "system loader"));
        }

        /// <summary>The file names in <paramref name="folder"/>, those that exist.</summary>
        public void AddFolder(string folder, string origin)
        {
            foreach (string name in _fileNames)
            {
                string path = Path.Join(folder, name);
                if (_probe.FileExists(path)) Add(new(path, origin));
            }
        }

        private void Add(LibraryCandidate c)
        {
            if (_seen.Add(c.Path)) Candidates.Add(c);
        }
    }

    /// <summary>
    /// Likely Python site-packages folders, found by listing folders (never by running python): virtual and conda
    /// environments first (the user chose them), then the user's own packages, then system-wide ones.
    /// </summary>
    internal static IEnumerable<string> PythonSitePackages(ILibraryProbe probe)
    {
        var prefixes = new List<string>();
        foreach (string variable in new[] { "VIRTUAL_ENV", "CONDA_PREFIX" })
        {
            string? p = probe.GetEnvironmentVariable(variable);
            if (!string.IsNullOrWhiteSpace(p)) prefixes.Add(p.Trim());
        }
        if (probe.HomeDirectory is { Length: > 0 } home) prefixes.Add(Path.Join(home, ".local"));
        prefixes.AddRange(["/usr/local", "/usr", "/opt/conda"]);

        foreach (string prefix in prefixes)
        {
            if (probe.IsWindows)
            {
                yield return Path.Join(prefix, "Lib", "site-packages");
                continue;
            }
            foreach (string pythonDir in probe.GetDirectories(Path.Join(prefix, "lib"), "python3*").OrderByDescending(VersionSortKey, StringComparer.Ordinal))
            {
                yield return Path.Join(pythonDir, "site-packages");
                yield return Path.Join(pythonDir, "dist-packages");
            }
            if (prefix == "/usr") yield return "/usr/lib/python3/dist-packages";
        }
    }

    /// <summary>Sorts "python3.12" after "python3.9" and "cuda-13.0" after "cuda-12.8": digits compared as numbers.</summary>
    private static string VersionSortKey(string path)
    {
        string name = Path.GetFileName(path.TrimEnd('/', '\\'));
        var sb = new System.Text.StringBuilder();
        int i = 0;
        while (i < name.Length)
        {
            if (char.IsAsciiDigit(name[i]))
            {
                int start = i;
                while (i < name.Length && char.IsAsciiDigit(name[i])) i++;
                sb.Append(name.AsSpan(start, i - start).ToString().PadLeft(8, '0'));
            }
            else sb.Append(name[i++]);
        }
        return sb.ToString();
    }
}
