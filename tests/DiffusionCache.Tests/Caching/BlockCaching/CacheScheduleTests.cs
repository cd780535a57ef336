using DiffusionCache.Analysis;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Caching.BlockCaching;

public class CacheScheduleTests
{
    private static CacheSchedule Built() => ScheduleBuilder.FromProfile(BlockProfileTests.Sample(), 0.2);

    [Fact]
    public void JsonRoundTripKeepsEverything()
    {
        using var dir = new TempFolder();
        var schedule = Built();
        schedule.Save(dir.File("schedule.json"));
        var back = CacheSchedule.Load(dir.File("schedule.json"));
        Assert.Equal(schedule.Model, back.Model);
        Assert.Equal(schedule.Solver, back.Solver);
        Assert.Equal(schedule.NumInferenceSteps, back.NumInferenceSteps);
        Assert.Equal(schedule.Steps, back.Steps);
        Assert.Equal(schedule.Targets, back.Targets);
        Assert.Equal(schedule.Delta, back.Delta);
        Assert.Equal(schedule.Blocks, back.Blocks);
        Assert.Equal(schedule.ComputeSteps, back.ComputeSteps);
        Assert.Equal(schedule.ToJson(), back.ToJson());
    }

    [Fact]
    public void AHandWrittenScheduleIsRead()
    {
        var schedule = CacheSchedule.FromJson("""
            {
              // written by hand
              "model": "tiny-sd-unet-bc",
              "solver": "DDIMScheduler",
              "num_inference_steps": 6,
              "targets": "resnet2d",
              "compute_steps": {
                "mid_block.resnets.1": [0, 3],
                "down_blocks.0.resnets.0": [4, 0, 2],
              },
            }
            """);
        Assert.Equal(6, schedule.Steps);
        Assert.Null(schedule.Delta);
        Assert.Equal(BlockCachingTargets.Resnets, schedule.Targets);
        Assert.Equal(["mid_block.resnets.1", "down_blocks.0.resnets.0"], schedule.Blocks);
        Assert.Equal([0, 2, 4], schedule.ComputeSteps[1]);   // sorted
        Assert.Equal(1 - 5.0 / 12, schedule.SkippedFraction, 15);
    }

    [Fact]
    public void ASchedulerOverBothKindsRoundTripsAndValidatesAgainstTheModel()
    {
        using var unet = BlockCacheFixtures.Model();
        var schedule = BlockCacheFixtures.Schedule(unet, 6, i => i % 2 == 0 ? [0, 3] : [0], BlockCachingTargets.TransformersAndResnets);
        var back = CacheSchedule.FromJson(schedule.ToJson());
        Assert.Contains("\"targets\": \"transformer2d,resnet2d\"", schedule.ToJson());
        Assert.Same(BlockCachingTargets.TransformersAndResnets, back.Targets);
        Assert.Equal(schedule.Blocks, back.Blocks);
        back.Validate(unet, BlockCacheFixtures.Solver, 6);
        // A resnet path in a transformer-only schedule is refused, in a combined one accepted.
        var mixed = back with { Blocks = ["down_blocks.0.resnets.0", "down_blocks.0.attentions.0"], ComputeSteps = [[0], [0]] };
        mixed.Validate(unet, BlockCacheFixtures.Solver, 6);
        var e = Assert.Throws<DiffusionCacheException>(() => (mixed with { Targets = BlockCachingTargets.Transformers }).Validate(unet, BlockCacheFixtures.Solver, 6));
        Assert.Contains("down_blocks.0.resnets.0", e.Message);
    }

    [Theory]
    [InlineData("""{"model":"m","solver":"DDIMScheduler","num_inference_steps":4,"targets":"transformer2d","compute_steps":{"a":[1,2]}}""", "must include step 0")]
    [InlineData("""{"model":"m","solver":"DDIMScheduler","num_inference_steps":4,"targets":"transformer2d","compute_steps":{"a":[0,2,2]}}""", "increasing and distinct")]
    [InlineData("""{"model":"m","solver":"DDIMScheduler","num_inference_steps":4,"targets":"transformer2d","compute_steps":{"a":[0,4]}}""", "outside 0..3")]
    [InlineData("""{"model":"m","solver":"DDIMScheduler","num_inference_steps":4,"targets":"transformer2d","compute_steps":{"a":[0,1.5]}}""", "not an integer")]
    [InlineData("""{"model":"m","solver":"DDIMScheduler","num_inference_steps":4,"targets":"transformer2d","compute_steps":{}}""", "no blocks")]
    [InlineData("""{"model":"m","solver":"DDIMScheduler","num_inference_steps":4,"targets":"attention","compute_steps":{"a":[0]}}""", "unknown cache targets 'attention'")]
    [InlineData("""{"model":"m","solver":"DDIMScheduler","num_inference_steps":4,"targets":"transformer2d","delta":0,"compute_steps":{"a":[0]}}""", "delta must be > 0")]
    [InlineData("""{"model":"m","solver":"DDIMScheduler","num_inference_steps":4,"targets":"transformer2d","compute_steps":{"a":[0]},"mode":"output"}""", "unknown schedule field 'mode'")]
    [InlineData("""{"model":"m","num_inference_steps":4,"targets":"transformer2d","compute_steps":{"a":[0]}}""", "'solver' is missing")]
    [InlineData("""{"model":"m","solver":"DDIMScheduler","num_inference_steps":4,""", "not valid JSON")]
    public void BadFilesAreRefusedWithTheReason(string json, string reason)
    {
        var e = Assert.Throws<DiffusionCacheException>(() => CacheSchedule.FromJson(json));
        Assert.Contains(reason, e.Message);
    }

    [Fact]
    public void ValidationNamesTheFirstMismatchWithModelSolverAndSteps()
    {
        using var unet = BlockCacheFixtures.Model();
        var schedule = BlockCacheFixtures.Schedule(unet, 10, _ => [0, 5]);
        schedule.Validate(unet, "DDIMScheduler", 10);

        var e = Assert.Throws<DiffusionCacheException>(() => schedule.Validate(unet, "EulerDiscreteScheduler", 20));
        Assert.Contains("solver DDIMScheduler, sampling uses EulerDiscreteScheduler", e.Message);
        e = Assert.Throws<DiffusionCacheException>(() => schedule.Validate(unet, "DDIMScheduler", 20));
        Assert.Contains("for 10 steps, sampling runs 20", e.Message);
        e = Assert.Throws<DiffusionCacheException>(() => (schedule with { Blocks = [.. schedule.Blocks.SkipLast(1), "up_blocks.2.attentions.7"] })
            .Validate(unet, "DDIMScheduler", 10));
        Assert.Contains("unknown block path 'up_blocks.2.attentions.7'", e.Message);
        // A resnet path is not a transformer block.
        e = Assert.Throws<DiffusionCacheException>(() => (schedule with { Blocks = ["mid_block.resnets.0", .. schedule.Blocks.Skip(1)] })
            .Validate(unet, "DDIMScheduler", 10));
        Assert.Contains("unknown block path 'mid_block.resnets.0'", e.Message);
        e = Assert.Throws<DiffusionCacheException>(() => (schedule with { Delta = -1 }).Validate(unet, "EulerDiscreteScheduler", 20));
        Assert.Contains("delta must be > 0", e.Message);
        Assert.Throws<DiffusionCacheException>(() => (schedule with { ComputeSteps = [[0]] }).Validate(unet, "DDIMScheduler", 10));
    }

    [Fact]
    public void MacSpeedupCountsOnlySkippedEvaluationsLessTheirPassThrough()
    {
        var schedule = Built();   // block 0 skips 2 of 4 steps, block 1 none
        var macs = new MacReport(1000, new Dictionary<string, long> { [schedule.Blocks[0]] = 100, [schedule.Blocks[1]] = 300 })
        {
            PassThroughBySite = new Dictionary<string, long> { [schedule.Blocks[0]] = 10 },
        };
        Assert.Equal(4000.0 / (4000 - 2 * 90), schedule.MacSpeedup(macs), 12);
        var all = schedule with { ComputeSteps = [[0, 1, 2, 3], [0, 1, 2, 3]] };
        Assert.Equal(1.0, all.MacSpeedup(macs));
    }
}
