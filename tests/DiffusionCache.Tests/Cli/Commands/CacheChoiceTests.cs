using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Caching.DeepCache;
using DiffusionCache.Cli.Commands;
using DiffusionCache.Pipelines;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>--cache</c> arguments on the embedded model: each resolves to the policy it names, and a bad one
/// fails with a message naming what is wrong before any sampling.</summary>
public sealed class CacheChoiceTests : IDisposable
{
    private readonly ClassConditionalPipeline _pipeline = ClassConditionalPipeline.Load(Repository.Path("models", "fashion-ldm"));

    public void Dispose() => _pipeline.Dispose();

    [Fact]
    public void None_has_no_policy()
    {
        Assert.Null(CacheChoice.Resolve("none", _pipeline, "ddim", 50).Create);
    }

    [Fact]
    public void Blockcache_uses_the_shipped_schedule_for_the_solver_and_step_count()
    {
        using var choice = CacheChoice.Resolve("blockcache", _pipeline, "ddim", 20);
        using var policy = Assert.IsType<BlockCachePolicy>(choice.Create!());
        var shipped = CacheSchedule.Load(Repository.Path("models", "fashion-ldm", "cache", "schedule-ddim-20.json"));
        Assert.Equal(shipped.Delta, policy.Schedule.Delta);
        Assert.Equal(20, policy.Schedule.NumInferenceSteps);
        Assert.Null(policy.Adjustment);
    }

    [Fact]
    public void Blockcache_ss_adds_the_shipped_scale_shift_adjustment()
    {
        using var choice = CacheChoice.Resolve("blockcache:ss", _pipeline, "ddim", 50);
        using var policy = Assert.IsType<BlockCachePolicy>(choice.Create!());
        Assert.NotNull(policy.Adjustment);
        Assert.Equal(50, policy.Schedule.NumInferenceSteps);
        Assert.EndsWith("+ scale-shift", choice.Name);
        Assert.Contains("no schedule and scale-shift adjustment", Assert.Throws<DiffusionCacheException>(
            () => CacheChoice.Resolve("blockcache:ss", _pipeline, "ddim", 37)).Message);
    }

    [Theory]
    [InlineData("ddim", 50, "blockcache:ss")]
    [InlineData("ddim", 20, "blockcache:ss")]
    [InlineData("dpm++", 50, "blockcache:ss")]
    [InlineData("dpm++", 20, "blockcache:ss")]
    [InlineData("ddim", 37, "blockcache")]   // nothing shipped: blockcache, which then samples uncached
    [InlineData("plms", 50, "blockcache")]
    public void The_default_adds_scale_shift_wherever_the_model_ships_an_adjustment(string solver, int steps, string expected)
    {
        Assert.Equal(expected, CacheChoice.Default(_pipeline, solver, steps));
    }

    [Fact]
    public void The_default_without_a_solver_reads_the_pipelines_own_scheduler()
    {
        // The embedded model's scheduler_config is DDIM: the same choice as naming it.
        Assert.Equal(CacheChoice.Default(_pipeline, "ddim", 50), CacheChoice.Default(_pipeline, null, 50));
    }

    [Fact]
    public void Blockcache_with_a_delta_builds_the_schedule_from_the_shipped_profile()
    {
        var profile = BlockProfile.Load(Repository.Path("models", "fashion-ldm", "cache", "profile-ddim-50.json"));
        using var loose = CacheChoice.Resolve("blockcache:1.29", _pipeline, "ddim", 50);
        using var policy = Assert.IsType<BlockCachePolicy>(loose.Create!());
        Assert.Equal(1.29, policy.Schedule.Delta);
        Assert.Equal(ScheduleBuilder.FromProfile(profile, 1.29).ComputeSteps, policy.Schedule.ComputeSteps);
        // A larger δ skips more: the knob of the frontier.
        using var tight = CacheChoice.Resolve("blockcache:0.0402", _pipeline, "ddim", 50);
        using var tightPolicy = Assert.IsType<BlockCachePolicy>(tight.Create!());
        Assert.True(tightPolicy.Schedule.SkippedFraction < policy.Schedule.SkippedFraction);
        Assert.Contains("ships no Block Caching profile", Assert.Throws<DiffusionCacheException>(
            () => CacheChoice.Resolve("blockcache:0.3", _pipeline, "ddim", 37)).Message);
    }

    [Fact]
    public void A_schedule_file_with_ss_uses_the_adjustment_trained_beside_it()
    {
        using var dir = new TempFolder();
        string cache = Repository.Path("models", "fashion-ldm", "cache");
        string schedule = dir.File("fast.json");
        File.Copy(Path.Combine(cache, "schedule-ddim-50.json"), schedule);
        var e = Assert.Throws<DiffusionCacheException>(() => CacheChoice.Resolve(schedule + ":ss", _pipeline, "ddim", 50));
        Assert.Contains("fast.scaleshift.safetensors", e.Message);
        File.Copy(Path.Combine(cache, "scaleshift-ddim-50.safetensors"), ScaleShiftAdjustment.DefaultPathFor(schedule));
        using (var choice = CacheChoice.Resolve(schedule + ":ss", _pipeline, "ddim", 50))
        using (var policy = Assert.IsType<BlockCachePolicy>(choice.Create!()))
            Assert.NotNull(policy.Adjustment);
        File.Copy(Path.Combine(cache, "scaleshift-ddim-50.safetensors"), dir.File("other.safetensors"));
        using (var named = CacheChoice.Resolve($"{schedule}:ss={dir.File("other.safetensors")}", _pipeline, "ddim", 50))
        using (var besides = CacheChoice.Resolve(schedule + ":ss", _pipeline, "ddim", 50))
        {
            Assert.EndsWith("+ scale-shift", named.Name);
            Assert.Equal(besides.Fingerprint, named.Fingerprint);   // the same file's bytes
            Assert.Matches("^[0-9a-f]{16}$", named.Fingerprint);
        }
        // Another adjustment under the same name is another fingerprint, so stored samples of the old one are not reused.
        using (var untrained = ScaleShiftAdjustment.For(_pipeline.UNet, CacheSchedule.Load(schedule)))
            untrained.Save(dir.File("other.safetensors"));
        using (var retrained = CacheChoice.Resolve($"{schedule}:ss={dir.File("other.safetensors")}", _pipeline, "ddim", 50))
        using (var plain = CacheChoice.Resolve(schedule, _pipeline, "ddim", 50))
        using (var besides = CacheChoice.Resolve(schedule + ":ss", _pipeline, "ddim", 50))
        {
            Assert.NotEqual(besides.Fingerprint, retrained.Fingerprint);
            Assert.Equal(besides.Name, retrained.Name);
            Assert.Matches("^[0-9a-f]{16}$", plain.Fingerprint);
            Assert.NotEqual(besides.Fingerprint, plain.Fingerprint);
        }
    }

    [Fact]
    public void Two_schedules_with_the_same_delta_and_skipped_share_have_the_same_name_but_not_the_same_fingerprint()
    {
        using var dir = new TempFolder();
        var shipped = CacheSchedule.Load(Repository.Path("models", "fashion-ldm", "cache", "schedule-ddim-50.json"));
        // Two blocks' compute steps swapped: the same δ and number of computed blocks, other samples.
        int first = 0, second = Enumerable.Range(1, shipped.Blocks.Count - 1).First(b => !shipped.ComputeSteps[b].SequenceEqual(shipped.ComputeSteps[0]));
        var steps = shipped.ComputeSteps.ToList();
        (steps[first], steps[second]) = (steps[second], steps[first]);
        (shipped with { ComputeSteps = steps }).Save(dir.File("swapped.json"));
        using var original = CacheChoice.Resolve("blockcache", _pipeline, "ddim", 50);
        using var swapped = CacheChoice.Resolve(dir.File("swapped.json"), _pipeline, "ddim", 50);
        Assert.Equal(original.Name, swapped.Name);
        Assert.NotEqual(original.Fingerprint, swapped.Fingerprint);
        using var again = CacheChoice.Resolve("blockcache:" + shipped.Delta!.Value.ToString("R", System.Globalization.CultureInfo.InvariantCulture), _pipeline, "ddim", 50);
        Assert.Equal(original.Fingerprint, again.Fingerprint);   // rebuilt from the shipped profile at its δ: the same schedule
    }

    [Fact]
    public void Blockcache_without_a_shipped_schedule_samples_uncached()
    {
        Assert.Null(CacheChoice.Resolve("blockcache", _pipeline, "ddim", 37).Create);
    }

    [Theory]
    [InlineData("deepcache", 3, 0, true)]
    [InlineData("deepcache:5", 5, 0, true)]
    [InlineData("deepcache:2:4", 2, 4, true)]
    [InlineData("deepcache:5:0:15:1.4", 5, 0, false)]
    public void Deepcache_takes_interval_branch_and_optionally_center_and_power(string text, int interval, int branch, bool uniform)
    {
        using var policy = Assert.IsType<DeepCachePolicy>(CacheChoice.Resolve(text, _pipeline, "ddim", 50).Create!());
        Assert.Equal(interval, policy.Schedule.Interval);
        Assert.Equal(branch, policy.Branch);
        Assert.Equal(uniform, policy.Schedule.IsUniform);
        if (!uniform)
        {
            Assert.Equal(15, policy.Schedule.Center);
            Assert.Equal(1.4, policy.Schedule.Pow);
        }
    }

    [Theory]
    [InlineData("deepcache:0", "interval N must be at least 1")]
    [InlineData("deepcache:3:9", "cache branch 9 does not exist")]
    [InlineData("deepcache:5:0:60:1.4", "center 60 is outside the steps")]
    [InlineData("deepcache:5:0:15:0.5", "power must be a finite number > 1")]
    [InlineData("deepcache:x", "expected deepcache, deepcache:N")]
    [InlineData("deepcache:5:0:15", "expected deepcache, deepcache:N")]
    [InlineData("fastcache", "no such schedule file, and not a method")]
    [InlineData("ucache", "expected ucache:THR")]
    [InlineData("ucache:0", "threshold must be > 0")]
    [InlineData("ucache:nan", "threshold 'nan' is not a finite number")]
    [InlineData("ucache:0.1:0.9:0.2", "start 0.9, end 0.2")]
    [InlineData("ucache:0.1:probe=middle", "probe 'middle'")]
    [InlineData("ucache:0.1:speed=2", "unknown ucache option 'speed'")]
    [InlineData("blockcache-online:-1", "threshold must be > 0")]
    [InlineData("blockcache-online:0.2:0", "warm-up must be at least 1")]
    [InlineData("blockcache-online:0.2:attention", "'attention' is neither")]
    [InlineData("deepcache:3:taylor3", "taylor3")]
    [InlineData("none:taylor1", "none takes no arguments")]
    public void Bad_arguments_fail_with_a_message_naming_the_problem(string text, string message)
    {
        var error = Assert.Throws<DiffusionCacheException>(() => CacheChoice.Resolve(text, _pipeline, "ddim", 50));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void A_schedule_for_another_step_count_or_solver_is_refused()
    {
        string path = Repository.Path("models", "fashion-ldm", "cache", "schedule-ddim-20.json");
        Assert.Contains("schedule is for 20 steps", Assert.Throws<DiffusionCacheException>(() => CacheChoice.Resolve(path, _pipeline, "ddim", 50)).Message);
        Assert.Contains("schedule is for solver DDIMScheduler", Assert.Throws<DiffusionCacheException>(() => CacheChoice.Resolve(path, _pipeline, "euler", 20)).Message);
    }

    [Theory]
    [InlineData("ucache:0.2", typeof(DiffusionCache.Caching.Adaptive.StepCachePolicy), "ucache (threshold 0.2")]
    [InlineData("ucache:0.2:0.1:0.9:probe=first-block:taylor1", typeof(DiffusionCache.Caching.Adaptive.StepCachePolicy), "probe first-block, Taylor order 1")]
    [InlineData("blockcache-online:0.3", typeof(DiffusionCache.Caching.Adaptive.OnlineBlockCachePolicy), "Block Caching online (threshold 0.3, transformer2d")]
    [InlineData("blockcache-online:0.3:2:resnet2d:taylor2", typeof(DiffusionCache.Caching.Adaptive.OnlineBlockCachePolicy), "resnet2d, Taylor order 2")]
    [InlineData("deepcache:3:taylor1", typeof(DeepCachePolicy), "Taylor order 1")]
    [InlineData("blockcache:taylor2", typeof(BlockCachePolicy), "Taylor order 2")]
    public void Every_method_and_forecasting_order_resolves_through_the_one_grammar(string text, Type policyType, string named)
    {
        using var choice = CacheChoice.Resolve(text, _pipeline, "ddim", 50);
        using var policy = choice.Create!();
        Assert.IsType(policyType, policy);
        Assert.Contains(named, choice.Name);
    }
}
