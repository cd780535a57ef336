using DiffusionCache.Cli;
using DiffusionCache.Cli.Commands;
using DiffusionCache.Evaluation;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>diffcache report</c>: the rows of the paper's Table 1 for both solvers and step counts, Fig. 7's δ
/// sweep sharing the frontier's samples, and a model without the schedules the report needs refused before any
/// work, saying how to make them; the same-latency row's choice stated, and flagged where the final timing puts it
/// at another speed.</summary>
public sealed class ReportCommandTests
{
    [Fact]
    public void Table_1_has_baseline_caching_and_scale_shift_for_both_solvers_at_20_and_50_steps()
    {
        var specs = ReportCommand.TableSpecs();
        Assert.Equal(12, specs.Count);
        foreach (var (solver, steps) in new[] { ("ddim", 50), ("ddim", 20), ("dpm++", 50), ("dpm++", 20) })
        {
            var mine = specs.Where(s => s.Solver == solver && s.Steps == steps).ToList();
            Assert.Equal(["none", "blockcache", "blockcache:ss"], mine.Select(s => s.Cache));
            Assert.Null(mine[0].Reference);
            Assert.All(mine.Skip(1), s => Assert.Equal(mine[0].Name, s.Reference));
        }
        // Fig. 7 runs the frontier's δ on DDIM 50 with the same cache texts, so the two share their samples.
        var frontier = FrontierCommand.Groups(full: true).Single(g => g.Steps == 50).Points.Where(p => p.Method == "Block Caching").Select(p => p.Cache).ToList();
        Assert.Equal(frontier, ReportCommand.Fig7Specs().Select(s => s.Cache));
    }

    [Fact]
    public void A_model_without_the_schedules_of_the_table_is_refused_with_how_to_make_them()
    {
        using var dir = new TempFolder();
        string model = dir.File("model");
        foreach (var file in Directory.GetFiles(Repository.Path("models", "fashion-ldm"), "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(Repository.Path("models", "fashion-ldm"), file);
            if (relative.Contains("dpm++", StringComparison.Ordinal)) continue;
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(model, relative))!);
            File.Copy(file, Path.Combine(model, relative));
        }
        var (rc, output) = ErrorCapture.Run(() => CliApp.Run("report", "--model", model, "--out", dir.File("paper"), "--store", dir.File("store")));
        Assert.NotEqual(0, rc);
        Assert.Contains("schedule-dpm++-50.json", output);
        Assert.Contains("train scaleshift --solver dpm++", output);
        Assert.False(Directory.Exists(dir.File("paper")));
        Assert.False(Directory.Exists(dir.File("store")));
    }

    [Fact]
    public void The_same_latency_row_says_how_it_was_chosen_and_whether_the_final_timing_still_agrees()
    {
        var chosen = new Interval(1.54, 1.40, 1.70);
        string agrees = ReportCommand.SameLatency(20, chosen, 13, new Interval(1.50, 1.45, 1.55), new Interval(1.52, 1.30, 1.60));
        Assert.StartsWith("Same latency: 20 steps / 1.54x (Block Caching's speedup in the first timing phase, range 1.40–1.70) ≈ 13 steps", agrees);
        Assert.EndsWith("within Block Caching's range of rounds.", agrees);
        string faster = ReportCommand.SameLatency(20, chosen, 13, new Interval(1.57, 1.42, 1.70), new Interval(1.36, 1.17, 1.43));
        Assert.Contains("outside Block Caching's range of rounds (1.17–1.43)", faster);
        Assert.Contains("read this row as faster than Block Caching", faster);
        string slower = ReportCommand.SameLatency(50, new Interval(1.8, 1.6, 2.0), 28, new Interval(1.40, 1.3, 1.5), new Interval(1.90, 1.80, 2.00));
        Assert.Contains("read this row as slower than Block Caching", slower);
    }
}
