using FlashAttention.Cuda;
using FlashAttention.Cuda.Compiler;

namespace FlashAttention.Tests.Cuda;

public class KernelCompilerTests
{
    private static InMemoryKernelSources Sources(string mainText = "#include \"h.cuh\"\ntemplate <int N> __global__ void k() {}", string headerText = "#pragma once\n")
        => new(new Dictionary<string, string> { ["k.cu"] = mainText, ["h.cuh"] = headerText });

    private static readonly KernelSpec Spec = new("k.cu", ["k<1>", "k<2>"]);

    [Fact]
    public void Name_expressions_are_registered_and_lowered_names_kept()
    {
        var fake = new FakeKernelCompiler();
        var compiler = new KernelCompiler(fake, "sm_90a", cache: null, Sources());
        var module = compiler.GetOrCompile(Spec);
        Assert.Equal(["k<1>", "k<2>"], fake.LastRequest!.NameExpressions);
        Assert.Equal(["h.cuh"], fake.LastRequest.Source.Headers.Select(h => h.Name));
        Assert.Equal("--gpu-architecture=sm_90a", fake.LastRequest.Options[0]);
        Assert.Equal(FakeKernelCompiler.Lower("k<2>"), module.LoweredName("k<2>"));
        Assert.Throws<KeyNotFoundException>(() => module.LoweredName("k<3>"));
        Assert.Equal(KernelOrigin.Compiled, module.Origin);
        Assert.Equal("fake log for k.cu", module.Log);
        Assert.Matches("^[0-9a-f]{64}$", module.CacheKey);
    }

    [Fact]
    public void Memory_then_disk_then_compile()
    {
        using var dir = new TempDirectory();
        var fake = new FakeKernelCompiler();
        var first = new KernelCompiler(fake, "sm_90a", new KernelDiskCache(dir.Path), Sources());
        var compiled = first.GetOrCompile(Spec);
        var again = first.GetOrCompile(Spec);
        Assert.Equal(KernelOrigin.Compiled, compiled.Origin);
        Assert.Equal(KernelOrigin.Memory, again.Origin);
        Assert.Equal(1, fake.Calls);

        // A new process (a new front end on the same folder) reads the entry instead of compiling.
        var second = new KernelCompiler(fake, "sm_90a", new KernelDiskCache(dir.Path), Sources());
        var fromDisk = second.GetOrCompile(Spec);
        Assert.Equal(KernelOrigin.DiskCache, fromDisk.Origin);
        Assert.Equal(1, fake.Calls);
        Assert.Equal(compiled.Cubin, fromDisk.Cubin);
        Assert.Equal(compiled.LoweredNames.OrderBy(p => p.Key), fromDisk.LoweredNames.OrderBy(p => p.Key));
        Assert.Equal(compiled.Log, fromDisk.Log);
        Assert.Equal(compiled.CompileTime, fromDisk.CompileTime);
    }

    [Fact]
    public void A_corrupt_entry_is_recompiled_and_replaced()
    {
        using var dir = new TempDirectory();
        var fake = new FakeKernelCompiler();
        var cache = new KernelDiskCache(dir.Path);
        var module = new KernelCompiler(fake, "sm_90a", cache, Sources()).GetOrCompile(Spec);
        string path = cache.PathFor(module.CacheKey);
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..40]); // truncated, as by a crash of a non-atomic writer

        var warnings = new List<string>();
        var compiler = new KernelCompiler(fake, "sm_90a", new KernelDiskCache(dir.Path), Sources()) { Warning = warnings.Add };
        var recompiled = compiler.GetOrCompile(Spec);
        Assert.Equal(KernelOrigin.Compiled, recompiled.Origin);
        Assert.Equal(2, fake.Calls);
        Assert.Contains(warnings, w => w.Contains("damaged"));
        Assert.NotNull(new KernelDiskCache(dir.Path).TryRead(module.CacheKey, out _)); // replaced by a good entry
    }

    [Fact]
    public void A_directory_in_an_entrys_place_is_reported_each_time_the_kernel_is_compiled()
    {
        using var dir = new TempDirectory();
        var fake = new FakeKernelCompiler();
        var cache = new KernelDiskCache(dir.Path);
        var (_, key) = new KernelCompiler(fake, "sm_90a", cache, Sources()).Prepare(Spec);
        Directory.CreateDirectory(cache.PathFor(key));

        var warnings = new List<string>();
        var module = new KernelCompiler(fake, "sm_90a", cache, Sources()) { Warning = warnings.Add }.GetOrCompile(Spec);
        Assert.Equal(KernelOrigin.Compiled, module.Origin);
        Assert.Contains(warnings, w => w.Contains("is a directory, not a file"));
        Assert.Contains(warnings, w => w.Contains("a directory is in its place"));
    }

    [Fact]
    public void An_entry_without_a_wanted_lowered_name_is_recompiled()
    {
        using var dir = new TempDirectory();
        var fake = new FakeKernelCompiler();
        var cache = new KernelDiskCache(dir.Path);
        var compiler = new KernelCompiler(fake, "sm_90a", cache, Sources());
        var (_, key) = compiler.Prepare(Spec);
        cache.TryWrite(new KernelCacheEntry(key, [new("k<1>", "_Z_k_1_")], "", TimeSpan.Zero, [1, 2, 3]), out _);
        var module = compiler.GetOrCompile(Spec);
        Assert.Equal(KernelOrigin.Compiled, module.Origin);
        Assert.Equal(1, fake.Calls);
    }

    [Fact]
    public void Any_input_change_changes_the_key()
    {
        var fake = new FakeKernelCompiler();
        string Key(InMemoryKernelSources sources, KernelSpec spec, string arch = "sm_90a", string identity = "fake 1.0")
        {
            fake.Identity = identity;
            return new KernelCompiler(fake, arch, null, sources).Prepare(spec).Key;
        }
        string baseline = Key(Sources(), Spec);
        var variants = new Dictionary<string, string>
        {
            ["main source text"] = Key(Sources(mainText: "#include \"h.cuh\"\ntemplate <int N> __global__ void k() { }"), Spec),
            ["header text"] = Key(Sources(headerText: "#pragma once\n// changed\n"), Spec),
            ["name expressions"] = Key(Sources(), new KernelSpec("k.cu", ["k<1>"])),
            ["name expression order"] = Key(Sources(), new KernelSpec("k.cu", ["k<2>", "k<1>"])),
            ["options"] = Key(Sources(), new KernelSpec("k.cu", ["k<1>", "k<2>"], new CompileOptions { FastMath = true })),
            ["defines"] = Key(Sources(), new KernelSpec("k.cu", ["k<1>", "k<2>"], new CompileOptions { Defines = [new("X", "1")] })),
            ["architecture"] = Key(Sources(), Spec, arch: "sm_100a"),
            ["compiler version"] = Key(Sources(), Spec, identity: "fake 1.1"),
        };
        foreach (var (what, key) in variants) Assert.True(key != baseline, $"changing the {what} must change the key");
        Assert.Equal(variants.Count, variants.Values.Distinct().Count());
        Assert.Equal(baseline, Key(Sources(), new KernelSpec("k.cu", ["k<1>", "k<2>"]))); // and nothing else does
    }

    [Fact]
    public void Key_fields_cannot_run_into_each_other()
    {
        // Same concatenated text, different split between source and header: length prefixes keep the keys apart.
        var a = new ResolvedKernelSource(new KernelSourceFile("k.cu", "ab"), [new KernelSourceFile("h.cuh", "c")]);
        var b = new ResolvedKernelSource(new KernelSourceFile("k.cu", "a"), [new KernelSourceFile("h.cuh", "bc")]);
        Assert.NotEqual(
            KernelCompiler.ComputeKey(new CompileRequest(a, ["-x"], ["k"]), "c", "sm_90a"),
            KernelCompiler.ComputeKey(new CompileRequest(b, ["-x"], ["k"]), "c", "sm_90a"));
    }

    [Fact]
    public void Concurrent_requests_compile_once()
    {
        var fake = new FakeKernelCompiler { Delay = TimeSpan.FromMilliseconds(200) };
        var compiler = new KernelCompiler(fake, "sm_90a", null, Sources());
        var results = new CompiledKernelModule[8];
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => results[i] = compiler.GetOrCompile(Spec));
        Assert.Equal(1, fake.Calls);
        Assert.Single(results, r => r.Origin == KernelOrigin.Compiled);
        Assert.All(results, r => Assert.Same(results[0].Cubin, r.Cubin));
    }

    [Fact]
    public void A_failed_compile_is_not_remembered()
    {
        var fake = new FakeKernelCompiler { FailNext = new KernelCompilationException("k.cu", "k.cu(2): error: boom", ["--x"], 6) };
        var compiler = new KernelCompiler(fake, "sm_90a", null, Sources());
        var e = Assert.Throws<KernelCompilationException>(() => compiler.GetOrCompile(Spec));
        Assert.Contains("boom", e.Message);
        Assert.Equal(KernelOrigin.Compiled, compiler.GetOrCompile(Spec).Origin);
        Assert.Equal(2, fake.Calls);
    }

    [Fact]
    public void An_unwritable_cache_warns_but_does_not_fail()
    {
        using var dir = new TempDirectory();
        string blocker = Path.Join(dir.Path, "file");
        File.WriteAllText(blocker, "not a folder");
        var warnings = new List<string>();
        var compiler = new KernelCompiler(new FakeKernelCompiler(), "sm_90a", new KernelDiskCache(Path.Join(blocker, "cache")), Sources()) { Warning = warnings.Add };
        Assert.Equal(KernelOrigin.Compiled, compiler.GetOrCompile(Spec).Origin);
        Assert.Contains(warnings, w => w.StartsWith("cannot write cache entry", StringComparison.Ordinal));
    }

    [Fact]
    public void The_real_selftest_source_keys_and_compiles_through_the_fake()
    {
        var fake = new FakeKernelCompiler();
        var module = new KernelCompiler(fake, CudaDevice.HopperArchitecture, null).GetOrCompile(SelftestKernels.Axpy);
        Assert.Equal(["probes/selftest_util.cuh"], fake.LastRequest!.Source.Headers.Select(h => h.Name));
        Assert.Equal(2, module.LoweredNames.Count);
    }
}
