using DiffusionCache.Caching;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Caching.DeepCache;
using DiffusionCache.Pipelines;

namespace DiffusionCache.Cli.Commands;

/// <summary>Turns a <c>--cache</c> argument into a policy factory for a pipeline, solver and step count, validating
/// it before any work. "blockcache" uses the schedule the model ships for that solver and step count
/// (<c>cache/schedule-{solver}-{steps}.json</c>); without one it falls back to no cache and says so.</summary>
internal sealed record CacheChoice(string Name, Func<ICachePolicy>? Create)
{
    public static CacheChoice Resolve(string choice, ClassConditionalPipeline pipeline, string solver, int steps)
    {
        string solverClass = Schedulers.Solvers.For(solver, pipeline.SchedulerConfig).ClassName;
        switch (choice)
        {
            case "none":
                return new("no cache", null);
            case "deepcache":
            {
                var schedule = DeepCacheSchedule.Uniform(3);
                _ = DeepCachePlan.For(pipeline.UNet, 0);
                return new("DeepCache N=3 branch 0", () => new DeepCachePolicy(pipeline.UNet, schedule, 0));
            }
            case "blockcache":
            {
                string path = Path.Combine(pipeline.Folder, "cache", $"schedule-{solver}-{steps}.json");
                if (!File.Exists(path))
                {
                    Console.WriteLine($"note: the model ships no Block Caching schedule for {solver} with {steps} steps ({path}); sampling uncached");
                    return new("no cache", null);
                }
                return FromSchedule(path, pipeline, solverClass, steps);
            }
            default:
                if (File.Exists(choice)) return FromSchedule(choice, pipeline, solverClass, steps);
                throw new DiffusionCacheException($"--cache '{choice}': expected blockcache, deepcache, none or a schedule JSON file");
        }
    }

    private static CacheChoice FromSchedule(string path, ClassConditionalPipeline pipeline, string solverClass, int steps)
    {
        var schedule = CacheSchedule.Load(path);
        schedule.Validate(pipeline.UNet, solverClass, steps);
        string name = $"Block Caching{(schedule.Delta is double d ? $" δ={d:G3}" : "")} ({schedule.SkippedFraction:P0} of block evaluations skipped)";
        return new(name, () => new BlockCachePolicy(pipeline.UNet, schedule, solverClass));
    }
}
