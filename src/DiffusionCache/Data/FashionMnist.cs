using System.Buffers.Binary;
using System.ComponentModel;
using System.Diagnostics;
using System.IO.Compression;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Data;

/// <summary>One of Fashion-MNIST's two standard splits.</summary>
public enum FashionMnistSplit
{
    /// <summary>60,000 images (<c>train-*</c> files).</summary>
    Train,
    /// <summary>10,000 images (<c>t10k-*</c> files).</summary>
    Test,
}

/// <summary>
/// Fashion-MNIST (Zalando, 28x28 grey-scale clothing images in 10 classes) from the gzipped IDX files that the Debian
/// package <c>dataset-fashion-mnist</c> installs. Images are float32 [N, 1, 32, 32]: the 28x28 pixels scaled from
/// 0..255 to [-1, 1] and padded by 2 pixels of -1 (the background value) on each side, so that the side halves
/// cleanly through several down blocks. Labels are int64 [N] in 0..9 (see <see cref="ClassNames"/>). The instance
/// owns both tensors.
/// </summary>
public sealed class FashionMnist : IDisposable
{
    /// <summary>Where the Debian package puts the four <c>.gz</c> files.</summary>
    public const string DefaultDirectory = "/usr/share/datasets/fashion-mnist";
    /// <summary>The Debian package that installs the dataset.</summary>
    public const string PackageName = "dataset-fashion-mnist";
    /// <summary>What to run (as root) when the files are missing.</summary>
    public const string InstallCommand = "apt-get install -y " + PackageName;

    /// <summary>Side of the images in the files, in pixels.</summary>
    public const int SourceSide = 28;
    /// <summary>Border of background (-1) pixels added on each side.</summary>
    public const int Padding = 2;
    /// <summary>Side of the loaded images: 32 pixels.</summary>
    public const int Side = SourceSide + 2 * Padding;
    /// <summary>Number of classes; labels are 0..9.</summary>
    public const int NumClasses = 10;

    private const int ImagesMagic = 0x00000803; // unsigned bytes, 3 dimensions
    private const int LabelsMagic = 0x00000801; // unsigned bytes, 1 dimension

    /// <summary>Class names by label, as in the dataset's documentation.</summary>
    public static IReadOnlyList<string> ClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>The split these images come from.</summary>
    public FashionMnistSplit Split { get; }
    /// <summary>float32 [N, 1, 32, 32] in [-1, 1]; the 2-pixel border is -1.</summary>
    public Tensor Images { get; }
    /// <summary>int64 [N] in 0..9.</summary>
    public Tensor Labels { get; }
    /// <summary>N, the number of images (60,000 or 10,000).</summary>
    public int Count => (int)Labels.shape[0];

    private FashionMnist(FashionMnistSplit split, Tensor images, Tensor labels)
    {
        Split = split;
        Images = images;
        Labels = labels;
    }

    /// <summary>The number of images a split has: 60,000 for train, 10,000 for test.</summary>
    public static int ExpectedCount(FashionMnistSplit split) => split == FashionMnistSplit.Train ? 60_000 : 10_000;

    /// <summary>The (images, labels) file names of a split.</summary>
    public static (string Images, string Labels) FileNames(FashionMnistSplit split)
    {
        string prefix = split == FashionMnistSplit.Train ? "train" : "t10k";
        return ($"{prefix}-images-idx3-ubyte.gz", $"{prefix}-labels-idx1-ubyte.gz");
    }

    /// <summary>Loads a split, validating the IDX headers (magic number, count, 28x28) and the data sizes.</summary>
    /// <param name="split">Which split to load.</param>
    /// <param name="directory">Folder holding the four <c>.gz</c> files; <see cref="DefaultDirectory"/> when null.</param>
    /// <returns>The split's images and labels, on the CPU; the caller disposes it.</returns>
    /// <exception cref="DiffusionCacheException">A file is missing (the message says how to install it) or is not
    /// a valid Fashion-MNIST IDX file.</exception>
    public static FashionMnist Load(FashionMnistSplit split, string? directory = null)
    {
        directory ??= DefaultDirectory;
        var (imagesName, labelsName) = FileNames(split);
        int count = ExpectedCount(split);
        // Labels first: the small file fails fast, before 47 MB of pixels are inflated.
        var labelBytes = ReadIdx(Path.Combine(directory, labelsName), LabelsMagic, [count]);
        for (int i = 0; i < labelBytes.Length; i++)
            if (labelBytes[i] >= NumClasses)
                throw new DiffusionCacheException($"{Path.Combine(directory, labelsName)}: label {labelBytes[i]} at index {i} is not a class (0..{NumClasses - 1})");
        var pixels = ReadIdx(Path.Combine(directory, imagesName), ImagesMagic, [count, SourceSide, SourceSide]);

        using var scope = NewDisposeScope();
        var labels = tensor(labelBytes, [count]).to(ScalarType.Int64);
        var raw = tensor(pixels, [count, 1, SourceSide, SourceSide]);
        var images = full([count, 1, Side, Side], -1f, ScalarType.Float32);
        // Convert in chunks so that the float copy of the unpadded pixels never exists whole (~190 MB for train).
        const int chunk = 5_000;
        for (int start = 0; start < count; start += chunk)
        {
            using var inner = NewDisposeScope();
            int length = Math.Min(chunk, count - start);
            var scaled = raw.narrow(0, start, length).to(ScalarType.Float32).div_(127.5).sub_(1.0);
            images.narrow(0, start, length).narrow(2, Padding, SourceSide).narrow(3, Padding, SourceSide).copy_(scaled);
        }
        return new FashionMnist(split, images.MoveToOuterDisposeScope(), labels.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Reads a gzipped IDX file of unsigned bytes: a 4-byte big-endian magic number (0, 0, type 0x08, number of
    /// dimensions), one big-endian int32 per dimension, then the data. The dimensions must equal
    /// <paramref name="dims"/> and the data must have exactly their product in bytes. Returns the data.
    /// </summary>
    internal static byte[] ReadIdx(string path, int magic, int[] dims)
    {
        if (!File.Exists(path))
            throw new DiffusionCacheException($"{path}: not found; Fashion-MNIST comes from the Debian package " +
                $"{PackageName} (run `sudo {InstallCommand}`, or call FashionMnist.EnsureInstalled() as root)");
        try
        {
            using var file = File.OpenRead(path);
            using var gz = new GZipStream(file, CompressionMode.Decompress);
            var header = new byte[4 + 4 * dims.Length];
            int got = ReadFully(gz, header);
            if (got < 4) throw Bad(path, $"{got} bytes, too short for an IDX header");
            int foundMagic = BinaryPrimitives.ReadInt32BigEndian(header);
            if (foundMagic != magic)
                throw Bad(path, $"IDX magic number 0x{foundMagic:X8}, expected 0x{magic:X8} (unsigned bytes, {dims.Length} dimension{(dims.Length == 1 ? "" : "s")})");
            if (got < header.Length) throw Bad(path, $"IDX header ends after {got} of {header.Length} bytes");
            for (int d = 0; d < dims.Length; d++)
            {
                int size = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(4 + 4 * d));
                if (size != dims[d])
                    throw Bad(path, $"IDX dimension {d} is {size}, expected {dims[d]} ({(d == 0 ? "item count" : "image side")})");
            }
            long length = dims.Aggregate(1L, (a, b) => a * b);
            var data = new byte[length];
            got = ReadFully(gz, data);
            if (got < length) throw Bad(path, $"IDX data ends after {got} of {length} bytes");
            if (gz.ReadByte() != -1) throw Bad(path, $"IDX data is longer than the {length} bytes its header declares");
            return data;
        }
        catch (InvalidDataException e)
        {
            throw new DiffusionCacheException($"{path}: not a valid gzip file ({e.Message})", e);
        }
    }

    private static int ReadFully(Stream stream, byte[] buffer) => stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);

    private static DiffusionCacheException Bad(string path, string problem) =>
        new($"{path}: not a Fashion-MNIST IDX file: {problem}");

    /// <summary>
    /// Makes sure the dataset files are in <see cref="DefaultDirectory"/>. When some are missing and the process
    /// runs as root, installs the package non-interactively (<c>apt-get install -y</c>, with <c>apt-get update</c>
    /// first if the plain install fails); otherwise throws with the command to run.
    /// </summary>
    public static void EnsureInstalled() => EnsureInstalled(DefaultDirectory, Environment.IsPrivilegedProcess, RunAptGet);

    /// <summary><see cref="EnsureInstalled()"/> with its environment given (for tests).</summary>
    /// <param name="directory">Where the files must be.</param>
    /// <param name="isRoot">Whether installing is allowed.</param>
    /// <param name="aptGet">Runs apt-get with the given arguments; returns its exit code and output.</param>
    internal static void EnsureInstalled(string directory, bool isRoot, Func<string[], (int ExitCode, string Output)> aptGet)
    {
        var missing = MissingFiles(directory);
        if (missing.Count == 0) return;
        string what = $"Fashion-MNIST is not installed ({string.Join(", ", missing)} missing in {directory})";
        if (!isRoot) throw new DiffusionCacheException($"{what}; install it with: sudo {InstallCommand}");

        string[] install = ["install", "-y", PackageName];
        var (code, output) = aptGet(install);
        if (code != 0)
        {
            // A fresh machine often has no package lists yet.
            var (updateCode, updateOutput) = aptGet(["update"]);
            if (updateCode != 0)
                throw new DiffusionCacheException($"{what}; `{InstallCommand}` failed and `apt-get update` failed ({updateCode}): {Tail(updateOutput)}");
            (code, output) = aptGet(install);
            if (code != 0) throw new DiffusionCacheException($"{what}; `{InstallCommand}` failed ({code}): {Tail(output)}");
        }
        missing = MissingFiles(directory);
        if (missing.Count > 0)
            throw new DiffusionCacheException($"{PackageName} is installed but {string.Join(", ", missing)} is still missing in {directory}");
    }

    private static List<string> MissingFiles(string directory) =>
        new[] { FashionMnistSplit.Train, FashionMnistSplit.Test }
            .SelectMany(s => { var (i, l) = FileNames(s); return new[] { i, l }; })
            .Where(f => !File.Exists(Path.Combine(directory, f)))
            .ToList();

    private static (int, string) RunAptGet(string[] arguments)
    {
        var start = new ProcessStartInfo("apt-get")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        start.Environment["DEBIAN_FRONTEND"] = "noninteractive";
        try
        {
            using var process = Process.Start(start) ?? throw new DiffusionCacheException("could not start apt-get");
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            process.WaitForExit();
            return (process.ExitCode, stdout.Result + stderr.Result);
        }
        catch (Win32Exception e)
        {
            throw new DiffusionCacheException($"could not run apt-get ({e.Message}); install {PackageName} by hand", e);
        }
    }

    private static string Tail(string output)
    {
        var s = output.Trim();
        return s.Length > 400 ? "..." + s[^400..] : s;
    }

    /// <summary>Frees <see cref="Images"/> and <see cref="Labels"/>.</summary>
    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
    }
}
