using DiffusionCache.Caching;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>One configuration to measure: a step count and a cache policy factory (null: no cache), with its
/// MAC-theoretical speedup over uncached sampling at the reference step count.</summary>
/// <param name="Name">Row label, e.g. "DeepCache N=3 branch 0".</param>
/// <param name="Kind">Family of the row for reports and plots (the CLI uses <c>none</c>, <c>fewer-steps</c>,
/// <c>deepcache</c>, <c>blockcache</c>).</param>
/// <param name="Steps">Denoising steps of each run.</param>
/// <param name="Policy">Makes a fresh policy for each run (the benchmark disposes it); null for no cache.</param>
/// <param name="MacSpeedup">Theoretical speedup in MACs over the uncached reference.</param>
public sealed record CacheConfiguration(string Name, string Kind, int Steps, Func<ICachePolicy>? Policy, double MacSpeedup)
{
    /// <summary>Block Caching threshold δ (eq. 7), copied to the row; null for other kinds.</summary>
    public double? Delta { get; init; }
    /// <summary>DeepCache interval N, copied to the row; null for other kinds.</summary>
    public int? Interval { get; init; }
    /// <summary>DeepCache branch, copied to the row; null for other kinds.</summary>
    public int? Branch { get; init; }
    /// <summary>Fraction of cached evaluations answered from the cache (0..1), copied to the row.</summary>
    public double SkippedFraction { get; init; }
}

/// <summary>What one configuration measured, relative to uncached sampling in the same run. The speedup is the
/// median over rounds of (uncached time / this configuration's time) within each round; its low and high are the
/// smallest and largest of those per-round ratios.</summary>
/// <param name="Name">The configuration's <see cref="CacheConfiguration.Name"/>.</param>
/// <param name="Kind">The configuration's <see cref="CacheConfiguration.Kind"/>.</param>
/// <param name="Steps">Denoising steps of each run.</param>
/// <param name="LatencyMsPerImage">Median over the timed rounds of wall time per image, in milliseconds.</param>
/// <param name="MeasuredSpeedup">Median over rounds of uncached time / this configuration's time (1 for the
/// reference).</param>
/// <param name="MacSpeedup">The configuration's theoretical speedup in MACs.</param>
/// <param name="CacheMb">Peak memory the cache held during the warm-up run, in MiB (0 without a cache).</param>
/// <param name="Psnr">PSNR in dB of the warm-up output against the uncached one (infinite when identical).</param>
/// <param name="Ssim">SSIM of the warm-up output against the uncached one (1 when identical).</param>
/// <param name="Delta">See <see cref="CacheConfiguration.Delta"/>.</param>
/// <param name="Interval">See <see cref="CacheConfiguration.Interval"/>.</param>
/// <param name="Branch">See <see cref="CacheConfiguration.Branch"/>.</param>
/// <param name="SkippedFraction">See <see cref="CacheConfiguration.SkippedFraction"/>.</param>
public sealed record CacheBenchmarkRow(string Name, string Kind, int Steps, double LatencyMsPerImage, double MeasuredSpeedup,
    double MacSpeedup, double CacheMb, double Psnr, double Ssim, double? Delta, int? Interval, int? Branch, double SkippedFraction)
{
    /// <summary>The smallest per-round speedup; NaN when not measured.</summary>
    public double MeasuredSpeedupLow { get; init; } = double.NaN;
    /// <summary>The largest per-round speedup; NaN when not measured.</summary>
    public double MeasuredSpeedupHigh { get; init; } = double.NaN;
    /// <summary>Wall time of each timed round's run, in milliseconds, round by round (for ratios to another row
    /// than the first).</summary>
    public IReadOnlyList<double> RoundMilliseconds { get; init; } = [];
    /// <summary>Share of the policy's cached-site evaluations answered from its cache in the warm-up run
    /// (<see cref="CacheStatistics.ReusedFraction"/>: blocks for Block Caching and DeepCache, whole steps for
    /// ucache); 0 without a cache.</summary>
    public double MeasuredReusedFraction { get; init; }
}

/// <summary>A fixed-seed generation to time: the same inputs every call, so outputs are comparable.</summary>
public interface IBenchTarget
{
    /// <summary>Images one <see cref="Run"/> generates (its batch), to report latency per image.</summary>
    int ImagesPerRun { get; }
    /// <summary>The data range for PSNR/SSIM of <see cref="Run"/>'s outputs (2 for decoded images in [-1, 1]).</summary>
    double Range(Tensor reference);
    /// <summary>Generates the fixed batch with <paramref name="steps"/> steps and <paramref name="policy"/>
    /// attached (null: uncached); returns the output [B, C, H, W], which the caller disposes.</summary>
    Tensor Run(int steps, ICachePolicy? policy);
}

/// <summary>
/// Measures cache configurations side by side in one process: every configuration once to warm up (that output is
/// the one compared with the uncached output), then <c>repeats</c> timed rounds, each running every configuration
/// once. Each round starts at a different configuration (the order rotates), so no configuration always follows the
/// same one, and speedups are ratios within a round: a machine whose speed drifts over minutes (shared or
/// virtualized CPUs) slows the reference and the configuration of one round alike. Latency is the median per image.
/// </summary>
public static class CacheBenchmark
{
    /// <summary>Runs the benchmark; one row per configuration, in the given order.</summary>
    /// <param name="target">The generation to time.</param>
    /// <param name="configurations">What to measure; the first must be the uncached reference (no policy), which
    /// speedups, PSNR and SSIM are relative to.</param>
    /// <param name="repeats">Timed rounds, at least 1.</param>
    /// <param name="progress">Told which run starts; optional.</param>
    /// <param name="cancel">Checked before every run.</param>
    /// <param name="clock">Source of wall time (tests give a fake one); the system clock when null.</param>
    /// <exception cref="DiffusionCacheException">The first configuration has a policy, or
    /// <paramref name="repeats"/> is below 1.</exception>
    public static IReadOnlyList<CacheBenchmarkRow> Run(IBenchTarget target, IReadOnlyList<CacheConfiguration> configurations,
        int repeats, IProgress<string>? progress = null, CancellationToken cancel = default, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(configurations);
        if (configurations.Count == 0 || configurations[0].Policy is not null)
            throw new DiffusionCacheException("the first configuration must be the uncached reference");
        if (repeats < 1) throw new DiffusionCacheException("repeats must be at least 1");
        clock ??= TimeProvider.System;
        int count = configurations.Count;
        var outputs = new Tensor[count];
        var cacheBytes = new long[count];
        var reused = new double[count];
        var times = new double[count, repeats];
        try
        {
            for (int i = 0; i < count; i++)
            {
                progress?.Report($"warm-up {configurations[i].Name}");
                outputs[i] = Measure(target, configurations[i], clock, cancel, out _, out cacheBytes[i], out reused[i]);
            }
            for (int round = 0; round < repeats; round++)
            {
                for (int k = 0; k < count; k++)
                {
                    int i = (round + k) % count;
                    progress?.Report($"round {round + 1}/{repeats} {configurations[i].Name}");
                    Measure(target, configurations[i], clock, cancel, out times[i, round], out _, out _).Dispose();
                }
            }
            double range = target.Range(outputs[0]);
            return configurations.Select((c, i) =>
            {
                var ratios = Enumerable.Range(0, repeats).Select(r => times[0, r] / times[i, r]).ToList();
                return new CacheBenchmarkRow(c.Name, c.Kind, c.Steps,
                    Median(Enumerable.Range(0, repeats).Select(r => times[i, r] / target.ImagesPerRun)), Median(ratios),
                    c.MacSpeedup, cacheBytes[i] / 1048576.0,
                    ImageMetrics.Psnr(outputs[i], outputs[0], range), ImageMetrics.Ssim(outputs[i], outputs[0], range),
                    c.Delta, c.Interval, c.Branch, c.SkippedFraction)
                {
                    MeasuredSpeedupLow = ratios.Min(),
                    MeasuredSpeedupHigh = ratios.Max(),
                    RoundMilliseconds = [.. Enumerable.Range(0, repeats).Select(r => times[i, r])],
                    MeasuredReusedFraction = reused[i],
                };
            }).ToList();
        }
        finally
        {
            foreach (var o in outputs) o?.Dispose();
        }
    }

    private static Tensor Measure(IBenchTarget target, CacheConfiguration config, TimeProvider clock, CancellationToken cancel,
        out double milliseconds, out long cacheBytes, out double reusedFraction)
    {
        cancel.ThrowIfCancellationRequested();
        using var policy = config.Policy?.Invoke();
        long start = clock.GetTimestamp();
        var output = target.Run(config.Steps, policy);
        milliseconds = clock.GetElapsedTime(start).TotalMilliseconds;
        cacheBytes = policy?.Statistics.PeakCacheBytes ?? 0;
        reusedFraction = policy?.Statistics.ReusedFraction ?? 0;
        return output;
    }

    internal static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        int n = sorted.Count;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
