using System.Globalization;
using DiffusionCache.Formats;
using ScottPlot;

namespace DiffusionCache.Cli.Reporting;

/// <summary>Plots a training log (<c>step,epoch,loss,...</c> CSV) as a PNG: raw loss and a moving average.</summary>
internal static class LossCurve
{
    public static void Write(string logCsv, string png, string title)
    {
        var rows = File.ReadLines(logCsv).Skip(1)
            .Select(l => l.Split(','))
            .Where(p => p.Length >= 3)
            .Select(p => (Step: double.Parse(p[0], CultureInfo.InvariantCulture), Loss: double.Parse(p[2], CultureInfo.InvariantCulture)))
            .ToArray();
        if (rows.Length == 0) return;
        var plot = new Plot();
        var steps = rows.Select(r => r.Step).ToArray();
        var raw = plot.Add.Scatter(steps, rows.Select(r => r.Loss).ToArray());
        raw.LineWidth = 1;
        raw.MarkerSize = 0;
        raw.Color = Colors.LightGray;
        raw.LegendText = "loss";
        int window = Math.Max(1, rows.Length / 50);
        var smooth = plot.Add.Scatter(steps, MovingAverage(rows.Select(r => r.Loss).ToArray(), window));
        smooth.LineWidth = 2;
        smooth.MarkerSize = 0;
        smooth.LegendText = $"moving average ({window} steps)";
        plot.Axes.SetLimitsY(0, rows.Select(r => r.Loss).OrderBy(x => x).ElementAt((int)(rows.Length * 0.98)) * 1.1);
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("loss");
        plot.ShowLegend();
        AtomicFile.Write(png, s => s.Write(plot.GetImageBytes(900, 500, ImageFormat.Png)));
    }

    private static double[] MovingAverage(double[] values, int window)
    {
        var result = new double[values.Length];
        double sum = 0;
        for (int i = 0; i < values.Length; i++)
        {
            sum += values[i];
            if (i >= window) sum -= values[i - window];
            result[i] = sum / Math.Min(i + 1, window);
        }
        return result;
    }
}
