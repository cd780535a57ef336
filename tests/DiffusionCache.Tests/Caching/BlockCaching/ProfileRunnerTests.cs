using DiffusionCache.Caching.BlockCaching;
using static DiffusionCache.Tests.Caching.BlockCaching.BlockCacheFixtures;

namespace DiffusionCache.Tests.Caching.BlockCaching;

public class ProfileRunnerTests
{
    [Fact]
    public void RunsEveryConditionAndSeedInOrderAndReportsProgress()
    {
        using var unet = Model();
        using var inputs = new RandomContextProfileInputs(unet, numConditions: 2, numSeeds: 2, guidanceScale: 4, contextLength: 6);
        var reports = new List<ProfileProgress>();
        var settings = new ProfileSettings { ModelId = "tiny", Scheduler = SchedulerConfig(), Steps = 3 };
        var profile = ProfileRunner.Run(unet, settings, inputs, new SyncProgress(reports.Add));

        Assert.Equal([(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)], profile.Generations.Select(g => (g.G, g.Condition, g.Seed)));
        Assert.Equal(4 * 3, reports.Count);
        Assert.Equal(Enumerable.Range(1, 12).Select(i => (long)i), reports.Select(r => r.Done));
        Assert.All(reports, r => Assert.Equal(12, r.Total));
        Assert.Equal("DDIMScheduler", profile.Solver);
        Assert.Equal(BlockCachingTargets.Transformers.Paths(unet), profile.Blocks);
        Assert.Equal((2, 8, 8, 6), (profile.Batch, profile.SampleHeight, profile.SampleWidth, profile.ContextLength));
        Assert.Equal(4.0, profile.GuidanceScale);
        profile.Validate();
        // Different conditions and seeds give different profiles; the mean lies between them.
        Assert.NotEqual(profile.Generations[0].L1Rel[3][1], profile.Generations[3].L1Rel[3][1]);
        Assert.InRange(profile.Mean[3][1], profile.Generations.Min(g => g.L1Rel[3][1]), profile.Generations.Max(g => g.L1Rel[3][1]));

        // Same inputs, same profile (bitwise).
        var again = ProfileRunner.Run(unet, settings, inputs);
        Assert.Equal(profile.Mean, again.Mean);
    }

    [Fact]
    public void BadSettingsAreRefusedBeforeAnyWork()
    {
        using var unet = Model();
        using var inputs = new RandomContextProfileInputs(unet, 1, 1, 4, 6);
        var settings = new ProfileSettings { ModelId = "tiny", Scheduler = SchedulerConfig(), Steps = 0 };
        Assert.Throws<DiffusionCacheException>(() => ProfileRunner.Run(unet, settings, inputs));
        Assert.Throws<DiffusionCacheException>(() => new RandomContextProfileInputs(unet, 0, 1, 4, 6));
    }

    private sealed class SyncProgress(Action<ProfileProgress> report) : IProgress<ProfileProgress>
    {
        public void Report(ProfileProgress value) => report(value);
    }
}
