using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using DiffusionCache.Tests.TestSupport;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Caching.BlockCaching;

/// <summary>The golden block-caching model (tiny, random weights) and inputs shaped like its cases.</summary>
internal static class BlockCacheFixtures
{
    public const string Solver = "DDIMScheduler";

    public static string ModelDir => Golden.Path("blockcache", "models", "tiny-sd-unet-bc");

    public static DiffusionUNet Model() => UNetLoader.Load(ModelDir);

    public static SchedulerConfig SchedulerConfig() =>
        DiffusionCache.Schedulers.SchedulerConfig.FromFile(Path.Combine(ModelDir, "scheduler_config.json"));

    public static IScheduler Scheduler() => SchedulerFactory.Create(SchedulerConfig());

    /// <summary>One CFG generation at 8x8 with a [1,6,16] context, guidance 4.</summary>
    public static SamplingRequest Request(int steps = 6, long seed = 5)
    {
        var g = new Generator(21);
        return new SamplingRequest
        {
            Steps = steps,
            Batch = 1,
            Height = 8,
            Width = 8,
            Context = randn([1, 6, 16], generator: g),
            UnconditionalContext = randn([1, 6, 16], generator: g),
            GuidanceScale = 4.0,
            Seed = seed,
        };
    }

    /// <summary>A schedule over every transformer of the model with the given compute steps for each block.</summary>
    public static CacheSchedule Schedule(DiffusionUNet unet, int steps, Func<int, IReadOnlyList<int>> computeSteps,
        BlockCachingTargets? targets = null)
    {
        targets ??= BlockCachingTargets.Transformers;
        var blocks = targets.Paths(unet);
        return new CacheSchedule
        {
            Model = "tiny-sd-unet-bc",
            Solver = Solver,
            NumInferenceSteps = steps,
            Steps = steps,
            Targets = targets,
            Blocks = blocks,
            ComputeSteps = [.. blocks.Select((_, i) => computeSteps(i))],
        };
    }

    public static bool BitwiseEqual(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();
}
