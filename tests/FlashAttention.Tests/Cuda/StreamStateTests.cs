using FlashAttention.Cuda;
using FlashAttention.Cuda.Launchers;

namespace FlashAttention.Tests.Cuda;

/// <summary>
/// The per-stream launch state (PerStream, StreamKey, the registry a disposed stream releases through), without a GPU:
/// any object stands for a device, keys are made directly. On a GPU, <c>flashattn verify</c>'s "streams" checks run
/// the same paths with real streams.
/// </summary>
public class StreamStateTests
{
    [Fact]
    public void The_legacy_stream_is_one_key_whatever_the_driver_says()
    {
        Assert.Equal(StreamKey.LegacyDefault, StreamKey.From(0, null));
        Assert.Equal(StreamKey.LegacyDefault, StreamKey.From(0, 7));
        Assert.Equal(StreamKey.LegacyDefault, StreamKey.Of(null));
    }

    [Fact]
    public void Streams_are_keyed_by_driver_id_and_by_handle_only_without_one()
    {
        var byId = StreamKey.From(0x5000, 3);
        Assert.Equal(new StreamKey(StreamKeyKind.DriverId, 3), byId);
        // A stream destroyed and a new one given the same handle: with driver IDs they stay apart.
        Assert.NotEqual(byId, StreamKey.From(0x5000, 4));
        var byHandle = StreamKey.From(0x5000, null);
        Assert.Equal(new StreamKey(StreamKeyKind.Handle, 0x5000), byHandle);
        // A driver ID that happens to equal some handle's value is still another stream's key.
        Assert.NotEqual(StreamKey.From(0x10, 0x20), StreamKey.From(0x20, null));
    }

    [Fact]
    public void Each_stream_and_device_gets_its_own_entry_and_keeps_it()
    {
        var state = new PerStream<object>();
        object device0 = new(), device1 = new();
        var a = StreamKey.From(0x100, 1);
        var b = StreamKey.From(0x200, 2);
        int created = 0;
        object Make() { created++; return new object(); }

        var first = state.For(device0, a, Make);
        Assert.Same(first, state.For(device0, a, Make));
        Assert.NotSame(first, state.For(device0, b, Make));
        Assert.NotSame(first, state.For(device1, a, Make));
        Assert.NotSame(first, state.For(device0, StreamKey.LegacyDefault, Make));
        Assert.Equal(4, created);
        Assert.Equal(3, state.Count(device0));
        Assert.Equal(1, state.Count(device1));
        Assert.Equal(0, state.Count(new object()));
    }

    [Fact]
    public void Releasing_a_stream_removes_its_entry_only()
    {
        var state = new PerStream<object>();
        object device = new();
        var a = StreamKey.From(0x100, 11);
        var b = StreamKey.From(0x200, 12);
        var entryA = state.For(device, a, () => new object());
        var entryB = state.For(device, b, () => new object());

        Assert.Same(entryA, state.Release(device, a));
        Assert.Null(state.Release(device, a));
        Assert.Null(state.Release(new object(), b));
        Assert.Equal(1, state.Count(device));
        Assert.Same(entryB, state.For(device, b, () => new object()));
        Assert.NotSame(entryA, state.For(device, a, () => new object()));
    }

    private sealed class Disposable : IDisposable
    {
        public bool Disposed { get; private set; }
        public void Dispose() => Disposed = true;
    }

    [Fact]
    public void A_released_stream_gives_back_what_every_holder_kept_for_it()
    {
        var workspaces = new PerStream<Disposable>();
        var counters = new PerStream<Disposable>();
        object device = new();
        var stream = StreamKey.From(0x300, 21);
        var other = StreamKey.From(0x400, 22);
        var w = workspaces.For(device, stream, () => new Disposable());
        var c = counters.For(device, stream, () => new Disposable());
        var kept = counters.For(device, other, () => new Disposable());

        var released = StreamScopedStates.Release(device, stream);

        Assert.Equal(2, released.Count);
        Assert.Contains(w, released);
        Assert.Contains(c, released);
        Assert.DoesNotContain(kept, released);
        Assert.Equal(0, workspaces.Count(device));
        Assert.Equal(1, counters.Count(device));
        Assert.Empty(StreamScopedStates.Release(device, stream));
        // Releasing hands the values to the caller (the stream's Dispose disposes them after its work has finished).
        Assert.False(w.Disposed);
    }
}
