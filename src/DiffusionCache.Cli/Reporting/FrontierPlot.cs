using DiffusionCache.Evaluation;
using DiffusionCache.Formats;
using ScottPlot;
using SkiaSharp;

namespace DiffusionCache.Cli.Reporting;

/// <summary>The speed–quality frontier: measured speedup on x, FID on y, one line per method, with the uncached FID
/// and the fewer-steps baseline as references; one panel per feature space, side by side in one PNG.</summary>
internal static class FrontierPlot
{
    public static void Write(IReadOnlyList<StudyResult> rows, string png, string title)
    {
        var spaces = rows[0].Quality.Spaces.Select(s => s.Space).ToList();
        var panels = spaces.Select((space, i) => Panel(rows, i, $"{title} — FID in the {space} space")).ToList();
        // ScottPlot draws one plot per image; the panels are put side by side with SkiaSharp.
        var bitmaps = panels.Select(SKBitmap.Decode).ToList();
        try
        {
            using var surface = new SKBitmap(bitmaps.Sum(b => b.Width), bitmaps.Max(b => b.Height));
            using var canvas = new SKCanvas(surface);
            canvas.Clear(SKColors.White);
            int x = 0;
            foreach (var b in bitmaps)
            {
                canvas.DrawBitmap(b, x, 0);
                x += b.Width;
            }
            using var image = SKImage.FromBitmap(surface);
            using var data = image.Encode(SKEncodedImageFormat.Png, 100);
            AtomicFile.Write(png, s => data.SaveTo(s));
        }
        finally
        {
            foreach (var b in bitmaps) b.Dispose();
        }
    }

    private static byte[] Panel(IReadOnlyList<StudyResult> rows, int space, string title)
    {
        var plot = new Plot();
        var reference = rows.First(r => r.Point.Reference is null);
        var uncached = plot.Add.HorizontalLine(reference.Quality.Spaces[space].Fid.Estimate);
        uncached.LegendText = $"uncached ({reference.Point.Steps} steps)";
        uncached.LinePattern = LinePattern.Dotted;
        uncached.Color = Colors.Gray;
        var palette = new ScottPlot.Palettes.Category10();
        int colour = 0;
        foreach (var method in rows.Select(r => r.Point.Method).Distinct())
        {
            var line = rows.Where(r => r.Point.Method == method || r.Point.Reference is null)   // every line starts at uncached sampling
                .OrderBy(r => r.Timing!.Speedup.Estimate).ToList();
            var xs = line.Select(r => r.Timing!.Speedup.Estimate).ToArray();
            var ys = line.Select(r => r.Quality.Spaces[space].Fid.Estimate).ToArray();
            var scatter = plot.Add.Scatter(xs, ys);
            scatter.LegendText = method;
            if (method == "fewer steps")
            {
                scatter.Color = Colors.Black;
                scatter.LinePattern = LinePattern.Dashed;
                scatter.LineWidth = 2;
            }
            else scatter.Color = palette.GetColor(colour++);
            // The 95 % interval of each point's FID as a vertical bar.
            foreach (var r in line)
            {
                var fid = r.Quality.Spaces[space].Fid;
                var bar = plot.Add.Line(r.Timing!.Speedup.Estimate, fid.Lower, r.Timing.Speedup.Estimate, fid.Upper);
                bar.Color = scatter.Color.WithAlpha(0.5);
            }
        }
        plot.Title(title);
        plot.XLabel("measured speedup over uncached sampling");
        plot.YLabel("FID (lower is better)");
        plot.ShowLegend(Alignment.UpperLeft);
        return plot.GetImageBytes(900, 600, ImageFormat.Png);
    }
}
