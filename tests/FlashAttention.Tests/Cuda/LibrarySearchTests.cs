using FlashAttention.Cuda;

namespace FlashAttention.Tests.Cuda;

/// <summary>A fake machine: environment variables, files and folders given by the test.</summary>
internal sealed class FakeLibraryProbe : ILibraryProbe
{
    public Dictionary<string, string> Environment { get; } = [];
    public HashSet<string> Files { get; } = [];
    public HashSet<string> Directories { get; } = [];
    public string? HomeDirectory { get; set; } = "/home/u";
    public bool IsWindows { get; set; }

    public string? GetEnvironmentVariable(string name) => Environment.GetValueOrDefault(name);

    public bool FileExists(string path) => Files.Contains(path);

    public IEnumerable<string> GetDirectories(string parent, string pattern)
    {
        string prefix = pattern.TrimEnd('*');
        return Directories.Where(d => Path.GetDirectoryName(d) == parent && Path.GetFileName(d).StartsWith(prefix, StringComparison.Ordinal));
    }
}

/// <summary>
/// A fact for machines where the loader finds no NVRTC under its bare names (no FLASHATTN_NVRTC, no CUDA folders): it
/// checks what such a machine is told.
/// </summary>
public sealed class WithoutNvrtcOnTheLoaderPathFactAttribute : FactAttribute
{
    public WithoutNvrtcOnTheLoaderPathFactAttribute()
    {
        var (api, error) = NvrtcApi.Load(new FakeLibraryProbe());
        if (api is not null) Skip = "the loader finds an NVRTC by its bare name; this checks what a machine without one is told";
        else if (error!.Reason != CudaUnavailableReason.NvrtcNotFound) Skip = $"the loader finds an unusable NVRTC ({error.Reason}); this checks the not-found message";
    }
}

public class LibrarySearchTests
{
    [Fact]
    public void Bare_machine_gets_the_loader_names_newest_first()
    {
        var paths = LibrarySearch.NvrtcCandidates(new FakeLibraryProbe()).Select(c => c.Path);
        Assert.Equal(["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"], paths);
    }

    [Fact]
    public void Explicit_variable_comes_first_and_is_marked_explicit()
    {
        var probe = new FakeLibraryProbe();
        probe.Environment["FLASHATTN_NVRTC"] = "/opt/x/libnvrtc.so.13.0";
        var list = LibrarySearch.NvrtcCandidates(probe);
        Assert.Equal(new LibraryCandidate("/opt/x/libnvrtc.so.13.0", "FLASHATTN_NVRTC", IsExplicit: true), list[0]);
        Assert.All(list.Skip(1), c => Assert.False(c.IsExplicit));
    }

    [Fact]
    public void Full_order_env_loader_cuda_home_cuda_path_usr_local_versioned_then_python()
    {
        var probe = new FakeLibraryProbe();
        probe.Environment["FLASHATTN_NVRTC"] = "/explicit/libnvrtc.so";
        probe.Environment["CUDA_HOME"] = "/opt/cuda-home";
        probe.Environment["CUDA_PATH"] = "/opt/cuda-path";
        probe.Environment["VIRTUAL_ENV"] = "/venv";
        probe.Files.UnionWith([
            "/opt/cuda-home/lib64/libnvrtc.so.12",
            "/opt/cuda-path/targets/x86_64-linux/lib/libnvrtc.so.13",
            "/usr/local/cuda/lib64/libnvrtc.so.13",
            "/usr/local/cuda/lib64/libnvrtc.so",
            "/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13",
            "/usr/local/cuda-12.8/lib64/libnvrtc.so.12",
            "/usr/local/cuda-13.0/lib64/libnvrtc.so.13",
            "/venv/lib/python3.12/site-packages/nvidia/cu13/lib/libnvrtc.so.13",
            "/usr/local/lib/python3.10/dist-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12",
            "/home/u/.local/lib/python3.11/site-packages/nvidia/cu13/lib/libnvrtc.so.13",
        ]);
        probe.Directories.UnionWith([
            "/usr/local/cuda-12.8", "/usr/local/cuda-13.0",
            "/venv/lib/python3.12", "/usr/local/lib/python3.10", "/home/u/.local/lib/python3.11",
        ]);

        var list = LibrarySearch.NvrtcCandidates(probe);
        Assert.Equal(
        [
            "/explicit/libnvrtc.so",
            "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so",
            "/opt/cuda-home/lib64/libnvrtc.so.12",
            "/opt/cuda-path/targets/x86_64-linux/lib/libnvrtc.so.13",
            "/usr/local/cuda/lib64/libnvrtc.so.13",
            "/usr/local/cuda/lib64/libnvrtc.so",
            "/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13",
            "/usr/local/cuda-13.0/lib64/libnvrtc.so.13",
            "/usr/local/cuda-12.8/lib64/libnvrtc.so.12",
            "/venv/lib/python3.12/site-packages/nvidia/cu13/lib/libnvrtc.so.13",
            "/home/u/.local/lib/python3.11/site-packages/nvidia/cu13/lib/libnvrtc.so.13",
            "/usr/local/lib/python3.10/dist-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12",
        ], list.Select(c => c.Path));
        Assert.Equal("CUDA_HOME", list[4].Origin);
        Assert.Equal("python site-packages", list[^1].Origin);
    }

    [Fact]
    public void Folders_are_listed_only_where_the_file_exists()
    {
        var probe = new FakeLibraryProbe();
        probe.Environment["CUDA_HOME"] = "/opt/cuda";
        probe.Directories.Add("/usr/local/lib/python3.12");
        Assert.Equal(3, LibrarySearch.NvrtcCandidates(probe).Count);
    }

    [Fact]
    public void Python_versions_sort_numerically_newest_first()
    {
        var probe = new FakeLibraryProbe { HomeDirectory = null };
        probe.Directories.UnionWith(["/usr/lib/python3.9", "/usr/lib/python3.12", "/usr/lib/python3.10"]);
        var dirs = LibrarySearch.PythonSitePackages(probe).Where(d => d.StartsWith("/usr/lib/python3.", StringComparison.Ordinal)).ToList();
        Assert.Equal(
        [
            "/usr/lib/python3.12/site-packages", "/usr/lib/python3.12/dist-packages",
            "/usr/lib/python3.10/site-packages", "/usr/lib/python3.10/dist-packages",
            "/usr/lib/python3.9/site-packages", "/usr/lib/python3.9/dist-packages",
        ], dirs);
        Assert.Contains("/usr/lib/python3/dist-packages", LibrarySearch.PythonSitePackages(probe));
    }

    [Fact]
    public void Duplicates_are_dropped()
    {
        var probe = new FakeLibraryProbe();
        probe.Environment["CUDA_HOME"] = "/usr/local/cuda";
        probe.Environment["CUDA_PATH"] = "/usr/local/cuda";
        probe.Files.Add("/usr/local/cuda/lib64/libnvrtc.so.13");
        var list = LibrarySearch.NvrtcCandidates(probe);
        Assert.Single(list, c => c.Path == "/usr/local/cuda/lib64/libnvrtc.so.13");
        Assert.Equal("CUDA_HOME", list.Single(c => c.Path == "/usr/local/cuda/lib64/libnvrtc.so.13").Origin);
    }

    [Fact]
    public void Driver_is_libcuda_so_1_first()
    {
        Assert.Equal(["libcuda.so.1", "libcuda.so"], LibrarySearch.DriverCandidates(new FakeLibraryProbe()).Select(c => c.Path));
        Assert.Equal(["nvcuda.dll"], LibrarySearch.DriverCandidates(new FakeLibraryProbe { IsWindows = true }).Select(c => c.Path));
    }

    [Fact]
    public void Explicit_nvrtc_that_cannot_load_stops_the_search_with_its_name()
    {
        var probe = new FakeLibraryProbe();
        probe.Environment["FLASHATTN_NVRTC"] = "/nonexistent/libnvrtc.so.13";
        var (api, error) = NvrtcApi.Load(probe);
        Assert.Null(api);
        Assert.Equal(CudaUnavailableReason.NvrtcNotFound, error!.Reason);
        Assert.StartsWith("NVRTC not found: FLASHATTN_NVRTC=/nonexistent/libnvrtc.so.13 cannot be loaded", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [LinuxFact]
    public void A_library_that_is_not_nvrtc_is_reported_with_the_missing_exports()
    {
        var probe = new FakeLibraryProbe();
        probe.Environment["FLASHATTN_NVRTC"] = "libc.so.6"; // loads everywhere on Linux, exports no nvrtc* symbol
        var (api, error) = NvrtcApi.Load(probe);
        Assert.Null(api);
        Assert.Equal(CudaUnavailableReason.NvrtcTooOld, error!.Reason);
        Assert.Contains("lacks nvrtcVersion", error.Message);
        Assert.Contains("needs NVRTC 12.0 or newer", error.Message);
    }

    [WithoutNvrtcOnTheLoaderPathFact]
    public void Missing_nvrtc_message_says_what_to_install()
    {
        var (api, error) = NvrtcApi.Load(new FakeLibraryProbe());
        Assert.Null(api);
        Assert.Equal(CudaUnavailableReason.NvrtcNotFound, error!.Reason);
        Assert.StartsWith("NVRTC not found: install the CUDA toolkit 12.x/13.x or the nvidia-cuda-nvrtc wheel, or set FLASHATTN_NVRTC=/path/libnvrtc.so", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }
}
