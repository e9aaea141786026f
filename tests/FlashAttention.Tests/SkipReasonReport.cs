using System.Reflection;
using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: Xunit.TestFramework("FlashAttention.Tests.SkipReasonReport", "FlashAttention.Tests")]

namespace FlashAttention.Tests;

/// <summary>
/// xunit's own framework, plus one line per distinct skip reason when the run ends ("19 tests skipped: needs an NVIDIA
/// Hopper GPU …"): at dotnet test's default verbosity a skipped test shows only "[SKIP]", so the reasons would stay hidden.
/// The lines go out as diagnostic messages, which xunit.runner.json turns on.
/// </summary>
public sealed class SkipReasonReport(IMessageSink diagnosticMessageSink) : XunitTestFramework(diagnosticMessageSink)
{
    protected override ITestFrameworkExecutor CreateExecutor(AssemblyName assemblyName)
        => new Executor(assemblyName, SourceInformationProvider, DiagnosticMessageSink);

    private sealed class Executor(AssemblyName assemblyName, ISourceInformationProvider sourceInformationProvider, IMessageSink diagnosticMessageSink)
        : XunitTestFrameworkExecutor(assemblyName, sourceInformationProvider, diagnosticMessageSink)
    {
        protected override void RunTestCases(IEnumerable<IXunitTestCase> testCases, IMessageSink executionMessageSink, ITestFrameworkExecutionOptions executionOptions)
            => base.RunTestCases(testCases, new Sink(executionMessageSink, DiagnosticMessageSink), executionOptions);
    }

    /// <summary>Passes every message on; counts skip reasons and reports them before the assembly's end.</summary>
    internal sealed class Sink(IMessageSink inner, IMessageSink diagnostics) : LongLivedMarshalByRefObject, IMessageSink
    {
        private readonly Dictionary<string, int> _reasons = [];

        public bool OnMessage(IMessageSinkMessage message)
        {
            if (message is ITestSkipped skipped)
                lock (_reasons) _reasons[skipped.Reason] = _reasons.GetValueOrDefault(skipped.Reason) + 1;
            else if (message is ITestAssemblyFinished)
                lock (_reasons)
                    foreach (var (reason, count) in _reasons.OrderByDescending(r => r.Value))
                        diagnostics.OnMessage(new DiagnosticMessage($"{count} test{(count == 1 ? "" : "s")} skipped: {reason}"));
            return inner.OnMessage(message);
        }
    }
}
