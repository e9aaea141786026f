using FlashAttention.Cuda.Variants;

namespace FlashAttention.Lab.Tuning;

/// <summary>
/// The paper's ablation switches, for <c>flashattn bench --ablation</c>: each changes one of FlashAttention-3's ideas in
/// the default forward variant — warp specialisation and ping-pong switched off, the intra-warpgroup overlap forced on or
/// off (<see cref="IntraWarpgroupOverlap"/>; off by default at d64 and d128, where it measured slower).
/// </summary>
internal sealed record ForwardAblation(bool NoWarpSpecialization = false, bool? IntraWarpgroupOverlap = null, bool NoPingPong = false)
{
    public static readonly ForwardAblation None = new();

    /// <summary>The three switches of the paper's table, at d128 (the overlap switched to what d128 does not do by default).</summary>
    public static readonly ForwardAblation[] PaperTable =
    [
        new(IntraWarpgroupOverlap: ForwardVariants.For(128, ForwardVariants.LongKeysFrom, false).Loop != ForwardLoop.Overlapped),
        new(NoPingPong: true),
        new(NoWarpSpecialization: true),
    ];

    public string Name => this == None ? "full" : string.Join("+", new[]
    {
        NoWarpSpecialization ? "no-warp-specialization" : null,
        IntraWarpgroupOverlap switch { true => "with-intra-wg-overlap", false => "no-intra-wg-overlap", null => null },
        NoPingPong ? "no-ping-pong" : null,
    }.Where(s => s is not null));

    /// <summary>The variant with the switches applied.</summary>
    internal ForwardVariant Apply(ForwardVariant v)
    {
        if (this == None) return v;
        var loop = IntraWarpgroupOverlap switch
        {
            true => ForwardLoop.Overlapped,
            // the chained order is one of the loop without the overlap
            false => v.Loop == ForwardLoop.Overlapped ? ForwardLoop.Sequential : v.Loop,
            null => v.Loop,
        };
        return v with
        {
            Loop = loop,
            WarpSpecialized = v.WarpSpecialized && !NoWarpSpecialization,
            // Ping-pong hands the tensor cores between consumers that a producer keeps fed; without one it goes too.
            PingPong = v.PingPong && !NoPingPong && !NoWarpSpecialization,
        };
    }
}
