using FlashAttention.Cuda.Compiler;
using FlashAttention.Lab;

namespace FlashAttention.Tests.Cuda;

public class KernelSourcesTests
{
    [Fact]
    public void The_library_embeds_its_kernels_by_path_and_no_lab_kernel()
    {
        var names = EmbeddedKernelSources.Instance.FileNames.ToList();
        Assert.Contains("fwd/flash_fwd.cu", names);
        Assert.Contains("bwd/flash_bwd.cu", names);
        Assert.Contains("common/ptx.cuh", names);
        Assert.DoesNotContain(names, n => n.StartsWith("probes/", StringComparison.Ordinal));
        var resolved = KernelSources.Resolve("fwd/flash_fwd.cu");
        Assert.Contains("common/ptx.cuh", resolved.Headers.Select(h => h.Name));
        Assert.Contains("fwd/fwd_config.cuh", resolved.Headers.Select(h => h.Name));
    }

    [Fact]
    public void Lab_kernels_resolve_their_own_headers_and_the_librarys()
    {
        var selftest = KernelSources.Resolve("probes/selftest.cu", LabKernelSources.Instance);
        Assert.Equal(["probes/selftest_util.cuh"], selftest.Headers.Select(h => h.Name));
        Assert.Contains("namespace fa_selftest", selftest.Headers[0].Text);
        var probes = KernelSources.Resolve("probes/primitives.cu", LabKernelSources.Instance);
        Assert.Contains("fwd/fwd_mainloop.cuh", probes.Headers.Select(h => h.Name));
    }

    [Fact]
    public void Every_embedded_source_resolves()
    {
        // Guards the whole kernel folder: a missing header or a toolkit include fails here, in CI, not on the GPU.
        foreach (string name in EmbeddedKernelSources.Instance.FileNames)
            KernelSources.Resolve(name);
        foreach (string name in LabKernelSources.Instance.FileNames)
            KernelSources.Resolve(name, LabKernelSources.Instance);
    }

    [Fact]
    public void Headers_resolve_transitively_depth_first_each_once()
    {
        var sources = new InMemoryKernelSources(new Dictionary<string, string>
        {
            ["main.cu"] = "#include \"a.cuh\"\n#include \"b.cuh\"\n__global__ void k() {}",
            ["a.cuh"] = "#pragma once\n#include \"c.cuh\"\n",
            ["b.cuh"] = "#pragma once\n  #  include \"c.cuh\"\n#include \"a.cuh\"\n",
            ["c.cuh"] = "#pragma once\n#include \"a.cuh\" // a cycle, resolved once\n",
            ["unused.cuh"] = "",
        });
        var resolved = KernelSources.Resolve("main.cu", sources);
        Assert.Equal(["a.cuh", "b.cuh", "c.cuh"], resolved.Headers.Select(h => h.Name).Order());
        Assert.Equal("a.cuh", resolved.Headers[0].Name);
        Assert.DoesNotContain(resolved.Headers, h => h.Name == "unused.cuh");
    }

    [Fact]
    public void Missing_header_names_the_including_file_and_line()
    {
        var sources = new InMemoryKernelSources(new Dictionary<string, string>
        {
            ["main.cu"] = "// header\n\n#include \"nope.cuh\"\n",
        });
        var e = Assert.Throws<FileNotFoundException>(() => KernelSources.Resolve("main.cu", sources));
        Assert.Contains("main.cu:3: #include \"nope.cuh\"", e.Message);
    }

    [Fact]
    public void Toolkit_headers_are_refused()
    {
        var sources = new InMemoryKernelSources(new Dictionary<string, string>
        {
            ["main.cu"] = "#include <cuda_fp16.h>\n",
        });
        var e = Assert.Throws<InvalidOperationException>(() => KernelSources.Resolve("main.cu", sources));
        Assert.Contains("main.cu:1: #include <cuda_fp16.h>", e.Message);
    }

    [Fact]
    public void Commented_out_includes_are_ignored_and_line_numbers_survive_block_comments()
    {
        string text = "// #include \"x.cuh\"\n/* #include <y.h>\n #include \"z.cuh\" */\nconst char* s = \"// not a comment\";\n#include \"real.cuh\"\n";
        var includes = KernelSources.ScanIncludes(text);
        var only = Assert.Single(includes);
        Assert.Equal("real.cuh", only.Name);
        Assert.Equal(5, only.Line);
        Assert.False(only.IsSystem);
    }

    [Fact]
    public void Missing_source_lists_what_exists()
    {
        var e = Assert.Throws<FileNotFoundException>(() => KernelSources.Load("nothing.cu"));
        Assert.Contains("fwd/flash_fwd.cu", e.Message);
    }
}
