using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Formats;
using ScottPlot;

namespace DiffusionCache.Cli.Reporting;

/// <summary>Block Caching Fig. 2b: per block, the mean relative change L1_rel over the denoising steps with a ±std
/// band over the profiled generations. Step 0 (0 by definition) is left out.</summary>
internal static class ProfilePlot
{
    public static void Write(BlockProfile profile, string png)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category20();
        int first = profile.Steps > 1 ? 1 : 0;
        double[] steps = [.. Enumerable.Range(first, profile.Steps - first).Select(k => (double)k)];
        for (int i = 0; i < profile.Blocks.Count; i++)
        {
            var color = palette.GetColor(i);
            double[] mean = profile.Mean[i][first..];
            double[] std = profile.Std[i][first..];
            var band = plot.Add.FillY(steps, [.. mean.Select((m, k) => m - std[k])], [.. mean.Select((m, k) => m + std[k])]);
            band.FillStyle.Color = color.WithAlpha(0.15);
            band.LineStyle.Width = 0;
            var line = plot.Add.Scatter(steps, mean);
            line.Color = color;
            line.LineWidth = 2;
            line.MarkerSize = 4;
            line.LegendText = profile.Blocks[i];
        }
        plot.Title($"{profile.Model}: relative change per block ({profile.Solver}, {profile.NumInferenceSteps} steps, " +
            $"{profile.NumConditions}x{profile.NumSeeds} generations, mean ± std)");
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(Math.Max(1, profile.Steps / 20));
        plot.XLabel("denoising step k");
        plot.YLabel("L1_rel (eq. 6)");
        plot.ShowLegend(Edge.Right);
        AtomicFile.Write(png, s => s.Write(plot.GetImageBytes(1300, 650, ImageFormat.Png)));
    }
}
