using System.Text.Json;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>diffcache generate</c> on the embedded model with the profile-free policies.</summary>
public sealed class GenerateCommandTests
{
    [Fact]
    public void Online_block_caching_writes_its_decisions_as_a_schedule_and_a_lifetime_plot()
    {
        using var dir = new TempFolder();
        Assert.Equal(0, CliApp.Run("generate", "--steps", "6", "--seeds", "1", "--cache", "blockcache-online:0.1:2", "--out", dir.File("s.png")));
        Assert.True(File.Exists(dir.File("s.png")));
        Assert.True(File.Exists(dir.File("s-decisions.png")));
        var decisions = CacheSchedule.Load(dir.File("s-decisions.json"));
        Assert.Equal(6, decisions.Steps);
        Assert.All(decisions.ComputeSteps, steps => Assert.Equal([0, 1], steps.Take(2)));   // warm-up of 2 calls
    }

    [Theory]
    [InlineData("ucache:0.2:taylor1")]
    [InlineData("deepcache:2:taylor2")]
    public void Adaptive_and_forecasting_choices_generate(string cache)
    {
        using var dir = new TempFolder();
        Assert.Equal(0, CliApp.Run("generate", "--steps", "6", "--seeds", "1", "--cache", cache, "--out", dir.File("s.png")));
        Assert.True(new FileInfo(dir.File("s.png")).Length > 0);
    }

    [Fact]
    public void A_bad_threshold_fails_before_anything_is_written()
    {
        using var dir = new TempFolder();
        Assert.NotEqual(0, CliApp.Run("generate", "--steps", "6", "--seeds", "1", "--cache", "ucache:-0.5", "--out", dir.File("s.png")));
        Assert.Empty(Directory.GetFiles(dir.Path));
    }
}
