using DiffusionCache.Caching;
using DiffusionCache.Caching.Adaptive;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using static DiffusionCache.Tests.Caching.BlockCaching.BlockCacheFixtures;

namespace DiffusionCache.Tests.Caching.Adaptive;

/// <summary>ucache / First-Block-Cache on the tiny golden U-Net with CFG: a tiny threshold is exactly uncached
/// sampling, a huge one reuses every call in the window, and the probes and forecasting behave as documented.</summary>
public sealed class StepCachePolicyTests
{
    private const int Steps = 8;

    [Fact]
    public void A_tiny_threshold_is_bitwise_uncached_sampling()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(Steps);
        using var uncached = DiffusionSampler.Sample(unet, s, request);
        using var policy = new StepCachePolicy(unet, new StepCacheOptions(1e-12, Start: 0, End: 1));
        using var cached = CachedSampling.Sample(unet, s, request, policy);
        Assert.True(BitwiseEqual(uncached, cached));
        Assert.Equal((Steps, 0L), policy.Statistics[DiffusionUNet.ModelPath]);
        Assert.All(policy.Decisions, Assert.True);
    }

    [Fact]
    public void A_huge_threshold_reuses_every_call_in_the_window_after_the_first_computed_one()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(Steps);
        using var uncached = DiffusionSampler.Sample(unet, s, request);
        using var policy = new StepCachePolicy(unet, new StepCacheOptions(1e9, Start: 0.25, End: 0.75));
        using var cached = CachedSampling.Sample(unet, s, request, policy);
        // Calls 0, 1 (before 25 %) and 6, 7 (from 75 %) compute; 2..5 reuse.
        Assert.Equal([true, true, false, false, false, false, true, true], policy.Decisions);
        Assert.Equal((4L, 4L), policy.Statistics[DiffusionUNet.ModelPath]);
        Assert.False(BitwiseEqual(uncached, cached));
        Assert.True(cached.isfinite().all().item<bool>());
        Assert.Equal(0, policy.CacheBytes);   // freed at the end of the generation
    }

    [Fact]
    public void The_first_block_probe_abandons_the_rest_of_a_reused_call_without_a_trace()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(Steps);
        using var byInput = new StepCachePolicy(unet, new StepCacheOptions(1e9, Start: 0.25, End: 0.75));
        using var byFirstBlock = new StepCachePolicy(unet, new StepCacheOptions(1e9, Start: 0.25, End: 0.75, Probe: StepProbe.FirstBlock));
        using var a = CachedSampling.Sample(unet, s, request, byInput);
        using var b = CachedSampling.Sample(unet, s, request, byFirstBlock);
        Assert.Equal(byInput.Decisions, byFirstBlock.Decisions);
        Assert.True(BitwiseEqual(a, b));   // same decisions, same answers: the abandoned calls changed nothing
    }

    [Fact]
    public void The_threshold_decides_between_the_extremes()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(Steps);
        int Reused(double threshold)
        {
            using var policy = new StepCachePolicy(unet, new StepCacheOptions(threshold, Start: 0, End: 1));
            using var _ = CachedSampling.Sample(unet, s, request, policy);
            return (int)policy.Statistics.TotalReused;
        }
        int low = Reused(0.02), mid = Reused(0.3), high = Reused(5);
        Assert.True(low <= mid && mid <= high, $"{low} {mid} {high}");
        Assert.True(low < high);
    }

    [Fact]
    public void Forecasting_extrapolates_the_residual_and_counts_forecasts()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(Steps);
        using var reuse = new StepCachePolicy(unet, new StepCacheOptions(1e9, Start: 0.4, End: 1));
        using var taylor = new StepCachePolicy(unet, new StepCacheOptions(1e9, Start: 0.4, End: 1, ForecastOrder: 1));
        using var a = CachedSampling.Sample(unet, s, request, reuse);
        using var b = CachedSampling.Sample(unet, s, request, taylor);
        Assert.False(BitwiseEqual(a, b));
        Assert.True(b.isfinite().all().item<bool>());
        Assert.Equal(taylor.Statistics.TotalReused, taylor.Statistics.TotalForecast);
        Assert.Equal(0, reuse.Statistics.TotalForecast);
        Assert.True(taylor.Statistics.PeakCacheBytes > reuse.Statistics.PeakCacheBytes);   // two residuals held
    }

    [Theory]
    [InlineData(0, 0.1, 0.9, 1.0, 0, "threshold")]
    [InlineData(double.NaN, 0.1, 0.9, 1.0, 0, "threshold")]
    [InlineData(-1, 0.1, 0.9, 1.0, 0, "threshold")]
    [InlineData(0.1, 0.9, 0.9, 1.0, 0, "start 0.9, end 0.9")]
    [InlineData(0.1, 0.5, 1.5, 1.0, 0, "end 1.5")]
    [InlineData(0.1, 0.1, 0.9, 0, 0, "decay")]
    [InlineData(0.1, 0.1, 0.9, 1.0, 3, "order 3")]
    public void Bad_options_are_refused_naming_the_value(double threshold, double start, double end, double decay, int order, string named)
    {
        using var unet = Model();
        var e = Assert.Throws<DiffusionCacheException>(() => new StepCachePolicy(unet, new StepCacheOptions(threshold, start, end, decay, ForecastOrder: order)));
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void A_model_whose_prediction_is_not_shaped_like_its_sample_is_refused()
    {
        var config = UNet2DConditionConfig.FromFile(Path.Combine(ModelDir, "config.json"));
        using var learnedVariance = new UNet2DConditionModel(config with { OutChannels = 2 * config.InChannels });
        var e = Assert.Throws<DiffusionCacheException>(() => new StepCachePolicy(learnedVariance, new StepCacheOptions(0.1)));
        Assert.Contains("out_channels", e.Message);
    }
}
