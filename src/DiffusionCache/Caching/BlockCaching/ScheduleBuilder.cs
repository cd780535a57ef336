namespace DiffusionCache.Caching.BlockCaching;

/// <summary>
/// The automatic cache schedule (Block Caching eq. 7) from a profile mean m(i,k) and a threshold δ &gt; 0. Each block
/// independently: step 0 computes (the cache is empty); then for s = 1..N-1 the change accumulated since the last
/// compute step a, <c>acc = m(i,a+1) + ... + m(i,s)</c> (float64, summed left to right), decides: reuse at s iff
/// acc &lt;= δ, otherwise compute at s and restart acc at 0. No later step is forced to compute (not even the last).
/// </summary>
public static class ScheduleBuilder
{
    /// <summary>Per block, the sorted compute steps. <paramref name="mean"/> is <c>[block][step]</c>; column 0 is
    /// not used (step 0 always computes).</summary>
    public static int[][] FromMean(IReadOnlyList<IReadOnlyList<double>> mean, double delta)
    {
        ArgumentNullException.ThrowIfNull(mean);
        CheckDelta(delta);
        if (mean.Count == 0) throw new DiffusionCacheException("the profile mean has no blocks");
        int steps = mean[0].Count;
        if (steps == 0 || mean.Any(row => row.Count != steps))
            throw new DiffusionCacheException("the profile mean must have one non-empty row of equal length per block");
        var result = new int[mean.Count][];
        for (int i = 0; i < mean.Count; i++)
        {
            var compute = new List<int> { 0 };
            double acc = 0.0;
            for (int s = 1; s < steps; s++)
            {
                acc += mean[i][s];
                if (acc <= delta) continue;   // reuse: the change since the cache was computed stays within δ
                compute.Add(s);
                acc = 0.0;
            }
            result[i] = [.. compute];
        }
        return result;
    }

    /// <summary>The schedule of a profile's mean at threshold δ, for the profile's model, solver, step count and
    /// blocks.</summary>
    public static CacheSchedule FromProfile(BlockProfile profile, double delta)
    {
        ArgumentNullException.ThrowIfNull(profile);
        CheckDelta(delta);
        profile.Validate();
        var schedule = new CacheSchedule
        {
            Model = profile.Model,
            Solver = profile.Solver,
            NumInferenceSteps = profile.NumInferenceSteps,
            Steps = profile.Steps,
            Targets = profile.Targets,
            Delta = delta,
            Blocks = profile.Blocks,
            ComputeSteps = FromMean(profile.Mean, delta),
        };
        schedule.CheckStructure();
        return schedule;
    }

    /// <summary>δ must be a number &gt; 0 (+∞ is allowed: only step 0 computes).</summary>
    public static void CheckDelta(double delta)
    {
        if (!(delta > 0)) throw new DiffusionCacheException($"delta must be > 0, got {delta}");
    }
}
