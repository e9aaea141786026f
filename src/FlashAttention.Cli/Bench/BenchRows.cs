using System.Globalization;

namespace FlashAttention.Cli.Bench;

/// <summary>Builds JSON rows from measurements and attaches peers' numbers to ours.</summary>
public static class BenchRows
{
    public static BenchRow From(BenchMeasurement m, BenchDeviceInfo device, string implementation, BenchSettings settings, string commit, DateTimeOffset date)
    {
        var c = m.Case;
        double flopsPerSecond = m.FlopsPerSecond;
        return new BenchRow
        {
            Implementation = implementation,
            Device = device.Device,
            DeviceName = device.Name,
            SmCount = device.SmCount,
            SmClockMhz = device.SmClockMhz,
            MemClockMhz = device.MemClockMhz,
            ComputeCapability = device.ComputeCapability,
            DriverVersion = device.DriverVersion,
            NvrtcVersion = device.NvrtcVersion,
            CpuCores = device.CpuCores,
            PeakGflops = device.PeakGflops is double p ? Math.Round(p, 1) : null,
            PercentOfPeak = PercentOf(flopsPerSecond, device.PeakGflops),
            GemmTflops = device.GemmTflops,
            Commit = commit,
            Date = date.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
            Dtype = c.DtypeName,
            Batch = c.Batch,
            SeqlenQ = c.SeqLenQ,
            SeqlenK = c.SeqLenK,
            HeadsQ = c.HeadsQ,
            HeadsK = c.HeadsK,
            HeadDim = c.HeadDim,
            Mask = c.Mask,
            Direction = c.DirectionName,
            Warmup = settings.Warmup,
            Repeats = settings.Repeats,
            TimeMsMedian = Round(m.MedianMs),
            TimeMsMin = Round(m.MinMs),
            TimeMsMax = Round(m.MaxMs),
            HostMsMedian = m.HostMedianMs is double host ? Round(host) : null,
            Timing = m.Timing is BenchTiming timing ? BenchSettings.TimingName(timing) : null,
            CallsPerSample = m.Timing is null ? null : m.CallsPerSample,
            Flops = c.Flops,
            Tflops = Math.Round(flopsPerSecond / 1e12, 6),
            KvCache = c.KvCache is null ? null : true,
            PageSize = c.KvCache?.PageSize,
            AppendLength = c.KvCache?.AppendLength,
            KvBytes = c.KvCache is null ? null : c.KvBytes,
            KvTbps = c.KvCache is null ? null : Math.Round(c.KvBytes / (m.MedianMs * 1e-3) / 1e12, 4),
            Seqlens = c.SeqLens?.ToList(),
        };
    }

    private static double Round(double ms) => Math.Round(ms, ms < 1 ? 6 : 4);

    /// <summary>FLOP/s as a percentage of the peak; null without a peak or above it (a peak below a measured speed is no ceiling).</summary>
    public static double? PercentOf(double flopsPerSecond, double? peakGflops)
        => peakGflops is double peak && peak > 0 && flopsPerSecond / 1e9 <= peak ? Math.Round(100 * flopsPerSecond / 1e9 / peak, 2) : null;

    /// <summary>
    /// Sets every row's peak and % of peak from <paramref name="peakGflops"/>. When a row ran faster than the peak, the
    /// peak is no ceiling and no row gets a percentage; that row is returned (the fastest such), else null.
    /// </summary>
    public static BenchRow? ApplyPeak(IReadOnlyList<BenchRow> rows, double peakGflops)
    {
        var above = rows.Where(r => r.Tflops * 1000 > peakGflops).MaxBy(r => r.Tflops);
        foreach (var r in rows)
        {
            r.PeakGflops = Math.Round(peakGflops, 1);
            r.PercentOfPeak = above is null ? PercentOf(r.Tflops * 1e12, peakGflops) : null;
        }
        return above;
    }

    /// <summary>
    /// For each of <paramref name="ours"/>, the other implementations' rows of the same case (<see cref="BenchRow.CaseKey"/>)
    /// become its <see cref="BenchRow.Peers"/>, one per implementation (its latest row). Warns when the device names differ.
    /// </summary>
    /// <returns>How many of our rows found at least one peer.</returns>
    public static int AttachPeers(IReadOnlyList<BenchRow> ours, IEnumerable<BenchRow> peerRows, Action<string> warn)
    {
        var byCase = peerRows.GroupBy(r => r.CaseKey).ToDictionary(g => g.Key, g => g.ToList());
        int matched = 0;
        var warned = new HashSet<string>();
        foreach (var row in ours)
        {
            if (!byCase.TryGetValue(row.CaseKey, out var candidates)) continue;
            var peers = candidates
                .Where(p => p.Implementation != row.Implementation)
                .GroupBy(p => p.Implementation)
                .Select(g => g.OrderByDescending(p => p.ParsedDate ?? DateTimeOffset.MinValue).First())
                .ToList();
            if (peers.Count == 0) continue;
            foreach (var p in peers)
                if (p.DeviceName != row.DeviceName && warned.Add(p.DeviceName))
                    warn($"peer rows of {p.Implementation} were measured on \"{p.DeviceName}\", ours on \"{row.DeviceName}\"; the ratio compares different devices");
            row.Peers = peers.Select(p => new PeerResult { Implementation = p.Implementation, TimeMsMedian = p.TimeMsMedian, Tflops = p.Tflops }).ToList();
            matched++;
        }
        return matched;
    }
}
