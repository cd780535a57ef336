using DiffusionCache.Cli.Reporting;
using DiffusionCache.Tests.TestSupport;
using SkiaSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Cli.Reporting;

/// <summary>The labelled grid behind generate's sheet and the report's figures: a long row label widens the label
/// column instead of running under the first image (Fig. 6's "crop: 27 steps (same lat.)" did).</summary>
public sealed class ImageGridTests
{
    [Fact]
    public void Short_labels_keep_the_usual_column_and_a_long_one_widens_it_to_fit()
    {
        using var font = new SKFont(SKTypeface.Default, 13);
        Assert.Equal(110, ImageGrid.LabelWidth(font, ["baseline", "BC"], 4));
        const string longLabel = "crop: BC + scale-shift with a much longer name";
        int width = ImageGrid.LabelWidth(font, ["baseline", longLabel], 4);
        Assert.True(width > 110);
        Assert.True(width >= font.MeasureText(longLabel) + 8);
    }

    [Fact]
    public void The_png_is_as_wide_as_its_label_column_and_cells()
    {
        using var dir = new TempFolder();
        string path = dir.File("grid.png");
        using var images = zeros(4, 1, 8, 8);
        string[] labels = ["a row label long enough to need more than the usual width", "short"];
        ImageGrid.Write(path, images, 2, 2, labels, ["c0", "c1"], scale: 2);
        using var bitmap = SKBitmap.Decode(path);
        using var font = new SKFont(SKTypeface.Default, 13);
        Assert.Equal(ImageGrid.LabelWidth(font, labels, 4) + 2 * (16 + 4) + 4, bitmap.Width);
        Assert.True(bitmap.Width > 110 + 2 * (16 + 4) + 4);
    }
}
