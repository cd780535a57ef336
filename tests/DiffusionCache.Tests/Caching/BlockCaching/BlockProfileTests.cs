using System.Text.Json;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Caching.BlockCaching;

public class BlockProfileTests
{
    /// <summary>Two blocks, four steps, 1 condition x 2 seeds.</summary>
    public static BlockProfile Sample()
    {
        double[][] g0 = [[0, 0.2, 0.1, 0.1], [0, 0.5, 0.4, 0.3]];
        double[][] g1 = [[0, 0.1, 0.1, 0.2], [0, 0.7, 0.6, 0.5]];
        var (mean, std) = BlockProfile.Aggregate([g0, g1]);
        return new BlockProfile
        {
            Model = "tiny",
            Solver = "DDIMScheduler",
            NumInferenceSteps = 4,
            Timesteps = [751, 501, 251, 1],
            GuidanceScale = 4,
            Targets = BlockCachingTargets.Transformers,
            Blocks = ["down_blocks.0.attentions.0", "up_blocks.1.attentions.0"],
            NumConditions = 1,
            NumSeeds = 2,
            Batch = 2,
            SampleHeight = 8,
            SampleWidth = 8,
            ContextLength = 6,
            Generations = [new ProfileGeneration(0, 0, 0, g0), new ProfileGeneration(1, 0, 1, g1)],
            Mean = mean,
            Std = std,
        };
    }

    [Fact]
    public void AggregateIsTheMeanAndPopulationStd()
    {
        var (mean, std) = BlockProfile.Aggregate([[[1.0, 2.0]], [[3.0, 2.0]], [[5.0, 2.0]]]);
        Assert.Equal([3.0, 2.0], mean[0]);
        Assert.Equal(Math.Sqrt(8.0 / 3), std[0][0], 15);   // divide by G = 3, not G - 1
        Assert.Equal(0.0, std[0][1]);
        Assert.Throws<DiffusionCacheException>(() => BlockProfile.Aggregate([]));
        Assert.Throws<DiffusionCacheException>(() => BlockProfile.Aggregate([[[1.0]], [[1.0, 2.0]]]));
    }

    [Fact]
    public void JsonRoundTripIsExact()
    {
        using var dir = new TempFolder();
        var profile = Sample() with
        {
            SchedulerConfig = JsonDocument.Parse("""{"_class_name": "DDIMScheduler", "steps_offset": 1}""").RootElement.Clone(),
        };
        profile.Save(dir.File("profile.json"));
        var back = BlockProfile.Load(dir.File("profile.json"));
        Assert.Equal(profile.ToJson(), back.ToJson());
        Assert.Equal(profile.Mean, back.Mean);
        Assert.Equal(profile.Std, back.Std);
        Assert.Equal(profile.Generations[1].L1Rel, back.Generations[1].L1Rel);
        Assert.Equal(profile.Targets, back.Targets);
        Assert.Equal(1, back.SchedulerConfig!.Value.GetProperty("steps_offset").GetInt32());
        Assert.Contains("\"l1_rel\"", File.ReadAllText(dir.File("profile.json")));
    }

    [Fact]
    public void NonFiniteValuesSurviveTheRoundTrip()
    {
        var profile = Sample();
        profile.Generations[0].L1Rel[0][1] = double.PositiveInfinity;
        var back = BlockProfile.FromJson(profile.ToJson());
        Assert.Equal(double.PositiveInfinity, back.Generations[0].L1Rel[0][1]);
    }

    [Fact]
    public void InconsistentProfilesAreRefused()
    {
        var profile = Sample();
        Assert.Throws<DiffusionCacheException>(() => (profile with { Mean = [[0, 1]] }).Validate());
        Assert.Throws<DiffusionCacheException>(() => (profile with { NumSeeds = 3 }).Validate());
        Assert.Throws<DiffusionCacheException>(() => (profile with { Blocks = ["a", "a"] }).Validate());
        Assert.Throws<DiffusionCacheException>(() => (profile with { Generations = [profile.Generations[1], profile.Generations[0]] }).Validate());
        var e = Assert.Throws<DiffusionCacheException>(() => BlockProfile.FromJson("""{"model": "x"}"""));
        Assert.Contains("block profile", e.Message);
        e = Assert.Throws<DiffusionCacheException>(() => BlockProfile.FromJson(profile.ToJson().Replace("\"solver\"", "\"solvr\"")));
        Assert.Contains("solvr", e.Message);
        Assert.Throws<DiffusionCacheException>(() => BlockProfile.Load("/nonexistent/profile.json"));
    }

    [Fact]
    public void CsvHasOneRowPerBlockAndStep()
    {
        var profile = Sample();
        var lines = profile.ToCsv().TrimEnd('\n').Split('\n');
        Assert.Equal("block,step,timestep,mean,std,g0,g1", lines[0]);
        Assert.Equal(1 + 2 * 4, lines.Length);
        var row = lines[1 + 4 + 2].Split(',');   // block 1, step 2
        Assert.Equal(["up_blocks.1.attentions.0", "2", "251"], row[..3]);
        Assert.Equal(profile.Mean[1][2], double.Parse(row[3], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(profile.Std[1][2], double.Parse(row[4], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal([0.4, 0.6], row[5..].Select(v => double.Parse(v, System.Globalization.CultureInfo.InvariantCulture)));
    }
}
