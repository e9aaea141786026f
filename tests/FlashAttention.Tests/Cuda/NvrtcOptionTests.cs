using FlashAttention.Cuda.Compiler;

namespace FlashAttention.Tests.Cuda;

public class NvrtcOptionTests
{
    [Fact]
    public void Defaults_target_sm90a_in_cpp20_with_device_default()
    {
        Assert.Equal(["--gpu-architecture=sm_90a", "--std=c++20", "--device-as-default-execution-space"],
            NvrtcOptionBuilder.Build("sm_90a", CompileOptions.Default));
    }

    [Fact]
    public void Every_setting_appears_once_in_a_fixed_order()
    {
        var options = new CompileOptions
        {
            FastMath = true,
            LineInfo = true,
            PtxasVerbose = true,
            MaxRegisterCount = 128,
            Defines = [new("HEAD_DIM", "128"), new("CAUSAL", null)],
            ExtraOptions = ["--extra-device-vectorization"],
        };
        Assert.Equal(
        [
            "--gpu-architecture=sm_90a", "--std=c++20", "--device-as-default-execution-space", "--use_fast_math",
            "--generate-line-info", "--ptxas-options=-v", "--maxrregcount=128", "-DHEAD_DIM=128", "-DCAUSAL",
            "--extra-device-vectorization",
        ], NvrtcOptionBuilder.Build("sm_90a", options));
    }

    [Fact]
    public void Fast_math_and_default_device_are_opt_in_and_out()
    {
        var options = NvrtcOptionBuilder.Build("sm_90a", CompileOptions.Default with { DeviceAsDefaultExecutionSpace = false, LanguageStandard = "c++20" });
        Assert.DoesNotContain("--use_fast_math", options);
        Assert.DoesNotContain("--device-as-default-execution-space", options);
        Assert.Contains("--std=c++20", options);
    }

    [Theory]
    [InlineData("compute_90a")] // virtual: NVRTC would emit PTX only, and nvrtcGetCUBIN would be empty
    [InlineData("sm90a")]
    [InlineData("")]
    [InlineData("sm_90a --use_fast_math")]
    public void Architectures_must_be_real(string arch)
        => Assert.Throws<ArgumentException>(() => NvrtcOptionBuilder.Build(arch, CompileOptions.Default));

    [Fact]
    public void Bad_settings_are_refused()
    {
        Assert.Throws<ArgumentException>(() => NvrtcOptionBuilder.Build("sm_90a", new CompileOptions { Defines = [new("1BAD", "x")] }));
        Assert.Throws<ArgumentException>(() => NvrtcOptionBuilder.Build("sm_90a", new CompileOptions { Defines = [new("OK", "a\nb")] }));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvrtcOptionBuilder.Build("sm_90a", new CompileOptions { MaxRegisterCount = 300 }));
        Assert.Throws<ArgumentException>(() => NvrtcOptionBuilder.Build("sm_90a", new CompileOptions { ExtraOptions = [" "] }));
        Assert.Throws<ArgumentException>(() => NvrtcOptionBuilder.Build("sm_90a", new CompileOptions { LanguageStandard = "gnu++17" }));
    }

    [Fact]
    public void Spec_requires_distinct_name_expressions()
    {
        Assert.Throws<ArgumentException>(() => new KernelSpec("selftest.cu", []));
        Assert.Throws<ArgumentException>(() => new KernelSpec("selftest.cu", ["axpy<float>", "axpy<float>"]));
        Assert.Throws<ArgumentException>(() => new KernelSpec(" ", ["axpy<float>"]));
        var spec = new KernelSpec("selftest.cu", ["axpy<float>", "axpy<double>"]);
        Assert.Same(CompileOptions.Default, spec.Options);
        Assert.Equal("selftest.cu [axpy<float>, axpy<double>]", spec.ToString());
    }
}

public class PtxasInfoTests
{
    private const string Log = """
        ptxas info    : 0 bytes gmem
        ptxas info    : Compiling entry function '_Z4axpyIfEvT_PKS0_PS0_i' for 'sm_90a'
        ptxas info    : Function properties for _Z4axpyIfEvT_PKS0_PS0_i
            0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        ptxas info    : Used 10 registers, used 0 barriers, 380 bytes cmem[0]
        ptxas info    : Compiling entry function '_Z9flash_fwdILi128EEvv' for 'sm_90a'
        ptxas info    : Function properties for _Z9flash_fwdILi128EEvv
            48 bytes stack frame, 44 bytes spill stores, 40 bytes spill loads
        ptxas info    : Used 168 registers, used 1 barriers, 48 bytes cumulative stack size, 16384 bytes smem, 512 bytes cmem[0]
        """;

    [Fact]
    public void Registers_and_spills_are_read_per_kernel()
    {
        var info = PtxasInfo.Parse(Log);
        Assert.Equal(2, info.Count);
        Assert.Equal(new PtxasInfo("_Z4axpyIfEvT_PKS0_PS0_i", 10, 0, 0, 0, 0), info[0]);
        Assert.False(info[0].Spills);
        Assert.Equal(new PtxasInfo("_Z9flash_fwdILi128EEvv", 168, 44, 40, 48, 16384), info[1]);
        Assert.True(info[1].Spills);
    }

    [Fact]
    public void Logs_without_ptxas_lines_give_nothing()
    {
        Assert.Empty(PtxasInfo.Parse(""));
        Assert.Empty(PtxasInfo.Parse(null));
        Assert.Empty(PtxasInfo.Parse("selftest.cu(3): warning: something"));
    }
}
