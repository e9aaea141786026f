namespace FlashAttention.Cuda.Launchers;

/// <summary>
/// One forward kernel variant: the template arguments of <c>fa::FwdConfig</c> (Cuda/Kernels/flash_fwd_config.cuh)
/// and the launch geometry they imply. The shared-memory formula mirrors the header's.
/// </summary>
internal sealed record ForwardKernelConfig(int HeadDim, int BlockN, int Stages, bool IntraWgOverlap, bool PingPong,
    bool OAliasQ, bool WarpSpecialized, int QStages = 1, bool QInRegisters = false, bool ChainPvS = false, int OPasses = 1,
    int ConsumerWarpgroups = 2, bool CrossTile = false)
{
    /// <summary>Query rows per tile: 64 per consumer warpgroup.</summary>
    public int BlockM => 64 * ConsumerWarpgroups;
    public int Threads => 128 * (ConsumerWarpgroups + (WarpSpecialized ? 1 : 0));

    public int SharedMemoryBytes
    {
        get
        {
            int slabs = HeadDim / 64, qBytes = BlockM * 128 * slabs, kBytes = BlockN * 128 * slabs;
            int barriers = 8 * (2 * QStages + 4 * Stages), tileSlots = 8 * QStages;
            return 1024 + QStages * qBytes + 2 * Stages * kBytes + (OAliasQ ? 0 : qBytes / OPasses) + barriers + tileSlots;
        }
    }

    public string NameExpression(DataType type)
        => $"fa::flash_fwd_kernel<fa::FwdConfig<{KernelNames.ElementTag(type)}, {HeadDim}, {BlockN}, {Stages}, " +
           $"{KernelNames.Bool(IntraWgOverlap)}, {KernelNames.Bool(PingPong)}, {KernelNames.Bool(OAliasQ)}, {KernelNames.Bool(WarpSpecialized)}, {QStages}, {KernelNames.Bool(QInRegisters)}" +
           (ChainPvS || OPasses != 1 || ConsumerWarpgroups != 2 || CrossTile ? $", {KernelNames.Bool(ChainPvS)}" : "") +
           (OPasses != 1 || ConsumerWarpgroups != 2 || CrossTile ? $", {OPasses}" : "") +
           (ConsumerWarpgroups != 2 || CrossTile ? $", {ConsumerWarpgroups}" : "") + (CrossTile ? ", true" : "") + ">>";

    public override string ToString()
        => $"d{HeadDim} {BlockM}x{BlockN} stages {Stages}{(QStages > 1 ? $" q{QStages}" : "")}{(WarpSpecialized ? "" : " no-ws")}{(IntraWgOverlap ? "" : " no-overlap")}{(PingPong ? " ping-pong" : "")}{(OAliasQ ? " O-in-Q" : "")}{(OPasses > 1 ? $" O-in-{OPasses}-passes" : "")}{(QInRegisters ? " Q-in-registers" : "")}{(ChainPvS ? " chained-PV-S" : "")}{(CrossTile ? " cross-tile" : "")}";
}

/// <summary>
/// The paper's ablation switches, for <c>flashattn bench --ablation</c>; not a user option. Each changes one of
/// FlashAttention-3's ideas in the default variant for the head dim: warp specialisation and ping-pong switched off,
/// and the intra-warpgroup overlap forced on or off (<see cref="IntraWarpgroupOverlap"/>; it is off by default at d64
/// and d128, where it measured slower, so there the ablation switches it on).
/// </summary>
internal sealed record ForwardAblation(bool NoWarpSpecialization = false, bool? IntraWarpgroupOverlap = null, bool NoPingPong = false)
{
    public static readonly ForwardAblation None = new();
    public string Name => this == None ? "full" : string.Join("+", new[]
    {
        NoWarpSpecialization ? "no-warp-specialization" : null,
        IntraWarpgroupOverlap switch { true => "with-intra-wg-overlap", false => "no-intra-wg-overlap", null => null },
        NoPingPong ? "no-ping-pong" : null,
    }.Where(s => s is not null));
}

/// <summary>
/// Which kernel variant runs for which head dim: the one table of tile sizes and pipeline depths, chosen by
/// measurement (bench/results) within the shared-memory budget (227 KB per block). Starting points from
/// FlashAttention-3's tile_size.h, adjusted to our kernel.
/// </summary>
internal static class TileTables
{
    public static readonly int[] ForwardHeadDims = [64, 128, 256];
    public static readonly int[] BackwardHeadDims = [64, 128, 256];

    /// <summary>
    /// Tuning override for measurement sweeps (not a user option): <c>FLASHATTN_FWD_CONFIG="128:n176,s2,q2,alias,nopp,noov,qregs"</c> (ov/noov: with or without the intra-warpgroup overlap; chain: without it, P·V and the next S issued in one turn; o2: O staged in two passes through its own buffer; w3: three consumer warpgroups, 192-row tiles, d64 only)
    /// replaces the forward variant of one head dim; kernels compile at run time, so a sweep needs no rebuild.
    /// </summary>
    public const string ForwardOverrideVariable = "FLASHATTN_FWD_CONFIG";

    /// <summary>
    /// Key length from which the forward runs its long-sequence variants: at d64 192-key blocks instead of 128, at d256
    /// P·V and the next S chained in one turn instead of the overlap, with 80-key blocks instead of 64. Below it the
    /// blocks divide the paper grid's lengths (192 computes 576 keys for 512, 80 computes 560) and cost less per tile.
    /// </summary>
    public const int LongKeysFrom = 2048;

    /// <summary>The forward variant for short key lengths (below <see cref="LongKeysFrom"/>; d128 has one for every length), without a mask from the right.</summary>
    public static ForwardKernelConfig Forward(int headDim, ForwardAblation? ablation = null) => Forward(headDim, seqLenK: 0, ablation);

    /// <summary>Every variant the forward may launch at this head dim (for warm-up).</summary>
    public static IEnumerable<ForwardKernelConfig> ForwardVariants(int headDim)
        => new[] { 0, int.MaxValue }.SelectMany(keys => new[] { false, true }.Select(right => Forward(headDim, keys, keysCutFromRight: right))).Distinct();

    /// <summary>
    /// The forward variant for a problem with <paramref name="seqLenK"/> keys; <paramref name="keysCutFromRight"/>: a
    /// causal mask or a window with a right bound (later query rows see more keys).
    /// </summary>
    public static ForwardKernelConfig Forward(int headDim, int seqLenK, ForwardAblation? ablation = null, bool keysCutFromRight = false)
    {
        var config = Override(headDim, Environment.GetEnvironmentVariable(ForwardOverrideVariable)) ?? headDim switch
        {
            // d64: more keys per block amortise the softmax over more GEMM work, and a third K/V stage hides the loads
            // (sweeps 2026-11-25, b2 h32 s8k: n128 s2 430, n192 s2 447–465, n192 s3 469 TFLOP/s).
            // Q as a register operand (ldmatrix once per tile) leaves the shared-memory bandwidth to K and V: b2 h32 s8k
            // 473 against 453 full, 410/394 causal (d128 gained nothing: 624/635 full, and 176-key blocks spilled).
            //
            // Intra-warpgroup overlap is off at d64 and d128: measured on, the variants were slower (d64 by 3–12% in
            // every cell, d128 by 0–5% full and −4..+5% causal; four device calls, paper grid, 2026-11-25, bench/results/
            // 2026-11-25-h100-b80f754/experiments). The SASS says why: ptxas 13.0 schedules the wait for P·V ahead of the
            // softmax it was meant to overlap (to pack P early), so the overlap's cost (registers, a second commit
            // group) comes without its benefit; ping-pong between the consumers still overlaps one's softmax with
            // the other's GEMMs. At d256, where a block's GEMMs are longer, it still pays (1–4%).
            // Below 2k keys, 128-key blocks (H200, 2026-12-01, paper grid twice each way: causal +26% at 512, +13% at 1k,
            // full +4% at 512-1k; from 2k 1-11% slower; bench/results/2026-12-01-h200-2c808e8/experiments).
            // Three consumer warpgroups (192-row tiles, FlashAttention-3's d64 shape; 160 registers each, so 128-key
            // blocks): each consumer's softmax hides behind two siblings' GEMMs. H200, 2026-12-01, d64 paper rows twice
            // each way: full +4..7% at every length (512: 388 against 367 TFLOP/s; 16k 505–509 against 483), causal
            // +1..6% from 2k, but causal 512 and 1k 10% slower (192 rows do not divide them, and the diagonal tiles
            // waste more): there the two-consumer variant stays (bench/results/2026-12-01-h200-40cfd1e/experiments/6-…, 7-…).
            64 when keysCutFromRight && seqLenK < LongKeysFrom => new ForwardKernelConfig(64, BlockN: 128, Stages: 3, IntraWgOverlap: false, PingPong: true, OAliasQ: false, WarpSpecialized: true, QStages: 2, QInRegisters: true),
            64 => new ForwardKernelConfig(64, BlockN: 128, Stages: 3, IntraWgOverlap: false, PingPong: true, OAliasQ: false, WarpSpecialized: true, QStages: 2, QInRegisters: true, ConsumerWarpgroups: 3),
            // d128: 128x128 with two Q buffers (b2 h16 s8k: 631 full, 534 causal; one Q buffer 600/506; 176-key
            // blocks with O in Q's buffer 628–643 full but 506–517 causal).
            128 => new ForwardKernelConfig(128, BlockN: 128, Stages: 2, IntraWgOverlap: false, PingPong: true, OAliasQ: false, WarpSpecialized: true, QStages: 2),
            // Q (64 KB) + two stages of K and V (160 KB) leave no room for a separate O buffer. Ping-pong pays here too
            // (2026-11-25, paper grid twice each, from 2k: full 587–682 against 574–658 TFLOP/s, causal equal or better;
            // bench/results/2026-11-25-h100-6c83288/experiments). 64-key blocks were slower (628–633 at 8k full).
            // From 2k keys the loop without the overlap, each turn issuing block n's P·V and block n-1's S back to back,
            // is faster (H200, 2026-12-01, two calls with the paper grid twice each way: from 4k +1..9%, 16k full 691
            // against 643 TFLOP/s; 2k −1..+4%; at 512–1k up to 11% slower; bench/results/2026-12-01-h200-921979c/experiments).
            // Below 2k keys, 64-key blocks, chained too, with O staged in two column passes through a 32 KB buffer of its
            // own instead of Q's: Q is released before the epilogue, so the next tile's Q (64 KB) loads under it instead
            // of after it (H200, 2026-12-01, back-to-back timing, paper grid twice each way against 64-key blocks with
            // the overlap and O in Q: full +9% at 512 and 1k, causal +15% at 512 and +9% at 1k; from 2k 80-key blocks
            // with O in Q stay faster, and leave no room for the buffer; bench/results/2026-12-01-h200-8835d51/experiments/3-d256-o2).
            256 => seqLenK >= LongKeysFrom
                ? new ForwardKernelConfig(256, BlockN: 80, Stages: 2, IntraWgOverlap: false, PingPong: true, OAliasQ: true, WarpSpecialized: true, ChainPvS: true)
                : new ForwardKernelConfig(256, BlockN: 64, Stages: 2, IntraWgOverlap: false, PingPong: true, OAliasQ: false, WarpSpecialized: true, ChainPvS: true, OPasses: 2),
            _ => throw new ArgumentOutOfRangeException(nameof(headDim), headDim, "no forward kernel for this head dim"),
        };
        return WithAblation(config, ablation);
    }

    /// <summary>The variant with one of FlashAttention-3's ideas switched as the ablation says.</summary>
    internal static ForwardKernelConfig WithAblation(ForwardKernelConfig config, ForwardAblation? ablation)
    {
        if (ablation is null || ablation == ForwardAblation.None) return config;
        return config with
        {
            WarpSpecialized = config.WarpSpecialized && !ablation.NoWarpSpecialization,
            IntraWgOverlap = ablation.IntraWarpgroupOverlap ?? config.IntraWgOverlap,
            // chaining P·V with the next S orders the loop without the overlap
            ChainPvS = config.ChainPvS && !(ablation.IntraWarpgroupOverlap ?? config.IntraWgOverlap),
            // Ping-pong hands the tensor cores between two consumers that a producer keeps fed; the
            // non-specialised ablation runs without it.
            PingPong = config.PingPong && !ablation.NoPingPong && !ablation.NoWarpSpecialization,
            // the cross-tile order is one of the loop without overlap, with ping-pong and a producer
            CrossTile = config.CrossTile && !ablation.NoPingPong && !ablation.NoWarpSpecialization && !(ablation.IntraWarpgroupOverlap ?? config.IntraWgOverlap),
        };
    }

    /// <summary>Registers a consumer thread holds in accumulators and fragments: O (d/2), S (n/2), packed P (n/4), Q in registers (d/4).</summary>
    internal static int ThreeConsumerAccumulators(int headDim, int blockN, bool qRegs) => headDim / 2 + blockN / 2 + blockN / 4 + (qRegs ? headDim / 4 : 0);

    internal static ForwardKernelConfig? Override(int headDim, string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        foreach (string entry in text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] parts = entry.Split(':', 2);
            if (parts.Length != 2 || !int.TryParse(parts[0], out int d) || d != headDim) continue;
            int blockN = 128, stages = 2, qStages = 1;
            bool alias = headDim == 256, pingPong = true, overlap = true, qRegs = false;
            bool chain = false;
            int oPasses = 1;
            int consumers = 2;
            bool crossTile = false;
            foreach (string f in parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (f.StartsWith('n') && int.TryParse(f[1..], out int n)) blockN = n;
                else if (f.StartsWith('s') && int.TryParse(f[1..], out int st)) stages = st;
                else if (f.StartsWith('q') && int.TryParse(f[1..], out int qs)) qStages = qs;
                else if (f == "alias") alias = true;
                else if (f == "noalias") alias = false;
                else if (f == "pp") pingPong = true;
                else if (f == "nopp") pingPong = false;
                else if (f == "noov") overlap = false;
                else if (f == "ov") overlap = true;
                else if (f == "qregs") qRegs = true;
                else if (f == "chain") (chain, overlap) = (true, false);
                else if (f.StartsWith('o') && int.TryParse(f[1..], out int op) && op > 1) (oPasses, alias) = (op, false);
                else if (f == "w3") consumers = 3;
                else if (f == "w2") consumers = 2;
                else if (f == "xt") (crossTile, overlap) = (true, false);
                else throw new ArgumentException($"{ForwardOverrideVariable}: unknown field '{f}' in '{entry}'");
            }
            if (chain && overlap) throw new ArgumentException($"{ForwardOverrideVariable}: chain orders the loop without the intra-warpgroup overlap; it does not go with 'ov' in '{entry}'");
            if (oPasses > 1 && alias) throw new ArgumentException($"{ForwardOverrideVariable}: o{oPasses} stages O in a buffer of its own; it does not go with 'alias' in '{entry}'");
            if (oPasses > 1 && (headDim / 64) % oPasses != 0) throw new ArgumentException($"{ForwardOverrideVariable}: o{oPasses} must divide the {headDim / 64} column slabs of head dim {headDim} in '{entry}'");
            // Three consumers run on 160 registers each: their accumulators (O d/2, S n/2, packed P n/4, Q in registers
            // d/4) must leave room for the rest; d64 with 128-key blocks and Q in registers (144) compiled without spills.
            if (consumers == 3 && ThreeConsumerAccumulators(headDim, blockN, qRegs) > 144)
                throw new ArgumentException($"{ForwardOverrideVariable}: w3 (three consumer warpgroups, 160 registers each) holds at most 144 accumulator registers per thread; d{headDim} with {blockN}-key blocks{(qRegs ? " and Q in registers" : "")} needs {ThreeConsumerAccumulators(headDim, blockN, qRegs)} in '{entry}'");
            // Across tiles: the loop without overlap with ping-pong, two Q buffers, O whole in a buffer of its own, and key
            // blocks no wider than the tile's rows (a discarded S reads the Q buffer; see flash_fwd_config.cuh).
            if (crossTile && (overlap || chain || !pingPong || qStages != 2 || alias || oPasses != 1 || blockN > 64 * consumers))
                throw new ArgumentException($"{ForwardOverrideVariable}: xt (the next tile's first S under the epilogue) needs the loop without overlap or chain, ping-pong, q2, O whole in its own buffer (noalias, no oN) and key blocks no wider than the tile's {64 * consumers} rows in '{entry}'");
            var config = new ForwardKernelConfig(headDim, blockN, stages, overlap, pingPong, alias, WarpSpecialized: true, qStages, qRegs, chain, oPasses, consumers, crossTile);
            if (config.SharedMemoryBytes > 232448)
                throw new ArgumentException($"{ForwardOverrideVariable}: '{entry}' needs {config.SharedMemoryBytes} bytes of shared memory, more than the 232448 a block may have");
            return config;
        }
        return null;
    }

    /// <summary>Tuning override like <see cref="ForwardOverrideVariable"/>: <c>FLASHATTN_BWD_CONFIG="128:s3,exchange;64:s2"</c> (ring stages; how dQ is split between consumers: exchange/split; how it is added: bulk/atomic; whether dS is formed while dV runs: overlapdv/nooverlapdv; at d256 whether the consumers split Sᵀ and dPᵀ between them: splitsdp/nosplitsdp; at d64 queries per step: m128/m64; a persistent grid, one CTA per SM walking key blocks: persist/nopersist).</summary>
    public const string BackwardOverrideVariable = "FLASHATTN_BWD_CONFIG";

    public static BackwardKernelConfig Backward(int headDim) => Backward(headDim, Environment.GetEnvironmentVariable(BackwardOverrideVariable));

    internal static BackwardKernelConfig Backward(int headDim, string? overrideText)
    {
        var config = headDim switch
        {
            // d128 splits dQ's columns between the consumers and exchanges dS (b2 h16 s8k: 284 TFLOP/s against 233 for
            // the split by keys, which doubles the dQ additions); d64 has only one 64-column block, so it splits keys.
            // Both add dQ by bulk reductions (b2 s8k: d128 369 against 321 TFLOP/s, d64 265 against 213). d64 takes 128
            // queries per step (FlashAttention-3's d64 tile; twice the GEMM work per step for the same barriers and dQ
            // hand-overs): paper grid twice each way on an H200, 2026-12-01, +5..16% full (16k: 476 against 410 TFLOP/s),
            // +7..15% causal from 1k, equal at causal 512 (bench/results/2026-12-01-h200-921979c).
            64 => new BackwardKernelConfig(64, Stages: 2, ExchangeDs: false, DqBulk: true, BlockM: 128),
            // d128 also forms dS while dV runs (b2 h16 s8k: 466 against 456 TFLOP/s full, 431/426 causal, 401/397 at 2k;
            // a third ring stage gained nothing: 461). d64 gained nothing from it (315/313) and keeps the registers.
            128 => new BackwardKernelConfig(128, Stages: 2, ExchangeDs: true, DqBulk: true, OverlapDv: true),
            // d256: 64 keys per CTA, the two consumers splitting dK/dV's columns (see flash_bwd_config.cuh), and
            // Sᵀ and dPᵀ split between them (5 GEMMs per step instead of 7; paper grid twice each way, 2026-11-25:
            // 1.02–1.10x with the v4 dQ atomics, 1.00–1.04x before them; bench/results/2026-11-25-h100-b80f754/experiments).
            256 => new BackwardKernelConfig(256, Stages: 2, ExchangeDs: false, SplitSdP: true),
            _ => throw new ArgumentOutOfRangeException(nameof(headDim), headDim, "no backward kernel for this head dim"),
        };
        foreach (string entry in (overrideText ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] parts = entry.Split(':', 2);
            if (parts.Length != 2 || !int.TryParse(parts[0], out int d) || d != headDim) continue;
            foreach (string f in parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                config = f switch
                {
                    _ when f.StartsWith('s') && int.TryParse(f[1..], out int st) => config with { Stages = st },
                    "exchange" => config with { ExchangeDs = true },
                    "split" => config with { ExchangeDs = false, DqBulk = headDim == 64 },  // two dQ blocks per consumer at d128
                    "bulk" => config with { DqBulk = true },
                    "atomic" => config with { DqBulk = false },
                    "overlapdv" => config with { OverlapDv = true },
                    "nooverlapdv" => config with { OverlapDv = false },
                    "splitsdp" when headDim == 256 => config with { SplitSdP = true },
                    "nosplitsdp" => config with { SplitSdP = false },
                    // 128 queries per step (FlashAttention-3's d64 tile); bulk dQ, split keys.
                    "m128" when headDim == 64 => config with { BlockM = 128, DqBulk = true, ExchangeDs = false },
                    "m64" => config with { BlockM = 64 },
                    "persist" => config with { Persistent = true },
                    "nopersist" => config with { Persistent = false },
                    _ => throw new ArgumentException($"{BackwardOverrideVariable}: unknown field '{f}' in '{entry}'"),
                };
        }
        if (config.BlockM == 128 && !config.DqBulk)
            throw new ArgumentException($"{BackwardOverrideVariable}: 128 queries per step (d64's default, 'm128') add each step's two 64-row dQ blocks with one bulk reduction; 'atomic' needs 'm64' with it");
        if (config.SplitSdP && config.HeadDim != 256)
            throw new ArgumentException($"{BackwardOverrideVariable}: splitsdp is a d256 variant (both consumers on the same keys)");
        if (config.DqBulk && !config.HasOneDqBlockPerConsumer)
            throw new ArgumentException($"{BackwardOverrideVariable}: bulk dQ needs one 64-column dQ block per consumer and step (d64, or d128 with exchange); use 'atomic' for d{headDim} here");
        return config;
    }
}

/// <summary>The backward kernel's template arguments (<c>fa::BwdConfig</c>) and geometry; mirrors flash_bwd_config.cuh.</summary>
internal sealed record BackwardKernelConfig(int HeadDim, int Stages, bool ExchangeDs = false, bool Softcap = false, bool DqBulk = false,
    bool OverlapDv = false, bool SplitSdP = false, int BlockM = 64, bool Persistent = false)
{
    public const int Threads = 384;

    /// <summary>Rows of the TMA boxes that bring Q and dO (a 128-query step loads two).</summary>
    public const int TmaRows = 64;

    /// <summary>Keys per CTA: 128 (64 per consumer); at d256 both consumers share 64 keys and split the columns.</summary>
    public int BlockN => HeadDim == 256 ? 64 : 128;

    /// <summary>
    /// The variant for the given softcap setting. Softcap keeps P·(1 − tanh²) in the score registers until dS is formed,
    /// so it does without the dV overlap (which would keep P's packed registers alive beside them) and without the
    /// split of Sᵀ and dPᵀ between the consumers (which hands P over packed).
    /// </summary>
    public BackwardKernelConfig ForSoftcap(bool softcap) => softcap ? this with { Softcap = true, OverlapDv = false, SplitSdP = false, BlockM = 64 } : this with { Softcap = false };

    /// <summary>Whether each consumer computes exactly one 64x64 dQ block per step, which bulk dQ requires.</summary>
    public bool HasOneDqBlockPerConsumer => HeadDim == 64 || (HeadDim == 128 && ExchangeDs);

    public int SharedMemoryBytes
    {
        get
        {
            int slabs = HeadDim / 64;
            int kBytes = BlockN * 128 * slabs, qBytes = BlockM * 128 * slabs, dsBytes = BlockM * 128 * (BlockN / 64), rowBytes = BlockM * 4;
            int dsBuffers = BlockM == 128 ? 1 : 2;  // as flash_bwd_config.cuh's kDsBuffers
            int dqBytes = DqBulk ? 2 * BlockM * 64 * 4 : 0;
            int exchangeBytes = SplitSdP ? 2 * 128 * (BlockM / 4) * 4 : 0;  // P's and dS's register images
            int barriers = 1 + 2 * Stages + 4 + (Persistent ? 1 : 0);  // as kNumBars (persistent: K/V free again)
            return 1024 + 2 * kBytes + 2 * Stages * qBytes + dsBuffers * dsBytes + 2 * Stages * rowBytes + dqBytes + exchangeBytes + 8 * barriers;
        }
    }

    /// <summary>What sets this variant apart, for warm-up labels and logs: queries x keys per step, stages, how dQ is formed and added.</summary>
    public override string ToString()
        => $"d{HeadDim} {BlockM}x{BlockN} stages {Stages}{(ExchangeDs ? " dS-exchange" : "")}{(DqBulk ? " dQ-bulk" : " dQ-red")}" +
           $"{(OverlapDv ? " dV-overlap" : "")}{(SplitSdP ? " split-SdP" : "")}{(Persistent ? " persistent" : "")}{(Softcap ? " softcap" : "")}";

    public string NameExpression(DataType type)
        => $"fa::flash_bwd_kernel<fa::BwdConfig<{KernelNames.ElementTag(type)}, {HeadDim}, {Stages}, {KernelNames.Bool(ExchangeDs)}, {KernelNames.Bool(Softcap)}, {KernelNames.Bool(DqBulk)}, {KernelNames.Bool(OverlapDv)}, {KernelNames.Bool(SplitSdP)}{(BlockM == 64 && !Persistent ? "" : $", {BlockM}")}{(Persistent ? ", true" : "")}>>";
    public string PreprocessExpression(DataType type) => $"fa::flash_bwd_preprocess<{KernelNames.ElementTag(type)}, {HeadDim}>";
    public string PostprocessExpression(DataType type) => $"fa::flash_bwd_postprocess<{KernelNames.ElementTag(type)}, {HeadDim}>";
}

internal static class KernelNames
{
    public static string ElementTag(DataType type) => type switch
    {
        DataType.BFloat16 => "fa::bf16_t",
        DataType.Float16 => "fa::half_t",
        DataType.Float8E4M3 => "fa::e4m3_t",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "no kernel element type"),
    };

    public static string Bool(bool value) => value ? "true" : "false";
}
