using System.Diagnostics;
using DiffusionCache.Caching;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>One configuration to measure: a step count and a cache policy factory (null: no cache), with its
/// MAC-theoretical speedup over uncached sampling at the reference step count.</summary>
public sealed record CacheConfiguration(string Name, string Kind, int Steps, Func<ICachePolicy>? Policy, double MacSpeedup)
{
    public double? Delta { get; init; }
    public int? Interval { get; init; }
    public int? Branch { get; init; }
    public double SkippedFraction { get; init; }
}

/// <summary>What one configuration measured, relative to uncached sampling in the same run.</summary>
public sealed record CacheBenchmarkRow(string Name, string Kind, int Steps, double LatencyMsPerImage, double MeasuredSpeedup,
    double MacSpeedup, double CacheMb, double Psnr, double Ssim, double? Delta, int? Interval, int? Branch, double SkippedFraction);

/// <summary>A fixed-seed generation to time: the same inputs every call, so outputs are comparable.</summary>
public interface IBenchTarget
{
    int ImagesPerRun { get; }
    /// <summary>The data range for PSNR/SSIM of <see cref="Run"/>'s outputs (2 for decoded images in [-1, 1]).</summary>
    double Range(Tensor reference);
    Tensor Run(int steps, ICachePolicy? policy);
}

/// <summary>
/// Measures cache configurations side by side in one process: every configuration once to warm up (that output is
/// the one compared with the uncached output), then <c>repeats</c> timed rounds, each round running every
/// configuration once in turn so that drift in machine speed affects all alike. Latency is the median per image.
/// </summary>
public static class CacheBenchmark
{
    public static IReadOnlyList<CacheBenchmarkRow> Run(IBenchTarget target, IReadOnlyList<CacheConfiguration> configurations,
        int repeats, IProgress<string>? progress = null, CancellationToken cancel = default)
    {
        if (configurations.Count == 0 || configurations[0].Policy is not null)
            throw new DiffusionCacheException("the first configuration must be the uncached reference");
        if (repeats < 1) throw new DiffusionCacheException("repeats must be at least 1");
        var outputs = new Tensor[configurations.Count];
        var cacheBytes = new long[configurations.Count];
        var times = configurations.Select(_ => new List<double>()).ToArray();
        try
        {
            for (int round = -1; round < repeats; round++)
            {
                for (int i = 0; i < configurations.Count; i++)
                {
                    cancel.ThrowIfCancellationRequested();
                    var config = configurations[i];
                    progress?.Report(round < 0 ? $"warm-up {config.Name}" : $"round {round + 1}/{repeats} {config.Name}");
                    using var policy = config.Policy?.Invoke();
                    var clock = Stopwatch.StartNew();
                    var output = target.Run(config.Steps, policy);
                    clock.Stop();
                    if (round < 0)
                    {
                        outputs[i] = output;
                        cacheBytes[i] = policy?.Statistics.PeakCacheBytes ?? 0;
                    }
                    else
                    {
                        output.Dispose();
                        times[i].Add(clock.Elapsed.TotalMilliseconds / target.ImagesPerRun);
                    }
                }
            }
            double reference = Median(times[0]);
            double range = target.Range(outputs[0]);
            return configurations.Select((c, i) => new CacheBenchmarkRow(c.Name, c.Kind, c.Steps, Median(times[i]),
                reference / Median(times[i]), c.MacSpeedup, cacheBytes[i] / 1048576.0,
                ImageMetrics.Psnr(outputs[i], outputs[0], range), ImageMetrics.Ssim(outputs[i], outputs[0], range),
                c.Delta, c.Interval, c.Branch, c.SkippedFraction)).ToList();
        }
        finally
        {
            foreach (var o in outputs) o?.Dispose();
        }
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        int n = sorted.Count;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
