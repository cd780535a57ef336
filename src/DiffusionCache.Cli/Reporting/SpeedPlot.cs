using DiffusionCache.Evaluation;
using DiffusionCache.Formats;
using ScottPlot;

namespace DiffusionCache.Cli.Reporting;

/// <summary>Speed against the Block Caching threshold δ (the paper's Fig. 7, right): measured and MAC-theoretical
/// speedup per δ (the shipped schedule with its scale-shift adjustment as a separate point), with the DeepCache rows
/// as reference lines.</summary>
internal static class SpeedPlot
{
    public static void Write(IReadOnlyList<CacheBenchmarkRow> rows, string png, string title)
    {
        var blocks = rows.Where(r => r.Kind == "blockcache").OrderBy(r => r.Delta).ToArray();
        if (blocks.Length == 0) return;
        var plot = new Plot();
        var xs = blocks.Select(r => r.Delta!.Value).ToArray();
        var measured = plot.Add.Scatter(xs, blocks.Select(r => r.MeasuredSpeedup).ToArray());
        measured.LegendText = "Block Caching, measured";
        var mac = plot.Add.Scatter(xs, blocks.Select(r => r.MacSpeedup).ToArray());
        mac.LegendText = "Block Caching, MAC-theoretical";
        mac.LinePattern = LinePattern.Dashed;
        foreach (var r in rows.Where(r => r.Kind == "blockcache+scaleshift"))
        {
            var point = plot.Add.Scatter(new[] { r.Delta!.Value }, new[] { r.MeasuredSpeedup });
            point.LegendText = $"{r.Name} (measured)";
            point.MarkerSize = 10;
            point.MarkerShape = MarkerShape.OpenDiamond;
        }
        foreach (var r in rows.Where(r => r.Kind == "deepcache"))
        {
            var line = plot.Add.HorizontalLine(r.MeasuredSpeedup);
            line.LegendText = $"{r.Name} (measured)";
            line.LinePattern = LinePattern.Dotted;
        }
        plot.Title(title);
        plot.XLabel("δ (accumulated change threshold)");
        plot.YLabel("speedup over no cache");
        plot.ShowLegend();
        AtomicFile.Write(png, s => s.Write(plot.GetImageBytes(900, 500, ImageFormat.Png)));
    }
}
