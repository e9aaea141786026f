using FlashAttention.Cuda;

namespace FlashAttention.Tests.Cuda;

public class CudaErrorTests
{
    [Theory]
    [InlineData(0, "CUDA_SUCCESS", "no error")]
    [InlineData(1, "CUDA_ERROR_INVALID_VALUE", "invalid argument")]
    [InlineData(2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory")]
    [InlineData(34, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library")]
    [InlineData(100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected")]
    [InlineData(209, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device")]
    [InlineData(500, "CUDA_ERROR_NOT_FOUND", "named symbol not found")]
    [InlineData(700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered")]
    [InlineData(701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch")]
    [InlineData(719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure")]
    [InlineData(912, "CUDA_ERROR_INVALID_CLUSTER_SIZE", "a kernel launch failed due to cluster misconfiguration")]
    [InlineData(999, "CUDA_ERROR_UNKNOWN", "unknown error")]
    public void Driver_codes_map_to_cuda_h_names_and_descriptions(int code, string name, string description)
    {
        Assert.Equal(name, CudaErrorCodes.DriverName(code));
        Assert.Equal(description, CudaErrorCodes.DriverDescription(code));
    }

    [Theory]
    [InlineData(0, "NVRTC_SUCCESS")]
    [InlineData(5, "NVRTC_ERROR_INVALID_OPTION")]
    [InlineData(6, "NVRTC_ERROR_COMPILATION")]
    [InlineData(7, "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE")]
    [InlineData(10, "NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID")]
    [InlineData(11, "NVRTC_ERROR_INTERNAL_ERROR")]
    [InlineData(17, "NVRTC_ERROR_TIME_TRACE_FILE_WRITE_FAILED")]
    public void Nvrtc_codes_map_to_nvrtc_h_names(int code, string name)
    {
        Assert.Equal(name, CudaErrorCodes.NvrtcName(code));
        Assert.False(string.IsNullOrWhiteSpace(CudaErrorCodes.NvrtcDescription(code)));
    }

    [Fact]
    public void Unknown_codes_are_named_by_number()
    {
        Assert.Equal("CUresult(12345)", CudaErrorCodes.DriverName(12345));
        Assert.Equal("nvrtcResult(99)", CudaErrorCodes.NvrtcName(99));
        Assert.Contains("unrecognised", CudaErrorCodes.DriverDescription(12345));
    }

    [Fact]
    public void Tables_have_a_unique_well_formed_name_per_code()
    {
        var driverNames = CudaErrorCodes.KnownDriverCodes.Select(CudaErrorCodes.DriverName).ToList();
        Assert.Equal(driverNames.Count, driverNames.Distinct().Count());
        Assert.All(driverNames, n => Assert.Matches("^CUDA_(SUCCESS|ERROR_[A-Z0-9_]+)$", n));
        var nvrtcNames = CudaErrorCodes.KnownNvrtcCodes.Select(CudaErrorCodes.NvrtcName).ToList();
        Assert.Equal(nvrtcNames.Count, nvrtcNames.Distinct().Count());
        Assert.All(nvrtcNames, n => Assert.Matches("^NVRTC_(SUCCESS|ERROR_[A-Z_]+)$", n));
        Assert.Equal(Enumerable.Range(0, 18), CudaErrorCodes.KnownNvrtcCodes.Order());
    }

    [Fact]
    public void Exception_message_names_call_code_description_and_context()
    {
        var e = new CudaException(CudaApi.Driver, "cuMemAlloc_v2", 2, CudaErrorCodes.DriverName(2), CudaErrorCodes.DriverDescription(2), "allocating 1073741824 bytes");
        Assert.Equal("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory) allocating 1073741824 bytes", e.Message);
        Assert.Equal(2, e.ErrorCode);
        Assert.Equal("cuMemAlloc_v2", e.Call);
        Assert.False(e.IsSticky);
    }

    [Fact]
    public void Sticky_errors_say_the_process_must_restart()
    {
        var e = new CudaException(CudaApi.Driver, "cuStreamSynchronize", 700, CudaErrorCodes.DriverName(700), CudaErrorCodes.DriverDescription(700));
        Assert.True(e.IsSticky);
        Assert.StartsWith("cuStreamSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered)", e.Message);
        Assert.Contains("restart the process", e.Message);
        Assert.False(new CudaException(CudaApi.Nvrtc, "nvrtcCompileProgram", 700, "x", "y").IsSticky); // 700 means nothing to NVRTC
    }

    [Fact]
    public void Compilation_exception_quotes_the_first_errors_of_the_log()
    {
        string log = "selftest.cu(3): warning: unused\nselftest.cu(7): error: identifier \"foo\" is undefined\n\n1 error detected";
        var e = new KernelCompilationException("selftest.cu", log, ["--gpu-architecture=sm_90a"], 6);
        Assert.Contains("nvrtcCompileProgram failed: NVRTC_ERROR_COMPILATION", e.Message);
        Assert.Contains("selftest.cu(7): error: identifier \"foo\" is undefined", e.Message);
        Assert.Contains("--gpu-architecture=sm_90a", e.Message);
        Assert.Equal(log, e.Log);
        Assert.Equal(CudaApi.Nvrtc, e.Api);
    }

    [Fact]
    public void Unsupported_gpu_message_names_what_is_needed_and_what_was_found()
    {
        Assert.Equal("requires an NVIDIA Hopper GPU (compute capability 9.0, e.g. H100/H200); found NVIDIA A100-SXM4-80GB with compute capability 8.0",
            CudaDevice.UnsupportedMessage("NVIDIA A100-SXM4-80GB", new ComputeCapability(8, 0)));
    }

    [Fact]
    public void Driver_versions_format_as_major_dot_minor()
    {
        Assert.Equal("13.0", CudaDriverApi.FormatVersion(13000));
        Assert.Equal("12.8", CudaDriverApi.FormatVersion(12080));
        Assert.Equal("unknown", CudaDriverApi.FormatVersion(0));
    }
}
