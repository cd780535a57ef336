using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Formats;
using ScottPlot;

namespace DiffusionCache.Cli.Reporting;

/// <summary>Block Caching Fig. 4: a row per block, a bar per cache lifetime, from the step that computes the cache
/// to the step that next refreshes it (the block reuses in between).</summary>
internal static class SchedulePlot
{
    public static void Write(CacheSchedule schedule, string png)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int rows = schedule.Blocks.Count;
        foreach (var (block, start, end) in schedule.Lifetimes())
        {
            double y = rows - 1 - block;   // first block on top
            var bar = plot.Add.Rectangle(start, end - 0.1, y - 0.3, y + 0.3);
            bar.FillStyle.Color = palette.GetColor(block % 10).WithAlpha(end - start > 1 ? 0.8 : 0.35);
            bar.LineStyle.Width = 0;
        }
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int i = 0; i < rows; i++) ticks.AddMajor(rows - 1 - i, schedule.Blocks[i]);
        plot.Axes.Left.TickGenerator = ticks;
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(Math.Max(1, schedule.Steps / 20));
        plot.Axes.SetLimits(-0.5, schedule.Steps + 0.5, -0.8, rows - 0.2);
        string delta = schedule.Delta is double d ? $"δ = {d:G4}, " : "";
        plot.Title($"{schedule.Model}: cache schedule ({delta}{schedule.Solver}, {schedule.NumInferenceSteps} steps, " +
            $"skipped {100 * schedule.SkippedFraction:0.0}%)");
        plot.XLabel("denoising step (a bar: the cache computed at its left end, reused until the next bar)");
        AtomicFile.Write(png, s => s.Write(plot.GetImageBytes(1100, Math.Max(300, 60 + 28 * rows), ImageFormat.Png)));
    }
}
