using System.Buffers.Binary;
using System.Text;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;

namespace DiffusionCache.Tests.Formats.Safetensors;

public class SafetensorsWriterTests
{
    public static TheoryData<SafetensorsDType> AllDTypes() => new(Enum.GetValues<SafetensorsDType>());

    private static readonly long[][] Shapes = [[], [0], [2, 0, 3], [5], [2, 3, 4]];

    /// <summary>A tensor whose bytes are random (every bit pattern for the float types, NaN payloads included;
    /// 0/1 for BOOL), so a bit-exact round trip is checked on all of them.</summary>
    internal static torch.Tensor RandomTensor(SafetensorsDType dtype, long[] shape, Random random)
    {
        var t = torch.empty(shape, dtype.ToScalarType());
        if (t.NumberOfElements == 0) return t;
        var bytes = t.bytes;
        random.NextBytes(bytes);
        if (dtype == SafetensorsDType.BOOL)
            for (int i = 0; i < bytes.Length; i++) bytes[i] &= 1;
        return t;
    }

    internal static byte[] BytesOf(torch.Tensor t)
    {
        using var c = t.contiguous();
        return c.NumberOfElements == 0 ? [] : c.bytes.ToArray();
    }

    internal static void AssertSame(torch.Tensor expected, torch.Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        Assert.Equal(BytesOf(expected), BytesOf(actual));
    }

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void RoundTripIsBitExactForEveryShape(SafetensorsDType dtype)
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        var random = new Random(1 + (int)dtype);
        var tensors = Shapes.Select((s, i) => new KeyValuePair<string, torch.Tensor>($"t{i}", RandomTensor(dtype, s, random))).ToList();

        SafetensorsWriter.Write(path, tensors);

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(tensors.Count, file.Entries.Count);
        foreach (var (name, expected) in tensors)
        {
            var entry = file.Entry(name);
            Assert.Equal(dtype, entry.DType);
            Assert.Equal(expected.shape, entry.Shape);
            using var actual = file.Load(name);
            AssertSame(expected, actual);
            expected.Dispose();
        }
    }

    [Fact]
    public void LayoutFollowsTheReference()
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        using var b = torch.tensor(new float[] { 1, 2 });
        using var a = torch.tensor(new long[] { 7 });
        using var c = torch.tensor(new[] { true, false, true });
        using var a2 = torch.tensor(1.5f).to(torch.ScalarType.Float16);
        SafetensorsWriter.Write(path, [new("c", c), new("b", b), new("a2", a2), new("a", a)],
            new Dictionary<string, string> { ["format"] = "pt" });

        byte[] bytes = File.ReadAllBytes(path);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, n % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        // Largest dtype first (I64, F32, F16, BOOL), then name; compact JSON; space padding.
        const string json = "{\"__metadata__\":{\"format\":\"pt\"}," +
            "\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}," +
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}," +
            "\"a2\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[16,18]}," +
            "\"c\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[18,21]}}";
        Assert.Equal(json, header.TrimEnd(' '));
        Assert.Equal((json.Length + 7) / 8 * 8, header.Length);
        Assert.Equal(8 + n + 21, bytes.Length);
        Assert.Equal(7L, BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan((int)(8 + n))));
    }

    [Fact]
    public void NamesAndMetadataAreEscapedAsTheReferenceDoes()
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        string name = "q\"b\\s\nt\u0001é😀";
        using var t = torch.zeros(1);
        var metadata = new Dictionary<string, string> { ["k\"ey"] = "v\talue", ["a"] = "" };
        SafetensorsWriter.Write(path, [new(name, t)], metadata);

        byte[] bytes = File.ReadAllBytes(path);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes));
        Assert.StartsWith("{\"__metadata__\":{\"a\":\"\",\"k\\\"ey\":\"v\\talue\"},\"q\\\"b\\\\s\\nt\\u0001é😀\":", header);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(name, Assert.Single(file.Entries).Name);
        Assert.Equal(metadata, file.Metadata.ToDictionary());
    }

    [Fact]
    public void NonContiguousTensorsAreWrittenInLogicalOrder()
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        using var source = torch.arange(12, dtype: torch.ScalarType.Int32).reshape(3, 4);
        using var transposed = source.t();
        using var strided = source.narrow(1, 1, 2);
        Assert.False(transposed.is_contiguous());
        SafetensorsWriter.Write(path, [new("t", transposed), new("s", strided)]);

        using var file = SafetensorsFile.Open(path);
        using var t = file.Load("t");
        using var s = file.Load("s");
        Assert.Equal(new long[] { 4, 3 }, t.shape);
        AssertSame(transposed, t);
        AssertSame(strided, s);
    }

    [Fact]
    public void PieceWiseWriteAndReadMatchWholeOnes()
    {
        // The > 2 GiB path (pieces of 1 GiB) exercised with pieces smaller than one element and than the tensor.
        using var folder = new TempFolder();
        var random = new Random(5);
        using var f = RandomTensor(SafetensorsDType.F32, [10, 3], random);
        using var l = RandomTensor(SafetensorsDType.I64, [7], random);
        using var o = RandomTensor(SafetensorsDType.BOOL, [9], random);
        SafetensorsWriter.Write(folder.File("whole.safetensors"), [new("f", f), new("l", l), new("o", o)]);
        SafetensorsWriter.Write(folder.File("pieces.safetensors"), [new("f", f), new("l", l), new("o", o)], null, chunkBytes: 7);
        Assert.Equal(File.ReadAllBytes(folder.File("whole.safetensors")), File.ReadAllBytes(folder.File("pieces.safetensors")));

        using var file = SafetensorsFile.Open(folder.File("pieces.safetensors"));
        foreach (var (name, expected) in new[] { ("f", f), ("l", l), ("o", o) })
            foreach (int chunk in new[] { 1, 5, 16, 1 << 20 })
            {
                using var actual = file.Load(name, null, null, chunk);
                Assert.Equal(BytesOf(expected), BytesOf(actual));
            }
    }

    [Fact]
    public void LoadConvertsTypeOnRequest()
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        using var h = torch.tensor(new float[] { 0.5f, -2f, 1e-3f }).to(torch.ScalarType.Float16);
        SafetensorsWriter.Write(path, [new("h", h)]);
        using var file = SafetensorsFile.Open(path);
        using var loaded = file.Load("h", torch.ScalarType.Float32);
        using var expected = h.to(torch.ScalarType.Float32);
        AssertSame(expected, loaded);
    }

    [Fact]
    public void EmptyFileWithoutTensorsRoundTrips()
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        SafetensorsWriter.Write(path, []);
        using var file = SafetensorsFile.Open(path);
        Assert.Empty(file.Entries);
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void UnsupportedDTypeFailsBeforeAnyFileIsCreated()
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        using var ok = torch.zeros(2);
        using var complex = torch.zeros(2, dtype: torch.ScalarType.ComplexFloat32);
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsWriter.Write(path, [new("ok", ok), new("c", complex)]));
        Assert.Equal("c", e.TensorName);
        Assert.Contains(path, e.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(folder.Path));
    }

    [Fact]
    public void InvalidNamesAreRefused()
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        using var t = torch.zeros(1);
        Assert.Equal("x", Assert.Throws<SafetensorsException>(() => SafetensorsWriter.Write(path, [new("x", t), new("x", t)])).TensorName);
        Assert.Equal("__metadata__", Assert.Throws<SafetensorsException>(() => SafetensorsWriter.Write(path, [new("__metadata__", t)])).TensorName);
        Assert.Throws<SafetensorsException>(() => SafetensorsWriter.Write(path, [new("bad\ud800", t)]));
        Assert.Throws<SafetensorsException>(() => SafetensorsWriter.Write(path, [new("x", t)], new Dictionary<string, string> { ["k"] = "\udc00" }));
        Assert.Empty(Directory.EnumerateFileSystemEntries(folder.Path));
    }

    [Fact]
    public void FailedWriteLeavesNeitherTempFileNorPartialTarget()
    {
        using var folder = new TempFolder();
        // The target is a folder: all data goes to the temp file, then the final rename fails.
        string target = Directory.CreateDirectory(folder.File("target.safetensors")).FullName;
        using var t = torch.ones(1000);
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsWriter.Write(target, [new("t", t)]));
        Assert.Contains(target, e.Message);
        Assert.Equal([target], Directory.EnumerateFileSystemEntries(folder.Path));
        Assert.Empty(Directory.EnumerateFileSystemEntries(target));

        Assert.Throws<SafetensorsException>(() => SafetensorsWriter.Write(folder.File("missing/t.safetensors"), [new("t", t)]));
    }

    [Fact]
    public void ExistingFileIsReplacedWhole()
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        using var big = torch.ones(100);
        using var small = torch.zeros(2);
        SafetensorsWriter.Write(path, [new("big", big)]);
        SafetensorsWriter.Write(path, [new("small", small)]);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("small", Assert.Single(file.Entries).Name);
        Assert.Single(Directory.EnumerateFileSystemEntries(folder.Path));
    }
}
