using Xunit.Abstractions;

namespace FlashAttention.Tests;

public class SkipReasonReportTests
{
    private sealed class Recorder : LongLivedMarshalByRefObject, IMessageSink
    {
        public List<IMessageSinkMessage> Messages { get; } = [];
        public bool OnMessage(IMessageSinkMessage message) { Messages.Add(message); return true; }
    }

    private sealed class Skipped(string reason) : LongLivedMarshalByRefObject, ITestSkipped
    {
        public string Reason => reason;
        public decimal ExecutionTime => 0;
        public string Output => "";
        public ITest Test => null!;
        public IEnumerable<ITestCase> TestCases => [];
        public ITestCase TestCase => null!;
        public ITestMethod TestMethod => null!;
        public ITestClass TestClass => null!;
        public ITestCollection TestCollection => null!;
        public ITestAssembly TestAssembly => null!;
    }

    private sealed class Finished : LongLivedMarshalByRefObject, ITestAssemblyFinished
    {
        public decimal ExecutionTime => 0;
        public int TestsFailed => 0;
        public int TestsRun => 3;
        public int TestsSkipped => 3;
        public IEnumerable<ITestCase> TestCases => [];
        public ITestAssembly TestAssembly => null!;
    }

    [Fact]
    public void Each_skip_reason_is_reported_once_with_its_count_before_the_run_ends()
    {
        var (inner, diagnostics) = (new Recorder(), new Recorder());
        var sink = new SkipReasonReport.Sink(inner, diagnostics);
        foreach (string reason in new[] { "needs a Hopper GPU: libcuda.so.1 not found", "needs NVRTC", "needs a Hopper GPU: libcuda.so.1 not found" })
            sink.OnMessage(new Skipped(reason));
        Assert.Empty(diagnostics.Messages);
        sink.OnMessage(new Finished());
        Assert.Equal(["2 tests skipped: needs a Hopper GPU: libcuda.so.1 not found", "1 test skipped: needs NVRTC"],
            diagnostics.Messages.Cast<IDiagnosticMessage>().Select(m => m.Message));
        Assert.Equal(4, inner.Messages.Count); // every message still reaches the runner
    }
}
