using DiffusionCache.Formats;
using SkiaSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Reporting;

/// <summary>Draws images [N, C, H, W] in [-1, 1] as a labelled grid PNG: one row per row label, one column per
/// column header, upscaled with nearest-neighbour so small samples stay crisp.</summary>
internal static class ImageGrid
{
    public static void Write(string path, Tensor images, int rows, int columns, IReadOnlyList<string> rowLabels,
        IReadOnlyList<string> columnHeaders, int scale = 3, string? title = null)
    {
        if (images.shape[0] != (long)rows * columns) throw new DiffusionCacheException($"grid of {rows}x{columns} needs {rows * columns} images, got {images.shape[0]}");
        int channels = (int)images.shape[1], h = (int)images.shape[2], w = (int)images.shape[3];
        using var pixels = ((images.detach().to(ScalarType.Float32, CPU).clamp(-1, 1) + 1) * 127.5).round().to(ScalarType.Byte);
        var bytes = pixels.data<byte>().ToArray();

        const int pad = 4, headerHeight = 22;
        using var font = new SKFont(SKTypeface.Default, 13);
        int labelWidth = LabelWidth(font, rowLabels, pad);
        int titleHeight = title is null ? 0 : 26;
        int cell = Math.Max(h, w) * scale;
        int width = labelWidth + columns * (cell + pad) + pad;
        int height = titleHeight + headerHeight + rows * (cell + pad) + pad;
        using var bitmap = new SKBitmap(width, height);
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.White);
        using var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        if (title is not null)
        {
            // Shrink a long title until it fits the grid's width rather than cutting it off.
            using var titleFont = new SKFont(SKTypeface.Default, 13);
            while (titleFont.Size > 7 && titleFont.MeasureText(title) > width - 2 * pad) titleFont.Size -= 0.5f;
            canvas.DrawText(title, pad, 18, titleFont, ink);
        }
        for (int c = 0; c < columns; c++)
            canvas.DrawText(columnHeaders[c], labelWidth + c * (cell + pad) + pad, titleHeight + 16, font, ink);
        for (int r = 0; r < rows; r++)
        {
            int top = titleHeight + headerHeight + r * (cell + pad);
            canvas.DrawText(rowLabels[r], pad, top + cell / 2 + 5, font, ink);
            for (int c = 0; c < columns; c++)
            {
                int n = r * columns + c, left = labelWidth + c * (cell + pad) + pad;
                for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    SKColor color = channels == 1
                        ? Gray(bytes[(n * h + y) * w + x])
                        : new SKColor(bytes[((n * channels + 0) * h + y) * w + x], bytes[((n * channels + 1) * h + y) * w + x], bytes[((n * channels + 2) * h + y) * w + x]);
                    using var paint = new SKPaint { Color = color };
                    canvas.DrawRect(left + x * scale, top + y * scale, scale, scale, paint);
                }
            }
        }
        using var image = SKImage.FromBitmap(bitmap);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        AtomicFile.Write(path, s => png.SaveTo(s));
    }

    /// <summary>The row-label column: 110 px, or wider so that the longest label is not cut off by the first image.</summary>
    internal static int LabelWidth(SKFont font, IReadOnlyList<string> rowLabels, int pad) =>
        Math.Max(110, (int)Math.Ceiling(rowLabels.Select(l => font.MeasureText(l)).DefaultIfEmpty(0).Max()) + 2 * pad);

    private static SKColor Gray(byte v) => new(v, v, v);
}
