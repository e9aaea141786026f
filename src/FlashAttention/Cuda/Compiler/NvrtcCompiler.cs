using System.Runtime.InteropServices;
using System.Text;

namespace FlashAttention.Cuda.Compiler;

/// <summary>
/// Compiles with NVRTC: one program per <see cref="CompileRequest"/>, headers handed over by name, name expressions
/// registered before compilation and their lowered (mangled) names read after it, cubin and log returned.
/// </summary>
internal sealed unsafe class NvrtcCompiler : IKernelCompiler
{
    private readonly NvrtcApi _api;

    /// <summary>Uses the process's NVRTC; throws <see cref="CudaUnavailableException"/> when none is usable.</summary>
    public NvrtcCompiler() : this(NvrtcApi.Instance)
    {
    }

    internal NvrtcCompiler(NvrtcApi api)
    {
        _api = api;
    }

    /// <summary>"nvrtc 13.0": the version is part of every cache key, so a new NVRTC never reuses an older one's cubins.</summary>
    public string Identity => $"nvrtc {_api.VersionText}";

    public CompilerOutput Compile(CompileRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var api = _api;
        var strings = new NativeStrings();
        nint program = 0;
        try
        {
            var source = request.Source;
            int headerCount = source.Headers.Count;
            byte** headerTexts = strings.Array(source.Headers.Select(h => h.Text));
            byte** headerNames = strings.Array(source.Headers.Select(h => h.Name));
            api.Check(api.nvrtcCreateProgram(&program, strings.Get(source.Main.Text), strings.Get(source.Main.Name), headerCount, headerTexts, headerNames),
                nameof(api.nvrtcCreateProgram), $"for {source.Main.Name}");

            foreach (string expression in request.NameExpressions)
                api.Check(api.nvrtcAddNameExpression(program, strings.Get(expression)), nameof(api.nvrtcAddNameExpression), $"\"{expression}\" in {source.Main.Name}");

            byte** options = strings.Array(request.Options);
            int compiled = api.nvrtcCompileProgram(program, request.Options.Count, options);
            string log = ReadLog(program);
            if (compiled != 0)
            {
                if (compiled == 6) // NVRTC_ERROR_COMPILATION: the source is wrong; the log says where
                    throw new KernelCompilationException(source.Main.Name, log, request.Options, compiled);
                if (compiled == 7) // NVRTC_ERROR_BUILTIN_OPERATION_FAILURE: an installation problem, not the source's
                    throw new CudaUnavailableException(CudaUnavailableReason.NvrtcNotFound,
                        $"NVRTC {_api.VersionText} cannot load its builtins library (libnvrtc-builtins.so of the same version): " +
                        $"put it beside libnvrtc.so or on LD_LIBRARY_PATH{(log.Length > 0 ? " (NVRTC: " + log.Trim() + ")" : "")}");
                throw api.Error(compiled, nameof(api.nvrtcCompileProgram), $"compiling {source.Main.Name} with [{string.Join(' ', request.Options)}]{(log.Length > 0 ? ": " + log.Trim() : "")}");
            }

            nuint size;
            api.Check(api.nvrtcGetCUBINSize(program, &size), nameof(api.nvrtcGetCUBINSize), $"for {source.Main.Name}");
            if (size == 0)
                throw new InvalidOperationException($"NVRTC produced no cubin for {source.Main.Name}: the architecture option must name a real GPU (sm_90a), not a virtual one (compute_90a)");
            var cubin = new byte[(int)size];
            fixed (byte* p = cubin)
                api.Check(api.nvrtcGetCUBIN(program, p), nameof(api.nvrtcGetCUBIN), $"for {source.Main.Name}");

            var lowered = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string expression in request.NameExpressions)
            {
                byte* name = null;
                api.Check(api.nvrtcGetLoweredName(program, strings.Get(expression), &name), nameof(api.nvrtcGetLoweredName), $"\"{expression}\" in {source.Main.Name}");
                // The string belongs to the program and dies with it: copy now.
                lowered[expression] = Marshal.PtrToStringUTF8((nint)name) ?? throw new InvalidOperationException($"NVRTC returned no lowered name for {expression}");
            }
            return new CompilerOutput(cubin, lowered, log);
        }
        finally
        {
            if (program != 0) api.nvrtcDestroyProgram(&program);
            strings.Dispose();
        }
    }

    private string ReadLog(nint program)
    {
        nuint size;
        if (_api.nvrtcGetProgramLogSize(program, &size) != 0 || size <= 1) return "";
        var buffer = new byte[(int)size];
        fixed (byte* p = buffer)
            if (_api.nvrtcGetProgramLog(program, p) != 0) return "";
        return Encoding.UTF8.GetString(buffer, 0, buffer.Length - 1); // drop the terminating NUL
    }

    /// <summary>NUL-terminated UTF-8 copies of managed strings (and arrays of them) in native memory, freed together.</summary>
    private sealed class NativeStrings : IDisposable
    {
        private readonly List<nint> _blocks = [];

        public byte* Get(string text)
        {
            int length = Encoding.UTF8.GetByteCount(text);
            byte* p = (byte*)NativeMemory.Alloc((nuint)length + 1);
            _blocks.Add((nint)p);
            Encoding.UTF8.GetBytes(text, new Span<byte>(p, length));
            p[length] = 0;
            return p;
        }

        public byte** Array(IEnumerable<string> texts)
        {
            var items = texts.ToList();
            byte** array = (byte**)NativeMemory.Alloc((nuint)Math.Max(items.Count, 1), (nuint)sizeof(byte*));
            _blocks.Add((nint)array);
            for (int i = 0; i < items.Count; i++) array[i] = Get(items[i]);
            return items.Count == 0 ? null : array;
        }

        public void Dispose()
        {
            foreach (nint block in _blocks) NativeMemory.Free((void*)block);
            _blocks.Clear();
        }
    }
}
