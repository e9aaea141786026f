using FlashAttention.Cuda.Variants;

namespace FlashAttention.Lab.Tuning;

/// <summary>
/// Tuning overrides for measurement sweeps (not user options), as the lab's environment variables spell them. Each
/// entry starts from the default variant of its head dim and replaces it at every key length:
/// <list type="bullet">
/// <item>forward, <c>FLASHATTN_FWD_CONFIG="128:n176,s2,q2;64:w2"</c>: nN keys per block, sN K/V stages, qN Q buffers,
///   w2/w3 consumer warpgroups, seq/ov/chain the loop (sequential, intra-warpgroup overlap, P·V chained with the next S),
///   pp/nopp ping-pong, own/alias/o2 O's staging (own buffer, Q's buffer, two passes), qregs/noqregs Q in registers;</item>
/// <item>backward, <c>FLASHATTN_BWD_CONFIG="128:s3,keys;64:m64"</c>: sN stages, keys/columns how dQ is split, bulk/atomic
///   how it is added, overlapdv/nooverlapdv, splitsdp/nosplitsdp (d256), m64/m128 queries per step (m128: d64);</item>
/// <item>the FP8 quantiser, <c>FLASHATTN_QUANTIZER_CONFIG="64:jobs"</c>: resident (persistent CTAs) or jobs (a CTA per job);</item>
/// <item>decode, <c>FLASHATTN_DECODE_CONFIG="128:n128,s2,c1;256:qregs"</c>: nN keys per block, sN K/V stages, cN CTAs per
///   SM, qregs/qsmem where Q lives.</item>
/// </list>
/// Shapes the kernels cannot take fail to compile with the header's static_assert naming the rule.
/// </summary>
internal static class VariantOverrides
{
    public const string ForwardVariable = "FLASHATTN_FWD_CONFIG";
    public const string BackwardVariable = "FLASHATTN_BWD_CONFIG";
    public const string Fp8Variable = "FLASHATTN_FP8_CONFIG";
    public const string DecodeVariable = "FLASHATTN_DECODE_CONFIG";
    public const string QuantizerVariable = "FLASHATTN_QUANTIZER_CONFIG";

    /// <summary>The FP8 quantiser, <c>FLASHATTN_QUANTIZER_CONFIG="64:jobs;256:resident"</c>: persistent CTAs or a CTA per job.</summary>
    internal static Dictionary<int, QuantizerShape> ParseQuantizer(string? text) => Parse(text, QuantizerVariable, Fp8Variants.Quantizer,
        (v, f) => f switch
        {
            "resident" => v with { Resident = true },
            "jobs" => v with { Resident = false },
            _ => null,
        },
        (_, _) => { });

    /// <summary>FP8, <c>FLASHATTN_FP8_CONFIG="128:n256,pe4;256:q1,own"</c>: nN keys per block, sN stages, qN Q buffers, peK one column group in K with polynomial exponentials (pe0: none), w2/w3 consumer warpgroups, pp/nopp, own/o2.</summary>
    internal static Dictionary<int, Fp8Variant> ParseFp8(string? text) => Parse(text, Fp8Variable, Fp8Variants.For,
        (v, f) => f switch
        {
            _ when Number(f, "n") is int n => v with { BlockN = n },
            _ when Number(f, "s") is int st => v with { Stages = st },
            _ when Number(f, "q") is int qb => v with { QBuffers = qb },
            _ when Number(f, "pe") is int every => v with { PolyExpEvery = every },
            _ when Number(f, "w") is int w => v with { Consumers = w },
            "pp" => v with { PingPong = true },
            "nopp" => v with { PingPong = false },
            "own" => v with { OStaging = OutputStaging.OwnBuffer },
            "o2" => v with { OStaging = OutputStaging.TwoPasses },
            _ => null,
        },
        (v, entry) =>
        {
            if (v.BlockN % 128 != 0 || Fp8Variants.KeyBlock % v.BlockN != 0)
                throw new ArgumentException($"{Fp8Variable}: '{entry}' has a key block of {v.BlockN}; expected 128 or 256 (Vᵀ tiles are 128-key rows, and a K/V descale block of {Fp8Variants.KeyBlock} must hold whole key blocks)");
            if (v.SharedMemoryBytes > 232448)
                throw new ArgumentException($"{Fp8Variable}: '{entry}' needs {v.SharedMemoryBytes} bytes of shared memory, more than the 232448 a block may have");
        });

    internal static Dictionary<int, ForwardVariant> ParseForward(string? text)
        => Parse(text, ForwardVariable, headDim => ForwardVariants.For(headDim, ForwardVariants.LongKeysFrom, keysCutFromRight: false),
        (v, f) => f switch
        {
            _ when Number(f, "n") is int n => v with { BlockN = n },
            _ when Number(f, "s") is int st => v with { Stages = st },
            _ when Number(f, "q") is int qb => v with { QBuffers = qb },
            _ when Number(f, "w") is int w => v with { Consumers = w },
            "seq" => v with { Loop = ForwardLoop.Sequential },
            "ov" => v with { Loop = ForwardLoop.Overlapped },
            "chain" => v with { Loop = ForwardLoop.Chained },
            "pp" => v with { PingPong = true },
            "nopp" => v with { PingPong = false },
            "own" => v with { OStaging = OutputStaging.OwnBuffer },
            "alias" => v with { OStaging = OutputStaging.QBuffer },
            "o2" => v with { OStaging = OutputStaging.TwoPasses },
            "qregs" => v with { QInRegisters = true },
            "noqregs" => v with { QInRegisters = false },
            _ => null,
        },
        (v, entry) =>
        {
            if (v.SharedMemoryBytes > 232448)
                throw new ArgumentException($"{ForwardVariable}: '{entry}' needs {v.SharedMemoryBytes} bytes of shared memory, more than the 232448 a block may have");
        });

    internal static Dictionary<int, Func<BackwardVariant, BackwardVariant>> ParseBackward(string? text)
    {
        var result = new Dictionary<int, Func<BackwardVariant, BackwardVariant>>();
        foreach (var (headDim, fields, entry) in Entries(text, BackwardVariable))
        {
            var edits = fields.Select(f => (Func<BackwardVariant, BackwardVariant>)(f switch
            {
                _ when Number(f, "s") is int st => v => v with { Stages = st },
                _ when Number(f, "m") is int m => v => v with { BlockM = m },
                "keys" => v => v with { DqSplit = DqSplit.ByKeys },
                "columns" => v => v with { DqSplit = DqSplit.ByColumns },
                "bulk" => v => v with { DqAdd = DqAdd.Bulk },
                "atomic" => v => v with { DqAdd = DqAdd.Reduce },
                "overlapdv" => v => v with { OverlapDv = true },
                "nooverlapdv" => v => v with { OverlapDv = false },
                "splitsdp" => v => v with { SplitSdP = true },
                "nosplitsdp" => v => v with { SplitSdP = false },
                _ => throw new ArgumentException($"{BackwardVariable}: unknown field '{f}' in '{entry}'"),
            })).ToArray();
            result[headDim] = v => edits.Aggregate(v, (acc, edit) => edit(acc));
        }
        return result;
    }

    internal static Dictionary<int, DecodeVariant> ParseDecode(string? text) => Parse(text, DecodeVariable, DecodeVariants.For,
        (v, f) => f switch
        {
            _ when Number(f, "n") is int n => v with { BlockN = n },
            _ when Number(f, "s") is int st => v with { Stages = st },
            _ when Number(f, "c") is int c => v with { CtasPerSm = c },
            "qregs" => v with { QSource = QSource.Registers },
            "qsmem" => v with { QSource = QSource.SharedMemory },
            _ => null,
        },
        (v, entry) =>
        {
            int limit = v.CtasPerSm <= 1 ? 232448 : 233472 / v.CtasPerSm - 1024;
            if (v.SharedMemoryBytes > limit)
                throw new ArgumentException($"{DecodeVariable}: '{entry}' needs {v.SharedMemoryBytes} bytes of shared memory, more than {limit} for {v.CtasPerSm} CTA(s) per SM");
        });

    /// <summary>
    /// Every entry of <paramref name="text"/>: its head dim's default variant with the fields applied in order
    /// (<paramref name="apply"/> gives null for a field it does not know), then checked by <paramref name="check"/>.
    /// </summary>
    private static Dictionary<int, TVariant> Parse<TVariant>(string? text, string variable, Func<int, TVariant> defaultFor,
        Func<TVariant, string, TVariant?> apply, Action<TVariant, string> check) where TVariant : class
    {
        var result = new Dictionary<int, TVariant>();
        foreach (var (headDim, fields, entry) in Entries(text, variable))
        {
            var v = defaultFor(headDim);
            foreach (string f in fields)
                v = apply(v, f) ?? throw new ArgumentException($"{variable}: unknown field '{f}' in '{entry}'");
            check(v, entry);
            result[headDim] = v;
        }
        return result;
    }

    private static IEnumerable<(int HeadDim, string[] Fields, string Entry)> Entries(string? text, string variable)
    {
        foreach (string entry in (text ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] parts = entry.Split(':', 2);
            if (parts.Length != 2 || !int.TryParse(parts[0], out int headDim))
                throw new ArgumentException($"{variable}: expected '<head dim>:<field>,<field>…' in '{entry}'");
            yield return (headDim, parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), entry);
        }
    }

    private static int? Number(string field, string prefix)
        => field.StartsWith(prefix, StringComparison.Ordinal) && int.TryParse(field.AsSpan(prefix.Length), out int n) ? n : null;
}
