using System.Globalization;
using DiffusionCache.Caching;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Caching.DeepCache;
using DiffusionCache.Pipelines;
using TorchSharp;

namespace DiffusionCache.Cli.Commands;

/// <summary>Turns a <c>--cache</c> argument into a policy factory for a pipeline, solver and step count, validating
/// it before any work. "blockcache" uses the schedule the model ships for that solver and step count
/// (<c>cache/schedule-{solver}-{steps}.json</c>); "blockcache:ss" adds the scale-shift adjustment shipped for it
/// (<c>cache/scaleshift-{solver}-{steps}.safetensors</c>; not the default: on the embedded model it did not improve
/// FID, see its model card). Without a schedule, "blockcache" falls back to no cache and says so.
/// "deepcache[:N[:branch[:center:pow]]]" is DeepCache uniform 1:N (default N=3, branch 0), or non-uniform 1:N
/// with a center step and power when those are given.</summary>
internal sealed record CacheChoice(string Name, Func<ICachePolicy>? Create) : IDisposable
{
    /// <summary>What the policies share and the choice owns (a loaded scale-shift adjustment).</summary>
    private IDisposable? Owned { get; init; }

    public void Dispose() => Owned?.Dispose();

    /// <param name="solver">a solver name, or null for the pipeline folder's own scheduler.</param>
    public static CacheChoice Resolve(string choice, LatentDiffusionPipeline pipeline, string? solver, int steps)
    {
        string solverClass = pipeline.SolverClass(solver);
        solver ??= Schedulers.Solvers.NameOf(solverClass);
        switch (choice)
        {
            case "none":
                return new("no cache", null);
            case "deepcache":
            case var _ when choice.StartsWith("deepcache:", StringComparison.Ordinal):
                return DeepCache(choice, pipeline, steps);
            case "blockcache":
            {
                string path = ShippedSchedule(pipeline, solver, steps);
                if (!File.Exists(path))
                {
                    Console.WriteLine($"note: the model ships no Block Caching schedule for {solver} with {steps} steps ({path}); sampling uncached");
                    return new("no cache", null);
                }
                return FromSchedule(path, pipeline, solverClass, steps);
            }
            case "blockcache:ss":
            {
                string path = ShippedSchedule(pipeline, solver, steps), adjustment = ShippedAdjustment(pipeline, solver, steps);
                if (!File.Exists(path) || !File.Exists(adjustment))
                    throw new DiffusionCacheException($"--cache blockcache:ss: the model ships no schedule and scale-shift adjustment for {solver} " +
                        $"with {steps} steps ({path}, {adjustment}); train one with 'diffcache train scaleshift'");
                return FromSchedule(path, pipeline, solverClass, steps, adjustment);
            }
            default:
                if (File.Exists(choice)) return FromSchedule(choice, pipeline, solverClass, steps);
                throw new DiffusionCacheException($"--cache '{choice}': expected blockcache, blockcache:ss, deepcache, none or a schedule JSON file");
        }
    }

    private static CacheChoice DeepCache(string choice, LatentDiffusionPipeline pipeline, int steps)
    {
        var parts = choice.Split(':')[1..];
        string usage = $"--cache '{choice}': expected deepcache, deepcache:N, deepcache:N:branch or deepcache:N:branch:center:pow";
        if (parts.Length is 3 or > 4) throw new DiffusionCacheException(usage);
        int Integer(int i, int fallback) => i >= parts.Length ? fallback
            : int.TryParse(parts[i], CultureInfo.InvariantCulture, out int v) ? v : throw new DiffusionCacheException(usage);
        int interval = Integer(0, 3), branch = Integer(1, 0);
        var schedule = parts.Length == 4
            ? DeepCacheSchedule.NonUniform(interval, Integer(2, 0), double.TryParse(parts[3], CultureInfo.InvariantCulture, out double pow) ? pow : throw new DiffusionCacheException(usage))
            : DeepCacheSchedule.Uniform(interval);
        _ = schedule.Select(steps);                 // a bad N, center or power fails here, before any work
        _ = DeepCachePlan.For(pipeline.UNet, branch);
        return new($"DeepCache {schedule} branch {branch}", () => new DeepCachePolicy(pipeline.UNet, schedule, branch));
    }

    public static string ShippedSchedule(LatentDiffusionPipeline pipeline, string solver, int steps) =>
        Path.Combine(pipeline.Folder, "cache", $"schedule-{solver}-{steps}.json");

    public static string ShippedAdjustment(LatentDiffusionPipeline pipeline, string solver, int steps) =>
        Path.Combine(pipeline.Folder, "cache", $"scaleshift-{solver}-{steps}.safetensors");

    private static CacheChoice FromSchedule(string path, LatentDiffusionPipeline pipeline, string solverClass, int steps,
        string? adjustmentPath = null)
    {
        var schedule = CacheSchedule.Load(path);
        schedule.Validate(pipeline.UNet, solverClass, steps);
        var adjustment = adjustmentPath is null ? null : ScaleShiftAdjustment.Load(adjustmentPath);
        adjustment?.Validate(schedule);
        // Its weights stay float32 (it casts what it adds to the cached value's type), on the U-Net's device.
        adjustment?.to(pipeline.UNet.parameters().First().device);
        string name = $"Block Caching{(schedule.Delta is double d ? $" δ={d:G3}" : "")} ({schedule.SkippedFraction:P0} of block evaluations skipped)" +
            (adjustment is null ? "" : " + scale-shift");
        // The policies share the adjustment's weights (read-only at inference); the choice owns it.
        return new(name, () => new BlockCachePolicy(pipeline.UNet, schedule, solverClass, adjustment: adjustment)) { Owned = adjustment };
    }
}
