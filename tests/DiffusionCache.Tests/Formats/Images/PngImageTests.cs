using DiffusionCache.Formats.Images;
using DiffusionCache.Tests.TestSupport;
using SkiaSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Formats.Images;

public sealed class PngImageTests
{
    [Fact]
    public void PixelsAndTextSurviveARoundTrip()
    {
        using var dir = new TempFolder();
        using var scope = NewDisposeScope();
        // Red left half, blue right half, in [-1, 1].
        var image = full([3, 4, 6], -1f);
        image[0, .., ..3] = tensor(1f);
        image[2, .., 3..] = tensor(1f);
        string path = dir.File("x.png");
        var text = new Dictionary<string, string>
        {
            ["parameters"] = "a cat\nNegative prompt: blurry\nSteps: 20, Seed: 3",
            ["comment"] = "café ünïcode is Latin-1",
            ["unicode"] = "猫 and 🐱 need iTXt",
        };
        PngImage.Write(path, image, text);

        using var bitmap = SKBitmap.Decode(path);
        Assert.Equal(6, bitmap.Width);
        Assert.Equal(4, bitmap.Height);
        Assert.Equal(new SKColor(255, 0, 0), bitmap.GetPixel(0, 0));
        Assert.Equal(new SKColor(0, 0, 255), bitmap.GetPixel(5, 3));
        Assert.Equal(text, PngImage.ReadText(path));
    }

    [Fact]
    public void RefusesABadShapeAndLeavesNoFile()
    {
        using var dir = new TempFolder();
        using var bad = zeros(4, 4);
        string path = dir.File("bad.png");
        Assert.Throws<DiffusionCacheException>(() => PngImage.Write(path, bad));
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(dir.Path));
    }
}

public sealed class AtomicFileTests
{
    [Fact]
    public void EnsureWritable_creates_the_folder_and_leaves_nothing_behind()
    {
        using var dir = new TempFolder();
        string path = Path.Combine(dir.Path, "a", "b", "out.png");
        DiffusionCache.Formats.AtomicFile.EnsureWritable(path);
        Assert.True(Directory.Exists(Path.Combine(dir.Path, "a", "b")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(dir.Path, "a", "b")));
    }

    [Fact]
    public void EnsureWritable_refuses_a_folder_or_a_path_under_a_file()
    {
        using var dir = new TempFolder();
        Assert.Contains("is a folder", Assert.Throws<DiffusionCacheException>(() => DiffusionCache.Formats.AtomicFile.EnsureWritable(dir.Path)).Message);
        File.WriteAllText(dir.File("file"), "x");
        Assert.Contains("cannot be written", Assert.Throws<DiffusionCacheException>(
            () => DiffusionCache.Formats.AtomicFile.EnsureWritable(Path.Combine(dir.File("file"), "out.png"))).Message);
    }
}
