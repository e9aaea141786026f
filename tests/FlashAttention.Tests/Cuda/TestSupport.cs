using System.Security.Cryptography;
using System.Text;
using FlashAttention.Cuda.Compiler;

namespace FlashAttention.Tests.Cuda;

/// <summary>A temporary folder deleted at the end of the test.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Join(System.IO.Path.GetTempPath(), "flashattn-test-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>
/// A compiler that needs no NVRTC: its "cubin" is a hash of the request (so different requests give different
/// bytes) and each name expression's lowered name is derived from the expression. Counts its calls.
/// </summary>
internal sealed class FakeKernelCompiler : IKernelCompiler
{
    private int _calls;

    public string Identity { get; set; } = "fake 1.0";

    public int Calls => _calls;

    /// <summary>Makes each compile slow, to widen race windows in concurrency tests.</summary>
    public TimeSpan Delay { get; set; }

    /// <summary>When set, the next compile throws this.</summary>
    public Exception? FailNext { get; set; }

    public CompileRequest? LastRequest { get; private set; }

    public CompilerOutput Compile(CompileRequest request)
    {
        Interlocked.Increment(ref _calls);
        LastRequest = request;
        if (FailNext is { } failure)
        {
            FailNext = null;
            throw failure;
        }
        if (Delay > TimeSpan.Zero) Thread.Sleep(Delay);
        var text = new StringBuilder(request.Source.Main.Text);
        foreach (var h in request.Source.Headers) text.Append(h.Text);
        foreach (var o in request.Options) text.Append(o);
        foreach (var n in request.NameExpressions) text.Append(n);
        byte[] cubin = [.. "\u007fELF"u8, .. SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString()))];
        var lowered = request.NameExpressions.ToDictionary(n => n, Lower, StringComparer.Ordinal);
        return new CompilerOutput(cubin, lowered, $"fake log for {request.Source.Main.Name}");
    }

    public static string Lower(string expression) => "_Z_" + new string(expression.Select(c => char.IsLetterOrDigit(c) ? c : '_').ToArray());
}
