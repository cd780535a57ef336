using DiffusionCache.Caching;
using DiffusionCache.Caching.Adaptive;
using DiffusionCache.Caching.BlockCaching;

namespace DiffusionCache.Tests.Caching;

public sealed class CacheSpecTests
{
    [Fact]
    public void Ucache_takes_threshold_window_and_named_options()
    {
        var spec = CacheSpec.Parse("ucache:0.25:0.1:0.8:decay=0.9:relative=0:reset=0:probe=first-block:taylor2");
        Assert.Equal(CacheMethod.UCache, spec.Method);
        Assert.Equal(new StepCacheOptions(0.25, 0.1, 0.8, 0.9, Relative: false, Reset: false, Probe: StepProbe.FirstBlock, ForecastOrder: 2), spec.UCache);
        Assert.Equal(new StepCacheOptions(0.5), CacheSpec.Parse("ucache:0.5").UCache);   // stable-diffusion.cpp's defaults otherwise
    }

    [Fact]
    public void Blockcache_online_takes_threshold_warmup_and_targets_in_any_order()
    {
        var spec = CacheSpec.Parse("blockcache-online:0.3:resnet2d:4");
        Assert.Equal(new OnlineBlockCacheOptions(0.3, 4, BlockCachingTargets.Resnets), spec.Online);
        Assert.Equal(BlockCachingTargets.Transformers, CacheSpec.Parse("blockcache-online:0.3").Online!.EffectiveTargets);
    }

    [Fact]
    public void A_schedule_file_may_be_forecast_and_a_bare_unknown_word_is_a_file()
    {
        var spec = CacheSpec.Parse("out/schedule.json:taylor1");
        Assert.Equal(("out/schedule.json", 1), (spec.ScheduleFile, spec.ForecastOrder));
        Assert.Equal("fastcache", CacheSpec.Parse("fastcache").ScheduleFile);
        Assert.Throws<DiffusionCacheException>(() => CacheSpec.Parse("fastcache:3"));
    }

    [Fact]
    public void Blockcache_takes_a_delta_for_the_shipped_profile_but_not_with_scale_shift()
    {
        var spec = CacheSpec.Parse("blockcache:0.161:taylor1");
        Assert.Equal((CacheMethod.BlockCache, (double?)0.161, 1, (string?)null), (spec.Method, spec.Delta, spec.ForecastOrder, spec.ScheduleFile));
        Assert.Null(CacheSpec.Parse("blockcache").Delta);
        Assert.Contains("δ must be > 0", Assert.Throws<DiffusionCacheException>(() => CacheSpec.Parse("blockcache:0")).Message);
        Assert.Contains("not a finite number", Assert.Throws<DiffusionCacheException>(() => CacheSpec.Parse("blockcache:NaN")).Message);
        Assert.Contains("trained for one schedule", Assert.Throws<DiffusionCacheException>(() => CacheSpec.Parse("blockcache:0.2:ss")).Message);
    }

    [Fact]
    public void A_schedule_file_takes_the_adjustment_beside_it_or_a_named_one()
    {
        var beside = CacheSpec.Parse("out/s.json:ss");
        Assert.Equal(("out/s.json", true, (string?)null), (beside.ScheduleFile, beside.ScaleShift, beside.AdjustmentFile));
        var named = CacheSpec.Parse("out/s.json:ss=out/a.safetensors:taylor1");
        Assert.Equal(("out/s.json", true, "out/a.safetensors", 1), (named.ScheduleFile, named.ScaleShift, named.AdjustmentFile, named.ForecastOrder));
        Assert.Throws<DiffusionCacheException>(() => CacheSpec.Parse("out/s.json:ss="));
        Assert.False(CacheSpec.Parse("out/s.json").ScaleShift);
    }

    [Fact]
    public void Deepcache_defaults_to_N_3_branch_0()
    {
        Assert.Equal((3, 0, (int?)null, (double?)null), CacheSpec.Parse("deepcache").DeepCache);
        Assert.Equal((5, 1, (int?)15, (double?)1.4), CacheSpec.Parse("deepcache:5:1:15:1.4").DeepCache);
    }
}
