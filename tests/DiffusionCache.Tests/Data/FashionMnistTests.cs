using System.Buffers.Binary;
using System.IO.Compression;
using DiffusionCache.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Data;

/// <summary>Both splits, loaded once for the whole class (inflating the training images takes about a second).
/// A fresh machine gets the Debian package installed first, as the CLI does.</summary>
public sealed class FashionMnistFixture : IDisposable
{
    public FashionMnistFixture()
    {
        FashionMnist.EnsureInstalled();
        Train = FashionMnist.Load(FashionMnistSplit.Train);
        Test = FashionMnist.Load(FashionMnistSplit.Test);
    }

    public FashionMnist Train { get; }
    public FashionMnist Test { get; }

    public void Dispose()
    {
        Train.Dispose();
        Test.Dispose();
    }
}

/// <summary>Reads the files of the Debian package <c>dataset-fashion-mnist</c>, which the build machines have
/// installed (FashionMnist.EnsureInstalled installs it when missing).</summary>
public sealed class FashionMnistTests(FashionMnistFixture data) : IClassFixture<FashionMnistFixture>
{
    [Fact]
    public void SplitsHaveTheirCountsAndShapes()
    {
        Assert.Equal(60_000, data.Train.Count);
        Assert.Equal(10_000, data.Test.Count);
        Assert.Equal([60_000L, 1, 32, 32], data.Train.Images.shape);
        Assert.Equal([10_000L, 1, 32, 32], data.Test.Images.shape);
        Assert.Equal([60_000L], data.Train.Labels.shape);
        Assert.Equal(ScalarType.Float32, data.Train.Images.dtype);
        Assert.Equal(ScalarType.Int64, data.Train.Labels.dtype);
    }

    [Fact]
    public void PixelsSpanMinusOneToOne()
    {
        foreach (var split in new[] { data.Train, data.Test })
        {
            // 0 maps to -1 and 255 to 1 exactly; both occur in the data.
            Assert.Equal(-1f, split.Images.min().item<float>());
            Assert.Equal(1f, split.Images.max().item<float>());
            // Steps of 2/255: every value is an integer once mapped back.
            using var scope = NewDisposeScope();
            var back = (split.Images + 1) * 127.5;
            Assert.True((back - back.round()).abs().max().item<float>() < 1e-3f);
        }
    }

    [Fact]
    public void PaddingIsTwoPixelsOfBackground()
    {
        var images = data.Train.Images;
        foreach (var border in new[] { images.narrow(2, 0, 2), images.narrow(2, 30, 2), images.narrow(3, 0, 2), images.narrow(3, 30, 2) })
            using (border)
                Assert.True(border.eq(-1).all().item<bool>());
        // The interior is not all background: the padding went around the pixels, not over them.
        using var inner = images.narrow(2, 2, 28).narrow(3, 2, 28);
        Assert.True(inner.gt(-1).any().item<bool>());
    }

    [Fact]
    public void LabelsAreBalancedClassesInFileOrder()
    {
        // Fashion-MNIST has 6,000 training and 1,000 test images per class.
        using var trainCounts = data.Train.Labels.bincount(null);
        using var testCounts = data.Test.Labels.bincount(null);
        Assert.Equal(Enumerable.Repeat(6_000L, 10), trainCounts.data<long>().ToArray());
        Assert.Equal(Enumerable.Repeat(1_000L, 10), testCounts.data<long>().ToArray());
        // The first labels of each file (read with xxd): the loader keeps file order and skips the header exactly.
        Assert.Equal([9L, 0, 0, 3], data.Train.Labels.narrow(0, 0, 4).data<long>().ToArray());
        Assert.Equal([9L, 2, 1, 1], data.Test.Labels.narrow(0, 0, 4).data<long>().ToArray());
    }

    [Fact]
    public void ClassNamesFollowTheDatasetDocumentation()
    {
        Assert.Equal(10, FashionMnist.ClassNames.Count);
        Assert.Equal("T-shirt/top", FashionMnist.ClassNames[0]);
        Assert.Equal("Sneaker", FashionMnist.ClassNames[7]);
        Assert.Equal("Ankle boot", FashionMnist.ClassNames[9]);
    }

    [Fact]
    public void EnsureInstalledDoesNothingWhenTheFilesAreThere()
    {
        int calls = 0;
        FashionMnist.EnsureInstalled(FashionMnist.DefaultDirectory, isRoot: true, _ => { calls++; return (0, ""); });
        Assert.Equal(0, calls);
    }
}

/// <summary>Bad files in a temporary folder, using the 10,000-item test split so that valid parts stay small.</summary>
public sealed class FashionMnistBadFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("fashion-mnist-test-").FullName;
    private readonly (string Images, string Labels) _names = FashionMnist.FileNames(FashionMnistSplit.Test);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Idx(int magic, int[] dims, int dataLength, byte fill = 0)
    {
        var bytes = new byte[4 + 4 * dims.Length + dataLength];
        BinaryPrimitives.WriteInt32BigEndian(bytes, magic);
        for (int d = 0; d < dims.Length; d++) BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * d), dims[d]);
        bytes.AsSpan(4 + 4 * dims.Length).Fill(fill);
        return bytes;
    }

    private void WriteGz(string name, byte[] content)
    {
        using var file = File.Create(Path.Combine(_dir, name));
        using var gz = new GZipStream(file, CompressionLevel.Fastest);
        gz.Write(content);
    }

    private void WriteValidLabels() => WriteGz(_names.Labels, Idx(0x801, [10_000], 10_000));

    private DiffusionCacheException LoadFails() =>
        Assert.ThrowsAny<DiffusionCacheException>(() => FashionMnist.Load(FashionMnistSplit.Test, _dir));

    [Fact]
    public void MissingFileNamesTheInstallCommand()
    {
        var e = LoadFails();
        Assert.Contains(_names.Labels, e.Message);
        Assert.Contains("apt-get install -y dataset-fashion-mnist", e.Message);
    }

    [Fact]
    public void NotGzipIsAnError()
    {
        File.WriteAllText(Path.Combine(_dir, _names.Labels), "this is not a gzip stream at all, just text");
        var e = LoadFails();
        Assert.Contains(_names.Labels, e.Message);
        Assert.Contains("gzip", e.Message);
    }

    [Fact]
    public void WrongMagicIsAnError()
    {
        // An images file (magic 0x803) where the labels file belongs.
        WriteGz(_names.Labels, Idx(0x803, [10_000, 28, 28], 0));
        var e = LoadFails();
        Assert.Contains("magic number 0x00000803, expected 0x00000801", e.Message);
    }

    [Fact]
    public void WrongCountIsAnError()
    {
        WriteGz(_names.Labels, Idx(0x801, [9_999], 9_999));
        var e = LoadFails();
        Assert.Contains("dimension 0 is 9999, expected 10000", e.Message);
    }

    [Fact]
    public void LabelOutsideTheClassesIsAnError()
    {
        WriteGz(_names.Labels, Idx(0x801, [10_000], 10_000, fill: 10));
        var e = LoadFails();
        Assert.Contains("label 10 at index 0", e.Message);
    }

    [Fact]
    public void WrongImageSideIsAnError()
    {
        WriteValidLabels();
        WriteGz(_names.Images, Idx(0x803, [10_000, 32, 32], 0));
        var e = LoadFails();
        Assert.Contains(_names.Images, e.Message);
        Assert.Contains("dimension 1 is 32, expected 28", e.Message);
    }

    [Fact]
    public void TruncatedDataIsAnError()
    {
        WriteValidLabels();
        WriteGz(_names.Images, Idx(0x803, [10_000, 28, 28], 1_000));
        var e = LoadFails();
        Assert.Contains("data ends after 1000 of 7840000 bytes", e.Message);
    }

    [Fact]
    public void TrailingDataIsAnError()
    {
        WriteGz(_names.Labels, Idx(0x801, [10_000], 10_001));
        var e = LoadFails();
        Assert.Contains("longer than the 10000 bytes", e.Message);
    }

    [Fact]
    public void ValidSmallFilesLoad()
    {
        // All-zero pixels: every image is background, -1 everywhere including the padding.
        WriteGz(_names.Labels, Idx(0x801, [10_000], 10_000, fill: 7));
        WriteGz(_names.Images, Idx(0x803, [10_000, 28, 28], 10_000 * 784));
        using var set = FashionMnist.Load(FashionMnistSplit.Test, _dir);
        Assert.True(set.Images.eq(-1).all().item<bool>());
        Assert.True(set.Labels.eq(7).all().item<bool>());
    }

    [Fact]
    public void EnsureInstalledWithoutRootThrowsTheCommand()
    {
        int calls = 0;
        var e = Assert.Throws<DiffusionCacheException>(() =>
            FashionMnist.EnsureInstalled(_dir, isRoot: false, _ => { calls++; return (0, ""); }));
        Assert.Contains("sudo apt-get install -y dataset-fashion-mnist", e.Message);
        Assert.Equal(0, calls);
    }

    [Fact]
    public void EnsureInstalledAsRootUpdatesAndRetriesWhenTheInstallFails()
    {
        var calls = new List<string>();
        int installs = 0;
        // The first install fails (no package lists); after `update` the second succeeds and "installs" the files.
        FashionMnist.EnsureInstalled(_dir, isRoot: true, args =>
        {
            calls.Add(string.Join(" ", args));
            if (args[0] != "install") return (0, "");
            if (++installs == 1) return (100, "E: Unable to locate package dataset-fashion-mnist");
            foreach (var split in new[] { FashionMnistSplit.Train, FashionMnistSplit.Test })
            {
                var (images, labels) = FashionMnist.FileNames(split);
                File.WriteAllBytes(Path.Combine(_dir, images), []);
                File.WriteAllBytes(Path.Combine(_dir, labels), []);
            }
            return (0, "");
        });
        Assert.Equal(["install -y dataset-fashion-mnist", "update", "install -y dataset-fashion-mnist"], calls);
    }

    [Fact]
    public void EnsureInstalledAsRootReportsAFailedInstall()
    {
        var e = Assert.Throws<DiffusionCacheException>(() =>
            FashionMnist.EnsureInstalled(_dir, isRoot: true, args => args[0] == "install" ? (100, "E: no space left") : (0, "")));
        Assert.Contains("E: no space left", e.Message);
    }
}
