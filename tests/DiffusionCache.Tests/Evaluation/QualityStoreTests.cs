using DiffusionCache.Evaluation;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Evaluation;

public sealed class QualityStoreTests
{
    private static readonly SampleSetting Setting = new("m", "ddim", 20, 4, 100, "none", "no cache", "Float32");

    private static QualityReport Report() => new(4, new Interval(0.75, 0.3, 0.95),
        [new SpaceQuality("a", new Interval(5.5, 4, 7), new Interval(0.01, -0.002, 0.03)) { FidReplicates = [5, double.NaN, 6], KidReplicates = [0.01, 0.02, 0.0] }],
        new BootstrapOptions(3)) { AccuracyReplicates = [0.5, 0.75, 1] };

    [Fact]
    public void A_report_comes_back_with_its_replicates_including_NaN()
    {
        using var dir = new TempFolder();
        var store = new QualityStore(new SampleStore(dir.Path));
        store.Save(Setting, "k1", Report());
        var back = store.Load(Setting, "k1")!;
        Assert.Equal(Report().ClassAccuracy, back.ClassAccuracy);
        Assert.Equal([0.5, 0.75, 1], back.AccuracyReplicates);
        Assert.Equal((Report().Spaces[0].Space, Report().Spaces[0].Fid, Report().Spaces[0].Kid), (back.Spaces[0].Space, back.Spaces[0].Fid, back.Spaces[0].Kid));
        Assert.Equal([0.01, 0.02, 0.0], back.Spaces[0].KidReplicates);
        Assert.True(double.IsNaN(back.Spaces[0].FidReplicates[1]));
        Assert.Equal(new BootstrapOptions(3), back.Bootstrap);
    }

    [Fact]
    public void Another_scoring_key_or_setting_or_a_damaged_file_finds_nothing()
    {
        using var dir = new TempFolder();
        var store = new QualityStore(new SampleStore(dir.Path));
        store.Save(Setting, "k1", Report());
        Assert.Null(store.Load(Setting, "k2"));
        Assert.Null(store.Load(Setting with { Steps = 50 }, "k1"));
        string file = Directory.GetFiles(dir.Path, "quality-k1.json", SearchOption.AllDirectories).Single();
        File.WriteAllText(file, "{ not json");
        Assert.Null(store.Load(Setting, "k1"));
    }
}
