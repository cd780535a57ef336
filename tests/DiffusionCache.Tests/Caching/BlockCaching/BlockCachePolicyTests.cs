using DiffusionCache.Caching;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Models.Seam;
using DiffusionCache.Pipelines;
using static DiffusionCache.Tests.Caching.BlockCaching.BlockCacheFixtures;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Caching.BlockCaching;

public class BlockCachePolicyTests
{
    private const int Steps = 6;

    /// <summary>Blocks differ: block i computes at 0 and every (2 + i % 3)-th step.</summary>
    private static IReadOnlyList<int> Sparse(int i) => [.. Enumerable.Range(0, Steps).Where(k => k % (2 + i % 3) == 0)];

    [Theory]
    [InlineData(BlockCacheMode.Residual)]
    [InlineData(BlockCacheMode.Output)]
    public void AnAllStepsScheduleIsBitwiseEqualToUncachedSampling(BlockCacheMode mode)
    {
        using var unet = Model();
        var request = Request(Steps);
        using var s = Scheduler();
        using var uncached = DiffusionSampler.Sample(unet, s, request);
        foreach (var targets in BlockCachingTargets.Supported)
        {
            using var policy = new BlockCachePolicy(unet, Schedule(unet, Steps, _ => [.. Enumerable.Range(0, Steps)], targets), Solver, mode);
            using var cached = CachedSampling.Sample(unet, s, request, policy);
            Assert.True(BitwiseEqual(uncached, cached), $"{targets} {mode}");
            Assert.Equal(0, policy.Statistics.TotalReused);
        }
    }

    [Fact]
    public void BothKindsTogetherReuseEveryScheduledBlockAndDifferFromEitherKindAlone()
    {
        using var unet = Model();
        var request = Request(Steps);
        using var s = Scheduler();
        Tensor Run(BlockCachingTargets targets, out BlockCachePolicy policy)
        {
            policy = new BlockCachePolicy(unet, Schedule(unet, Steps, Sparse, targets), Solver);
            return CachedSampling.Sample(unet, s, request, policy);
        }
        using var both = Run(BlockCachingTargets.TransformersAndResnets, out var bothPolicy);
        using var transformers = Run(BlockCachingTargets.Transformers, out var transformerPolicy);
        using var resnets = Run(BlockCachingTargets.Resnets, out var resnetPolicy);
        using (bothPolicy) using (transformerPolicy) using (resnetPolicy)
        {
            Assert.Equal(11 + 17, bothPolicy.Schedule.Blocks.Count);
            Assert.All(bothPolicy.Schedule.Blocks.Select((b, i) => (b, i)), e =>
                Assert.Equal(Steps - Sparse(e.i).Count, bothPolicy.Statistics[e.b].Reused));
            Assert.True(both.isfinite().all().item<bool>());
            Assert.False(both.allclose(transformers, rtol: 0, atol: 1e-4));
            Assert.False(both.allclose(resnets, rtol: 0, atol: 1e-4));
            Assert.Contains("BlockCache transformer2d,resnet2d", bothPolicy.Name);
        }
    }

    [Fact]
    public void CachesAreEmptiedBetweenGenerations()
    {
        using var unet = Model();
        var request = Request(Steps);
        using var s = Scheduler();
        using var policy = new BlockCachePolicy(unet, Schedule(unet, Steps, Sparse), Solver);
        using var first = CachedSampling.Sample(unet, s, request, policy);
        Assert.Equal(0, policy.CacheBytes);                  // freed when the generation ended
        Assert.True(policy.Statistics.PeakCacheBytes > 0);
        using var other = CachedSampling.Sample(unet, s, request with { Seed = 99 }, policy);
        using var second = CachedSampling.Sample(unet, s, request, policy);
        Assert.True(BitwiseEqual(first, second));
        Assert.False(BitwiseEqual(first, other));
    }

    [Fact]
    public void ReusingChangesTheResultAndResidualDiffersFromOutputMode()
    {
        using var unet = Model();
        var request = Request(Steps);
        using var s = Scheduler();
        var schedule = Schedule(unet, Steps, Sparse);
        using var uncached = DiffusionSampler.Sample(unet, s, request);
        using var residualPolicy = new BlockCachePolicy(unet, schedule, Solver, BlockCacheMode.Residual);
        using var outputPolicy = new BlockCachePolicy(unet, schedule, Solver, BlockCacheMode.Output);
        using var residual = CachedSampling.Sample(unet, s, request, residualPolicy);
        using var output = CachedSampling.Sample(unet, s, request, outputPolicy);
        Assert.False(residual.allclose(output, rtol: 0, atol: 1e-4));
        Assert.False(residual.allclose(uncached, rtol: 0, atol: 1e-4));
        Assert.True(residual.isfinite().all().item<bool>());
    }

    [Fact]
    public void StatisticsFollowTheSchedule()
    {
        using var unet = Model();
        using var s = Scheduler();
        var schedule = Schedule(unet, Steps, Sparse);
        using var policy = new BlockCachePolicy(unet, schedule, Solver);
        using var x = CachedSampling.Sample(unet, s, Request(Steps), policy);
        for (int i = 0; i < schedule.Blocks.Count; i++)
            Assert.Equal((schedule.ComputeSteps[i].Count, Steps - schedule.ComputeSteps[i].Count), policy.Statistics[schedule.Blocks[i]]);
        Assert.Equal(schedule.SkippedFraction, policy.Statistics.ReusedFraction, 12);
        Assert.Contains("BlockCache transformer2d", policy.Name);
    }

    [Fact]
    public void ReusingAnEmptyCacheIsRefused()
    {
        // An outer hook answers the first block at step 0 without running it, so the policy never fills its cache;
        // at step 1 the policy would have to reuse nothing.
        using var unet = Model();
        using var s = Scheduler();
        var schedule = Schedule(unet, Steps, _ => [0]);
        using var outer = unet.Seam.Attach(new AnswerFirstCall(schedule.Blocks[0]));
        using var policy = new BlockCachePolicy(unet, schedule, Solver);
        var e = Assert.Throws<DiffusionCacheException>(() => CachedSampling.Sample(unet, s, Request(Steps), policy));
        Assert.Contains($"{schedule.Blocks[0]}: cannot reuse at step 1, its cache is empty", e.Message);
        Assert.Equal(0, policy.CacheBytes);
    }

    private sealed class AnswerFirstCall(string path) : IBlockHook
    {
        private bool _answered;

        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            if (call.Path != path || _answered) return compute();
            _answered = true;
            return call.Input.alias();
        }
    }

    [Fact]
    public void MismatchesAreRefusedBeforeAnyWork()
    {
        using var unet = Model();
        using var s = Scheduler();
        var schedule = Schedule(unet, Steps, Sparse);
        var e = Assert.Throws<DiffusionCacheException>(() => new BlockCachePolicy(unet, schedule, "EulerDiscreteScheduler"));
        Assert.Contains("solver", e.Message);
        using var policy = new BlockCachePolicy(unet, schedule, Solver);
        var counter = new CallCounter();
        using var attached = unet.Seam.Attach(counter);
        e = Assert.Throws<DiffusionCacheException>(() => CachedSampling.Sample(unet, s, Request(Steps + 1), policy));
        Assert.Contains($"schedule is for {Steps} steps, sampling runs {Steps + 1}", e.Message);
        Assert.Equal(0, counter.Calls);
    }

    private sealed class CallCounter : IBlockHook
    {
        public int Calls { get; private set; }

        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            Calls++;
            return compute();
        }
    }
}
