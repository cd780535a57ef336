using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>How bootstrap intervals are drawn: <see cref="Replicates"/> resamples (with replacement) of the generated
/// samples from a generator seeded with <see cref="Seed"/>, and a two-sided <see cref="Level"/> interval. Two reports
/// made with the same options and sample count resample the same indices, which is what makes their comparison
/// paired.</summary>
/// <param name="Replicates">B, the number of resamples (at least 2).</param>
/// <param name="Seed">Seed of the resampling generator.</param>
/// <param name="Level">Coverage of the intervals, in (0, 1).</param>
public sealed record BootstrapOptions(int Replicates = 200, long Seed = 0, double Level = 0.95)
{
    /// <summary>Throws <see cref="DiffusionCacheException"/> when the options cannot be used.</summary>
    public void Validate()
    {
        if (Replicates < 2) throw new DiffusionCacheException($"bootstrap needs at least 2 replicates (got {Replicates})");
        if (Level is <= 0 or >= 1) throw new DiffusionCacheException($"bootstrap level must be in (0, 1) (got {Level})");
    }
}

/// <summary>Resampling and intervals: percentile bootstrap intervals and Wilson score intervals.</summary>
public static class Bootstrap
{
    /// <summary>Resampling counts, float64 [<paramref name="replicates"/>, <paramref name="n"/>] on the CPU: entry
    /// (b, i) says how often sample i is drawn in resample b (each row sums to n). Deterministic for a given
    /// (n, replicates, seed).</summary>
    /// <param name="n">Sample count, at least 1.</param>
    /// <param name="replicates">Number of resamples, at least 1.</param>
    /// <param name="seed">Seed of the generator.</param>
    public static Tensor Counts(int n, int replicates, long seed)
    {
        if (n < 1 || replicates < 1) throw new DiffusionCacheException("bootstrap counts need n >= 1 and replicates >= 1");
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)seed);
        var draws = randint(0, n, [replicates, n], dtype: ScalarType.Int64, generator: generator);
        var counts = zeros([replicates, n], ScalarType.Float64).scatter_add_(1, draws, ones([replicates, n], ScalarType.Float64));
        return counts.MoveToOuterDisposeScope();
    }

    /// <summary>The percentile interval: the (1 - level)/2 and (1 + level)/2 quantiles of the replicates (linear
    /// interpolation between order statistics), around <paramref name="estimate"/>. NaN replicates (a statistic
    /// undefined on its resample: KID of a resample that drew a single sample n times has no pair of distinct
    /// samples) are left out; only when all are NaN is the interval NaN.</summary>
    /// <param name="estimate">The statistic on the full sample.</param>
    /// <param name="replicates">The statistic on each resample; not empty.</param>
    /// <param name="level">Coverage, in (0, 1).</param>
    public static Interval Percentile(double estimate, IReadOnlyList<double> replicates, double level = 0.95)
    {
        if (replicates.Count == 0) throw new DiffusionCacheException("percentile interval of no replicates");
        if (level is <= 0 or >= 1) throw new DiffusionCacheException($"interval level must be in (0, 1) (got {level})");
        var sorted = replicates.Where(r => !double.IsNaN(r)).Order().ToArray();
        if (sorted.Length == 0) return new Interval(estimate, double.NaN, double.NaN);
        return new Interval(estimate, Quantile(sorted, (1 - level) / 2), Quantile(sorted, (1 + level) / 2));
    }

    /// <summary>The q-quantile of sorted values, interpolating linearly between order statistics (R's type 7).</summary>
    public static double Quantile(IReadOnlyList<double> sorted, double q)
    {
        if (sorted.Count == 0) throw new DiffusionCacheException("quantile of no values");
        double h = (sorted.Count - 1) * Math.Clamp(q, 0, 1);
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, sorted.Count - 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>The Wilson score interval of a proportion, successes/trials, at normal quantile <paramref name="z"/>
    /// (1.96 for 95 %). Unlike the normal approximation it stays inside [0, 1] and is sensible near 0 and 1.</summary>
    /// <param name="successes">Number of successes, 0..trials.</param>
    /// <param name="trials">Number of trials, at least 1.</param>
    /// <param name="z">The standard normal quantile of the interval's coverage.</param>
    public static Interval Wilson(long successes, long trials, double z = 1.959963984540054)
    {
        if (trials < 1 || successes < 0 || successes > trials)
            throw new DiffusionCacheException($"Wilson interval needs 0 <= successes <= trials, trials >= 1 (got {successes}/{trials})");
        double n = trials, p = successes / n, z2 = z * z;
        double center = (p + z2 / (2 * n)) / (1 + z2 / n);
        double half = z / (1 + z2 / n) * Math.Sqrt(p * (1 - p) / n + z2 / (4 * n * n));
        return new Interval(p, Math.Max(0, center - half), Math.Min(1, center + half));
    }

    /// <summary>The standard normal quantile of a two-sided <paramref name="level"/> interval (1.96 for 0.95),
    /// by bisection on the normal CDF.</summary>
    public static double NormalQuantile(double level)
    {
        if (level is <= 0 or >= 1) throw new DiffusionCacheException($"interval level must be in (0, 1) (got {level})");
        double target = (1 + level) / 2, lo = 0, hi = 40;
        for (int i = 0; i < 200; i++)
        {
            double mid = (lo + hi) / 2;
            if (NormalCdf(mid) < target) lo = mid; else hi = mid;
        }
        return (lo + hi) / 2;
    }

    private static double NormalCdf(double x) => 0.5 * Erfc(-x / Math.Sqrt(2));

    /// <summary>erfc by the continued-fraction-free Chebyshev fit of Numerical Recipes (relative error &lt; 1.2e-7).</summary>
    private static double Erfc(double x)
    {
        double z = Math.Abs(x), t = 1 / (1 + 0.5 * z);
        double r = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
            t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? r : 2 - r;
    }
}
