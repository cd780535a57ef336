using DiffusionCache.Caching;
using DiffusionCache.Caching.Adaptive;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Pipelines;
using static DiffusionCache.Tests.Caching.BlockCaching.BlockCacheFixtures;

namespace DiffusionCache.Tests.Caching.Adaptive;

/// <summary>Profile-free Block Caching on the tiny golden U-Net with CFG.</summary>
public sealed class OnlineBlockCachePolicyTests
{
    private const int Steps = 8;

    [Fact]
    public void A_tiny_threshold_is_bitwise_uncached_sampling_for_both_targets()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(Steps);
        using var uncached = DiffusionSampler.Sample(unet, s, request);
        foreach (var targets in BlockCachingTargets.All)
        {
            using var policy = new OnlineBlockCachePolicy(unet, new OnlineBlockCacheOptions(1e-12, Targets: targets));
            using var cached = CachedSampling.Sample(unet, s, request, policy);
            Assert.True(BitwiseEqual(uncached, cached), targets.Name);
            Assert.Equal(0, policy.Statistics.TotalReused);
        }
    }

    [Fact]
    public void A_huge_threshold_computes_each_block_in_the_warm_up_only_and_reports_it_as_a_schedule()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(Steps);
        using var uncached = DiffusionSampler.Sample(unet, s, request);
        using var policy = new OnlineBlockCachePolicy(unet, new OnlineBlockCacheOptions(1e9, Warmup: 3));
        using var cached = CachedSampling.Sample(unet, s, request, policy);
        Assert.False(BitwiseEqual(uncached, cached));
        Assert.True(cached.isfinite().all().item<bool>());
        var schedule = policy.DecisionsAsSchedule(Solver, Steps);
        schedule.CheckStructure();
        Assert.Equal(BlockCachingTargets.Transformers.Paths(unet), schedule.Blocks);
        foreach (var (block, i) in schedule.Blocks.Select((b, i) => (b, i)))
        {
            Assert.Equal([0, 1, 2], schedule.ComputeSteps[i]);
            Assert.Equal((3L, (long)Steps - 3), policy.Statistics[block]);
        }
        Assert.Equal(0, policy.CacheBytes);
    }

    [Fact]
    public void Between_the_extremes_blocks_decide_differently()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(Steps);
        // The median input change of a block between calls sits well inside (0.001, 100) on this model.
        using var policy = new OnlineBlockCachePolicy(unet, new OnlineBlockCacheOptions(0.3));
        using var cached = CachedSampling.Sample(unet, s, request, policy);
        var counts = policy.DecisionsAsSchedule(Solver, Steps).ComputeSteps.Select(c => c.Count).ToList();
        Assert.All(counts, c => Assert.InRange(c, 1, Steps));
        // Some calls reused, and some blocks recomputed after their first call.
        Assert.True(policy.Statistics.TotalReused > 0 && policy.Statistics.TotalComputed > counts.Count, string.Join(",", counts));
    }

    [Fact]
    public void Forecasting_counts_forecasts_and_changes_the_result()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(Steps);
        using var reuse = new OnlineBlockCachePolicy(unet, new OnlineBlockCacheOptions(1e9, Warmup: 3));
        using var taylor = new OnlineBlockCachePolicy(unet, new OnlineBlockCacheOptions(1e9, Warmup: 3, ForecastOrder: 2));
        using var a = CachedSampling.Sample(unet, s, request, reuse);
        using var b = CachedSampling.Sample(unet, s, request, taylor);
        Assert.False(BitwiseEqual(a, b));
        Assert.True(b.isfinite().all().item<bool>());
        Assert.Equal(taylor.Statistics.TotalReused, taylor.Statistics.TotalForecast);
    }

    [Theory]
    [InlineData(0, 1, 0, "threshold")]
    [InlineData(double.PositiveInfinity, 1, 0, "threshold")]
    [InlineData(0.1, 0, 0, "warm-up")]
    [InlineData(0.1, 1, 5, "order 5")]
    public void Bad_options_are_refused_naming_the_value(double threshold, int warmup, int order, string named)
    {
        using var unet = Model();
        var e = Assert.Throws<DiffusionCacheException>(() => new OnlineBlockCachePolicy(unet, new OnlineBlockCacheOptions(threshold, warmup, ForecastOrder: order)));
        Assert.Contains(named, e.Message);
    }
}
