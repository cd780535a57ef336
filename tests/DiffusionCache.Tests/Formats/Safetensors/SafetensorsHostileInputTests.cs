using System.Buffers.Binary;
using System.Text;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;

namespace DiffusionCache.Tests.Formats.Safetensors;

/// <summary>Malformed files of every kind must give a <see cref="SafetensorsException"/> naming the file (and the
/// tensor where one is at fault), never another exception, a crash or a hang.</summary>
public class SafetensorsHostileInputTests
{
    /// <summary>A file from a header text, data bytes and (when given) a header length other than the true one.</summary>
    internal static byte[] Build(byte[] header, byte[]? data = null, ulong? headerLength = null)
    {
        data ??= [];
        var file = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, headerLength ?? (ulong)header.Length);
        header.CopyTo(file, 8);
        data.CopyTo(file, 8 + header.Length);
        return file;
    }

    private static byte[] Build(string header, int dataBytes = 0, ulong? headerLength = null) =>
        Build(Encoding.UTF8.GetBytes(header), new byte[dataBytes], headerLength);

    private static string Tensor(string name, string dtype, string shape, long begin, long end) =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}";

    private static readonly string A8 = Tensor("a", "F32", "[2]", 0, 8);

    /// <summary>Category → file content and the tensor the error must name (null: the file as a whole).</summary>
    private static readonly Dictionary<string, (byte[] Content, string? Tensor)> Cases = new()
    {
        ["empty file"] = ([], null),
        ["shorter than the length prefix"] = ([1, 0, 0, 0, 0], null),
        ["header length past end of file"] = (Build("{}", 0, headerLength: 1000), null),
        ["header length absurd"] = (Build("{}", 0, headerLength: ulong.MaxValue), null),
        ["header length above the limit"] = (Build("{}", 0, headerLength: 100_000_001), null),
        ["header length zero"] = (Build("{}", 0, headerLength: 0), null),
        ["header not JSON"] = (Build("hello, world"), null),
        ["header truncated JSON"] = (Build("{\"a\":{\"dtype\":\"F32\""), null),
        ["header a JSON array"] = (Build("[1, 2]"), null),
        ["header a JSON string"] = (Build("\"abc\""), null),
        ["header with trailing garbage"] = (Build("{} x"), null),
        ["header invalid UTF-8"] = (Build([.. Encoding.ASCII.GetBytes("{\"a"), 0xFF, .. Encoding.ASCII.GetBytes("\":1}")]), null),
        ["header with lone surrogate escape"] = (Build("{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4), null),
        ["deeply nested JSON"] = (Build("{\"__metadata__\":" + new string('[', 100_000) + new string(']', 100_000) + "}"), null),
        ["deeply nested JSON in an entry"] = (Build("{\"a\":{\"dtype\":\"F32\",\"shape\":" + new string('[', 5000) + new string(']', 5000) + ",\"data_offsets\":[0,4]}}", 4), null),
        ["metadata not an object"] = (Build("{\"__metadata__\":[1]}"), null),
        ["metadata value not a string"] = (Build("{\"__metadata__\":{\"k\":1}}"), null),
        ["metadata twice"] = (Build("{\"__metadata__\":{},\"__metadata__\":{}}"), null),
        ["entry not an object"] = (Build("{\"a\":[0,4]}", 4), "a"),
        ["unknown dtype"] = (Build("{" + Tensor("a", "F8_E4M3", "[2]", 0, 2) + "}", 2), "a"),
        ["dtype not a string"] = (Build("{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "a"),
        ["dtype missing"] = (Build("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "a"),
        ["dtype a number"] = (Build("{" + Tensor("a", "1", "[1]", 0, 4) + "}", 4), "a"),
        ["dtype a comma list"] = (Build("{" + Tensor("a", "F32, F16", "[1]", 0, 4) + "}", 4), "a"),
        ["dtype lower case"] = (Build("{" + Tensor("a", "f32", "[1]", 0, 4) + "}", 4), "a"),
        ["field given twice"] = (Build("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "a"),
        ["shape missing"] = (Build("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), "a"),
        ["shape not an array"] = (Build("{" + Tensor("a", "F32", "1", 0, 4) + "}", 4), "a"),
        ["negative dim"] = (Build("{" + Tensor("a", "F32", "[-1]", 0, 4) + "}", 4), "a"),
        ["fractional dim"] = (Build("{" + Tensor("a", "F32", "[1.5]", 0, 4) + "}", 4), "a"),
        ["float-written dim"] = (Build("{" + Tensor("a", "F32", "[1.0]", 0, 4) + "}", 4), "a"),
        ["exponent dim"] = (Build("{" + Tensor("a", "F32", "[1e0]", 0, 4) + "}", 4), "a"),
        ["string dim"] = (Build("{" + Tensor("a", "F32", "[\"1\"]", 0, 4) + "}", 4), "a"),
        ["dim beyond int64"] = (Build("{" + Tensor("a", "F32", "[99999999999999999999]", 0, 4) + "}", 4), "a"),
        ["element count overflows"] = (Build("{" + Tensor("a", "F32", "[4294967296,4294967296]", 0, 4) + "}", 4), "a"),
        ["byte count overflows"] = (Build("{" + Tensor("a", "F64", "[4611686018427387904]", 0, 4) + "}", 4), "a"),
        ["zero-size shape with overflowing strides"] = (Build("{" + Tensor("a", "F32", "[0,4294967296,4294967296]", 0, 0) + "}"), "a"),
        ["too many dims"] = (Build("{" + Tensor("a", "F32", "[" + string.Join(",", Enumerable.Repeat(1, 65)) + "]", 0, 4) + "}", 4), "a"),
        ["offsets missing"] = (Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), "a"),
        ["offsets of one number"] = (Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4), "a"),
        ["offsets negative"] = (Build("{" + Tensor("a", "F32", "[1]", -4, 0) + "}", 4), "a"),
        ["offsets fractional"] = (Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4), "a"),
        ["offsets reversed"] = (Build("{" + Tensor("a", "F32", "[1]", 4, 0) + "}", 4), "a"),
        ["offsets past the data"] = (Build("{" + Tensor("a", "F32", "[4]", 0, 16) + "}", 8), "a"),
        ["offsets huge"] = (Build("{" + Tensor("a", "U8", "[1]", 9223372036854775806, 9223372036854775807) + "}", 8), "a"),
        ["offsets not matching shape and dtype"] = (Build("{" + Tensor("a", "F32", "[3]", 0, 8) + "}", 8), "a"),
        ["offsets overlapping"] = (Build("{" + A8 + "," + Tensor("b", "F32", "[2]", 4, 12) + "}", 12), "b"),
        ["offsets identical"] = (Build("{" + A8 + "," + Tensor("b", "F32", "[2]", 0, 8) + "}", 8), "b"),
        ["empty tensor inside another"] = (Build("{" + A8 + "," + Tensor("e", "F32", "[0]", 4, 4) + "}", 8), "e"),
        ["hole between tensors"] = (Build("{" + Tensor("a", "F32", "[1]", 0, 4) + "," + Tensor("b", "F32", "[1]", 8, 12) + "}", 12), "b"),
        ["hole before the first tensor"] = (Build("{" + Tensor("a", "F32", "[1]", 4, 8) + "}", 8), "a"),
        ["trailing bytes after the data"] = (Build("{" + A8 + "}", 12), null),
        ["data but no tensors"] = (Build("{}", 4), null),
        ["duplicate tensor name"] = (Build("{" + A8 + "," + A8 + "}", 8), "a"),
        ["duplicate name by escape"] = (Build("{" + A8 + ",\"\\u0061\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "a"),
        ["BOOL byte neither 0 nor 1"] = (Build(Encoding.UTF8.GetBytes("{" + Tensor("a", "BOOL", "[3]", 0, 3) + "}"), [0, 1, 7]), "a"),
    };

    public static TheoryData<string> Categories() => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(Categories))]
    public void MalformedFileGivesSafetensorsException(string category)
    {
        var (content, tensor) = Cases[category];
        using var folder = new TempFolder();
        string path = folder.File("hostile.safetensors");
        File.WriteAllBytes(path, content);

        var e = Assert.Throws<SafetensorsException>(() => OpenAndLoadAll(path));
        Assert.Equal(path, e.FilePath);
        Assert.StartsWith(path + ":", e.Message);
        Assert.Equal(tensor, e.TensorName);
        if (tensor is not null) Assert.Contains($"tensor '{tensor}'", e.Message);
    }

    internal static void OpenAndLoadAll(string path)
    {
        using var file = SafetensorsFile.Open(path);
        foreach (var entry in file.Entries)
        {
            using var t = file.Load(entry.Name);
        }
    }

    [Fact]
    public void MissingFileGivesSafetensorsException()
    {
        using var folder = new TempFolder();
        string path = folder.File("absent.safetensors");
        Assert.Equal(path, Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(path)).FilePath);
        Assert.Equal(folder.Path, Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(folder.Path)).FilePath);
    }

    [Fact]
    public void FileShrinkingAfterOpenGivesSafetensorsException()
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        using var t = torch.ones(64);
        SafetensorsWriter.Write(path, [new("t", t)]);
        using var file = SafetensorsFile.Open(path);
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
            stream.SetLength(stream.Length - 16);
        var e = Assert.Throws<SafetensorsException>(() => file.Load("t"));
        Assert.Equal("t", e.TensorName);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void UnknownTensorNameGivesSafetensorsException()
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        File.WriteAllBytes(path, Build("{" + A8 + "}", 8));
        using var file = SafetensorsFile.Open(path);
        var e = Assert.Throws<SafetensorsException>(() => file.Load("b"));
        Assert.Equal("b", e.TensorName);
    }

    [Fact]
    public void EdgeCasesTheFormatAllows()
    {
        // Unknown entry fields are ignored and metadata may be null (as by the reference); empty tensors may sit
        // at the data boundaries; the header may be padded with trailing spaces.
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        File.WriteAllBytes(path, Build("{\"__metadata__\":null,\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0],\"extra\":[1]}," +
            A8 + "," + Tensor("z", "I64", "[2,0]", 8, 8) + "}   ", 8));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["e", "a", "z"], file.Entries.Select(e => e.Name));
        using var e = file.Load("e");
        Assert.Equal(new long[] { 0, 3 }, e.shape);
    }
}
