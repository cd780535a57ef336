using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Cli.Commands;

public sealed class ScheduleCommandTests
{
    private static string ShippedProfile => Repository.Path("models", "fashion-ldm", "cache", "profile-ddim-20.json");

    [Fact]
    public void A_multiple_of_the_median_change_is_that_threshold()
    {
        using var dir = new TempFolder();
        var profile = BlockProfile.Load(ShippedProfile);
        string absolute = (2 * profile.MedianChange).ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(0, CliApp.Run("schedule", "--profile", ShippedProfile, "--delta", "2m", "--out", dir.File("m.json")));
        Assert.Equal(0, CliApp.Run("schedule", "--profile", ShippedProfile, "--delta", absolute, "--out", dir.File("a.json")));
        var (m, a) = (CacheSchedule.Load(dir.File("m.json")), CacheSchedule.Load(dir.File("a.json")));
        Assert.Equal(a.Delta!.Value, m.Delta!.Value, 12);
        Assert.Equal(a.ComputeSteps.Select(s => string.Join(",", s)), m.ComputeSteps.Select(s => string.Join(",", s)));
        Assert.True(File.Exists(dir.File("m.png")));
    }

    [Fact]
    public void The_median_change_leaves_out_the_first_step()
    {
        var profile = BlockProfile.Load(ShippedProfile);
        var later = profile.Mean.SelectMany(row => row.Skip(1)).ToArray();
        Assert.Equal(later.Length / 2, later.Count(x => x < profile.MedianChange));
    }

    [Fact]
    public void A_profile_in_a_models_cache_folder_belongs_to_that_model_when_its_recorded_path_is_gone()
    {
        using var dir = new TempFolder();
        string model = dir.File("moved-model");
        Directory.CreateDirectory(Path.Combine(model, "unet"));
        Directory.CreateDirectory(Path.Combine(model, "cache"));
        string shipped = Repository.Path("models", "fashion-ldm");
        File.Copy(Path.Combine(shipped, "model_index.json"), Path.Combine(model, "model_index.json"));
        File.Copy(Path.Combine(shipped, "unet", "config.json"), Path.Combine(model, "unet", "config.json"));
        var moved = BlockProfile.Load(ShippedProfile) with { ModelPath = dir.File("no-such-checkout") };
        moved.Save(Path.Combine(model, "cache", "profile.json"));
        Assert.Equal(0, CliApp.Run("schedule", "--profile", Path.Combine(model, "cache", "profile.json"), "--delta", "2m", "--out", dir.File("s.json")));
        Assert.True(File.Exists(dir.File("s.json")));
    }

    [Theory]
    [InlineData("0m")]
    [InlineData("-1")]
    [InlineData("abc")]
    [InlineData("m")]
    public void A_bad_threshold_fails_before_anything_is_written(string delta)
    {
        using var dir = new TempFolder();
        Assert.NotEqual(0, CliApp.Run("schedule", "--profile", ShippedProfile, "--delta", delta, "--out", dir.File("s.json")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }
}
