using FlashAttention.Cuda;
using FlashAttention.Cuda.Compiler;

namespace FlashAttention.Tests.Cuda;

/// <summary>
/// The host layer end to end on a Hopper GPU: NVRTC compile of the embedded selftest.cu, the disk cache, module
/// loading, argument packing, large shared memory, cluster launches, memory and events. Skipped (with the reason)
/// where there is no GPU.
/// </summary>
public sealed class GpuSmokeTests : IDisposable
{
    private readonly TempDirectory _cacheDir = new();

    public void Dispose() => _cacheDir.Dispose();

    private KernelCompiler NewCompiler() => new(new NvrtcCompiler(), CudaDevice.HopperArchitecture, new KernelDiskCache(_cacheDir.Path));

    private static CudaDevice Device => GpuAvailability.Device;

    [HopperFact]
    public void Device_reports_hopper_properties()
    {
        var d = Device;
        Assert.True(d.IsHopper);
        d.EnsureSupported();
        Assert.Equal(new ComputeCapability(9, 0), d.ComputeCapability);
        Assert.InRange(d.MultiprocessorCount, 100, 200);
        Assert.True(d.MaxSharedMemoryPerBlockOptIn >= 227 * 1024);
        Assert.True(d.L2CacheBytes >= 40 << 20);
        Assert.True(d.SupportsClusterLaunch);
        Assert.True(d.DriverVersion >= 12000);
        var (free, total) = d.GetMemoryInfo();
        Assert.InRange(free, 1, total);
        Assert.Equal(d.TotalMemoryBytes, total);
    }

    [HopperFact]
    public void Axpy_compiles_runs_and_is_read_back_from_the_cache()
    {
        const int n = 100_003; // not a multiple of the block size: the tail is guarded
        var x = Enumerable.Range(0, n).Select(i => (float)Math.Sin(i)).ToArray();
        var y = Enumerable.Range(0, n).Select(i => (float)Math.Cos(i)).ToArray();

        var compiled = NewCompiler().GetOrCompile(SelftestKernels.Axpy);
        Assert.Equal(KernelOrigin.Compiled, compiled.Origin);
        Run(compiled);

        var cached = NewCompiler().GetOrCompile(SelftestKernels.Axpy); // a fresh front end: from disk, not memory
        Assert.Equal(KernelOrigin.DiskCache, cached.Origin);
        Assert.Equal(compiled.Cubin, cached.Cubin);
        Run(cached);

        void Run(CompiledKernelModule module)
        {
            using var cuda = CudaModule.Load(Device.Context, module.Cubin, "selftest.cu");
            var kernel = cuda.GetKernel(module.LoweredName("axpy<float>"), "axpy<float>");
            Assert.Equal(90, kernel.BinaryVersion);
            using var dx = CudaTensor<float>.FromHost(x, [n], Device);
            using var dy = CudaTensor<float>.FromHost(y, [n], Device);
            using var stream = new CudaStream(Device);
            var args = new KernelArguments().Add(2.5f).Add(dx.Buffer).Add(dy.Buffer).Add(n);
            kernel.Launch(new LaunchConfig((n + 255) / 256, 256, Stream: stream), args);
            stream.Synchronize();
            var result = dy.ToArray();
            for (int i = 0; i < n; i++) Assert.Equal(2.5f * x[i] + y[i], result[i], 1e-6f);
        }
    }

    [HopperFact]
    public void Double_instantiation_runs_too()
    {
        var loaded = new KernelModuleCache(Device, NewCompiler()).Load(SelftestKernels.Axpy);
        var kernel = loaded.GetKernel("axpy<double>");
        double[] x = [1, 2, 3], y = [10, 20, 30];
        using var dx = new DeviceBuffer(3 * sizeof(double), Device); // double has no DataType: plain buffers
        using var dy = new DeviceBuffer(3 * sizeof(double), Device);
        dx.CopyFrom<double>(x);
        dy.CopyFrom<double>(y);
        kernel.Launch(new LaunchConfig(1, 32), new KernelArguments().Add(-1.0).Add(dx).Add(dy).Add(3));
        Device.Synchronize();
        var result = new double[3];
        dy.CopyTo<double>(result);
        Assert.Equal([9.0, 18, 27], result);
        Assert.True(loaded.LoadTime > TimeSpan.Zero);
    }

    [HopperFact]
    public void A_128_byte_aligned_argument_arrives_intact()
    {
        // Same size and alignment as a TMA descriptor, followed by a scalar: checks KernelArguments' 64-byte packing.
        var blob = new TensorMapDescriptor();
        for (int i = 0; i < 16; i++) blob[i] = ((ulong)(2 * i + 1) << 32) | (uint)(2 * i);
        var kernel = new KernelModuleCache(Device, NewCompiler()).GetKernel(SelftestKernels.All, "copy_param_blob");
        if (kernel.ParameterSizes(3) is { } sizes) Assert.Equal([128, 4, 8], sizes);
        using var output = new DeviceBuffer(33 * sizeof(uint), Device);
        output.Fill(0xFFFFFFFFu);
        kernel.Launch(new LaunchConfig(1, 32), new KernelArguments().Add(blob).Add(0xC0FFEEu).Add(output));
        Device.Synchronize();
        var words = new uint[33];
        output.CopyTo<uint>(words);
        Assert.Equal(Enumerable.Range(0, 32).Select(i => (uint)i), words[..32]);
        Assert.Equal(0xC0FFEEu, words[32]);
    }

    [HopperWithParameterInfoFact]
    public void Wrong_arguments_are_refused_when_the_driver_reports_parameter_sizes()
    {
        var kernel = new KernelModuleCache(Device, NewCompiler()).GetKernel(SelftestKernels.Axpy, "axpy<float>");
        Assert.Equal([4, 8, 8, 4], kernel.ParameterSizes(4));
        var e = Assert.Throws<ArgumentException>(() => kernel.Launch(new LaunchConfig(1, 32), new KernelArguments().Add(2.5).Add(0UL).Add(0UL).Add(1)));
        Assert.Contains("axpy<float> takes 4 parameter(s) of sizes [4, 8, 8, 4]", e.Message);
    }

    [HopperFact]
    public void Dynamic_shared_memory_above_48KB_is_opted_in()
    {
        const int n = 50_000; // 200,000 bytes of shared memory
        var kernel = new KernelModuleCache(Device, NewCompiler()).GetKernel(SelftestKernels.All, "reverse_in_shared");
        var input = Enumerable.Range(0, n).Select(i => (float)i).ToArray();
        using var din = CudaTensor<float>.FromHost(input, [n], Device);
        using var dout = new CudaTensor<float>(Device, null, n);
        kernel.Launch(new LaunchConfig(1, 1024, DynamicSharedBytes: n * sizeof(float)), new KernelArguments().Add(din.Buffer).Add(dout.Buffer).Add(n));
        Device.Synchronize();
        Assert.Equal(input.Reverse(), dout.ToArray());
        Assert.Throws<ArgumentException>(() => kernel.Launch(new LaunchConfig(1, 32, DynamicSharedBytes: 300 * 1024), new KernelArguments().Add(din.Buffer).Add(dout.Buffer).Add(1)));
    }

    [HopperFact]
    public void Cluster_launches_go_through_cuLaunchKernelEx()
    {
        var kernel = new KernelModuleCache(Device, NewCompiler()).GetKernel(SelftestKernels.All, "report_cluster_rank");
        const int blocks = 8;
        using var output = new DeviceBuffer(2 * blocks * sizeof(uint), Device);
        using var stream = new CudaStream(Device);
        kernel.Launch(new LaunchConfig(blocks, 32, Stream: stream, Cluster: new Dim3(2)), new KernelArguments().Add(output));
        stream.Synchronize();
        var words = new uint[2 * blocks];
        output.CopyTo<uint>(words);
        for (int b = 0; b < blocks; b++)
        {
            Assert.Equal((uint)(b % 2), words[2 * b]);
            Assert.Equal(2u, words[2 * b + 1]);
        }
        Assert.Throws<ArgumentException>(() => kernel.Launch(new LaunchConfig(3, 32, Cluster: new Dim3(2)), new KernelArguments().Add(output)));
    }

    [HopperFact]
    public void Ptxas_verbose_figures_reach_the_log()
    {
        var module = NewCompiler().GetOrCompile(SelftestKernels.All);
        var info = module.ParsePtxasInfo();
        Assert.Contains(info, i => i.Function == module.LoweredName("axpy<float>") && i.Registers > 0);
        Assert.All(info, i => Assert.False(i.Spills, $"{i.Function} spills"));
    }

    [HopperFact]
    public void Compilation_errors_carry_the_log()
    {
        var sources = new InMemoryKernelSources(new Dictionary<string, string> { ["bad.cu"] = "__global__ void k() { undefined_thing(); }" });
        var compiler = new KernelCompiler(new NvrtcCompiler(), CudaDevice.HopperArchitecture, null, sources);
        var e = Assert.Throws<KernelCompilationException>(() => compiler.GetOrCompile(new KernelSpec("bad.cu", ["k"])));
        Assert.Contains("undefined_thing", e.Log);
        Assert.Contains("NVRTC_ERROR_COMPILATION", e.Message);
    }

    [HopperFact]
    public void Memory_copies_fills_and_events()
    {
        using var buffer = new DeviceBuffer(1 << 20, Device);
        var data = Enumerable.Range(0, 1 << 18).Select(i => i * 3).ToArray();
        using var stream = new CudaStream(Device);
        buffer.CopyFrom<int>(data, 0, stream);
        var back = new int[data.Length];
        buffer.CopyTo<int>(back, 0, stream);
        Assert.Equal(data, back);

        using var copy = new DeviceBuffer(1 << 20, Device);
        copy.CopyFrom(buffer);
        copy.CopyTo<int>(back);
        Assert.Equal(data, back);

        float ms = CudaEvent.Time(stream, () => buffer.Fill(0x7F, stream));
        Assert.True(ms >= 0);
        var bytes = new byte[16];
        buffer.CopyTo<byte>(bytes, byteOffset: 1000, stream);
        Assert.All(bytes, b => Assert.Equal(0x7F, b));

        buffer.Fill(0x7FC00000u); // float NaN pattern: the poisoning verify will use
        var floats = new float[4];
        buffer.CopyTo<float>(floats);
        Assert.All(floats, f => Assert.True(float.IsNaN(f)));

        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.CopyTo<byte>(new byte[16], byteOffset: (1 << 20) - 8));
    }

    [HopperFact]
    public void Out_of_memory_is_reported_with_the_call_and_size()
    {
        var e = Assert.Throws<CudaException>(() => new DeviceBuffer(1L << 50, Device));
        Assert.Equal("cuMemAlloc_v2", e.Call);
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", e.ErrorName);
        Assert.Contains($"allocating {1L << 50} bytes", e.Message);
    }

    [HopperFact]
    public void Leaked_buffers_are_freed_by_the_finalizer()
    {
        var (freeBefore, _) = Device.GetMemoryInfo();
        static void Leak()
        {
            for (int i = 0; i < 8; i++) _ = new DeviceBuffer(256L << 20, Device);
        }
        Leak();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var (freeAfter, _) = Device.GetMemoryInfo();
        Assert.True(freeAfter > freeBefore - (512L << 20), $"free memory fell from {freeBefore} to {freeAfter}: leaked buffers were not freed");
    }

    [HopperFact]
    public void Tensor_maps_encode_for_a_real_buffer()
    {
        using var buffer = new DeviceBuffer(2L * 1024 * 8 * 128 * 2, Device);
        var map = TensorMap.EncodeTiled(new TensorMapTiledSpec
        {
            DataType = TensorMapDataType.BFloat16,
            GlobalAddress = (ulong)buffer.Pointer,
            GlobalDims = [128, 1024, 8, 2],
            GlobalStridesBytes = [8 * 128 * 2, 128 * 2, 1024UL * 8 * 128 * 2],
            BoxDims = [64, 64, 1, 1],
            Swizzle = TensorMapSwizzle.Swizzle128B,
        }, Device);
        bool anyNonZero = false;
        for (int i = 0; i < 16; i++) anyNonZero |= map[i] != 0;
        Assert.True(anyNonZero);
    }

    [HopperFact]
    public void Probe_reports_everything()
    {
        var report = CudaEnvironment.Probe();
        Assert.True(report.IsUsable);
        Assert.NotNull(report.DriverPath);
        Assert.NotNull(report.NvrtcPath);
        Assert.Contains("sm_90", report.NvrtcArchitectures);
        Assert.Contains(report.Devices, d => d.IsSupported && d.Problem is null);
    }
}
