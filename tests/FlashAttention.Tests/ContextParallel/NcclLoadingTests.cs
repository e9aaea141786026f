using FlashAttention.Cuda;
using FlashAttention.Cuda.ContextParallel;
using FlashAttention.Tests.Cuda;

namespace FlashAttention.Tests.ContextParallel;

/// <summary>Where NCCL is looked for and what a machine without a usable one is told; no GPU or NCCL needed.</summary>
public class NcclLoadingTests
{
    [Fact]
    public void Bare_machine_gets_the_loader_names()
        => Assert.Equal(["libnccl.so.2", "libnccl.so"], LibrarySearch.NcclCandidates(new FakeLibraryProbe()).Select(c => c.Path));

    [Fact]
    public void Explicit_variable_first_then_loader_cuda_home_and_the_python_wheel()
    {
        var probe = new FakeLibraryProbe();
        probe.Environment["FLASHATTN_NCCL"] = "/opt/nccl/libnccl.so.2";
        probe.Environment["CUDA_HOME"] = "/opt/cuda";
        probe.Environment["VIRTUAL_ENV"] = "/venv";
        probe.Files.UnionWith(["/opt/cuda/lib64/libnccl.so.2", "/venv/lib/python3.12/site-packages/nvidia/nccl/lib/libnccl.so.2"]);
        probe.Directories.Add("/venv/lib/python3.12");
        var list = LibrarySearch.NcclCandidates(probe);
        Assert.Equal(["/opt/nccl/libnccl.so.2", "libnccl.so.2", "libnccl.so", "/opt/cuda/lib64/libnccl.so.2",
            "/venv/lib/python3.12/site-packages/nvidia/nccl/lib/libnccl.so.2"], list.Select(c => c.Path));
        Assert.True(list[0].IsExplicit);
        Assert.Equal("python site-packages", list[^1].Origin);
    }

    [Fact]
    public void Windows_has_only_the_explicit_file()
    {
        var probe = new FakeLibraryProbe { IsWindows = true };
        Assert.Empty(LibrarySearch.NcclCandidates(probe));
    }

    [Fact]
    public void Explicit_nccl_that_cannot_load_stops_the_search_with_one_line_naming_what_to_install()
    {
        var probe = new FakeLibraryProbe();
        probe.Environment["FLASHATTN_NCCL"] = "/nonexistent/libnccl.so.2";
        var (api, error) = NcclApi.Load(probe);
        Assert.Null(api);
        Assert.Equal(CudaUnavailableReason.NcclNotFound, error!.Reason);
        Assert.StartsWith("NCCL not found: FLASHATTN_NCCL=/nonexistent/libnccl.so.2 cannot be loaded", error.Message);
        Assert.Contains("nvidia-nccl-cu13", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [LinuxFact]
    public void A_library_that_is_not_nccl_is_reported_with_the_missing_exports_and_the_version_needed()
    {
        var probe = new FakeLibraryProbe();
        probe.Environment["FLASHATTN_NCCL"] = "libc.so.6";
        var (api, error) = NcclApi.Load(probe);
        Assert.Null(api);
        Assert.Equal(CudaUnavailableReason.NcclTooOld, error!.Reason);
        Assert.Contains("lacks ncclGetVersion", error.Message);
        Assert.Contains("needs NCCL 2.18.0 or newer", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Theory]
    [InlineData(21800, "2.18.0")]
    [InlineData(22703, "2.27.3")]
    [InlineData(2708, "2.7.8")]
    public void Versions_read_both_codings(int code, string text) => Assert.Equal(text, NcclApi.FormatVersion(code));

    [Fact]
    public void Error_codes_become_exceptions_with_the_name_and_nccl_text()
    {
        var e = NcclErrors.Exception(5, "ncclSend", "invalid usage (run with NCCL_DEBUG=WARN for details)", "rank 1");
        Assert.Equal(CudaApi.Nccl, e.Api);
        Assert.Equal("ncclSend failed: ncclInvalidUsage (invalid usage (run with NCCL_DEBUG=WARN for details)) rank 1", e.Message);
        Assert.Equal("ncclResult(42)", NcclErrors.Name(42));
    }

    [LinuxFact]
    public void Native_environment_is_set_once_and_a_user_value_is_kept()
    {
        string name = "FLASHATTN_TEST_" + Guid.NewGuid().ToString("N");
        Assert.True(NativeEnvironment.SetIfUnset(name, "0"));
        Assert.Equal("0", NativeEnvironment.Get(name));
        Assert.False(NativeEnvironment.SetIfUnset(name, "1"));
        Assert.Equal("0", NativeEnvironment.Get(name));
    }

    [Fact]
    public void Unique_ids_are_128_bytes_and_round_trip()
    {
        var bytes = Enumerable.Range(0, 128).Select(i => (byte)i).ToArray();
        Assert.Equal(bytes, NcclUniqueId.FromBytes(bytes).ToArray());
        Assert.Throws<AttentionArgumentException>(() => NcclUniqueId.FromBytes(new byte[12]));
    }

    [Fact]
    public void Strategy_heuristic_gathers_under_gqa_when_it_fits_and_rings_otherwise()
    {
        long h200 = 141L << 30;
        Assert.Equal(ContextParallelStrategy.AllGather, ContextParallelAttention.Choose(2, 1, 131072, 32, 8, 128, DataType.BFloat16, h200));
        Assert.Equal(ContextParallelStrategy.Ring, ContextParallelAttention.Choose(2, 1, 131072, 32, 32, 128, DataType.BFloat16, h200));
        Assert.Equal(ContextParallelStrategy.Ring, ContextParallelAttention.Choose(8, 64, 131072, 32, 8, 128, DataType.BFloat16, h200));
        Assert.Equal(ContextParallelStrategy.Ring, ContextParallelAttention.Choose(1, 1, 4096, 32, 8, 128, DataType.BFloat16, h200));
    }
}
