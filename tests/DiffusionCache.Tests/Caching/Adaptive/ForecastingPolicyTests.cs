using DiffusionCache.Caching;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Caching.DeepCache;
using DiffusionCache.Pipelines;
using static DiffusionCache.Tests.Caching.BlockCaching.BlockCacheFixtures;

namespace DiffusionCache.Tests.Caching.Adaptive;

/// <summary>Forecasting on the static policies: order 0 is the paper's method bit for bit (the parity suites check
/// it against the reference), order 1-2 extrapolate and are counted as forecasts.</summary>
public sealed class ForecastingPolicyTests
{
    private const int Steps = 8;

    [Fact]
    public void Static_block_caching_forecasts_its_cached_changes()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(Steps);
        var schedule = Schedule(unet, Steps, _ => [0, 2, 3, 5]);
        using var reuse = new BlockCachePolicy(unet, schedule, Solver);
        using var explicitZero = new BlockCachePolicy(unet, schedule, Solver, forecastOrder: 0);
        using var taylor = new BlockCachePolicy(unet, schedule, Solver, forecastOrder: 1);
        using var a = CachedSampling.Sample(unet, s, request, reuse);
        using var a0 = CachedSampling.Sample(unet, s, request, explicitZero);
        using var b = CachedSampling.Sample(unet, s, request, taylor);
        Assert.True(BitwiseEqual(a, a0));
        Assert.False(BitwiseEqual(a, b));
        Assert.True(b.isfinite().all().item<bool>());
        Assert.Equal(taylor.Statistics.TotalReused, taylor.Statistics.TotalForecast);
        Assert.Equal(0, reuse.Statistics.TotalForecast);
        Assert.Contains("taylor1", taylor.Name);
    }

    [Fact]
    public void DeepCache_forecasts_the_deep_features_from_the_last_full_steps()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(Steps);
        using var reuse = new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(3), 0);
        using var taylor = new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(3), 0, forecastOrder: 2);
        using var a = CachedSampling.Sample(unet, s, request, reuse);
        using var b = CachedSampling.Sample(unet, s, request, taylor);
        Assert.False(BitwiseEqual(a, b));
        Assert.True(b.isfinite().all().item<bool>());
        Assert.Equal(taylor.Statistics.TotalReused, taylor.Statistics.TotalForecast);
        Assert.True(taylor.Statistics.PeakCacheBytes > reuse.Statistics.PeakCacheBytes);
        Assert.Throws<DiffusionCacheException>(() => new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(3), 0, forecastOrder: 3));
    }
}
