using System.Text.Json;
using DiffusionCache.Formats.Diffusers;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Tests.Formats.Safetensors;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;

namespace DiffusionCache.Tests.Formats.Diffusers;

public class DiffusersWeightsTests
{
    private static readonly string Sd1 = Golden.Path("unet", "models", "sd1-2lvl");
    private static readonly string Sd1Sharded = Golden.Path("unet", "models", "sd1-2lvl-sharded");
    private const long Sd1Parameters = 52644;   // README

    [Fact]
    public void PlainFolderHasAllFloat32Weights()
    {
        using var weights = DiffusersWeights.Open(Sd1);
        Assert.Null(weights.IndexPath);
        Assert.Null(weights.Variant);
        Assert.Equal([Path.Combine(Sd1, "diffusion_pytorch_model.safetensors")], weights.FilePaths);
        Assert.Equal(Sd1Parameters, weights.Names.Sum(n => weights.Entry(n).ElementCount));
        Assert.Equal(Sd1Parameters * 4, weights.TotalBytes);
        Assert.Equal(weights.Names.Order(StringComparer.Ordinal), weights.Names);
        Assert.All(weights.Names, n => Assert.Equal(SafetensorsDType.F32, weights.Entry(n).DType));
        using var convIn = weights.Load("conv_in.weight");
        Assert.Equal(weights.Entry("conv_in.weight").Shape, convIn.shape);
        Assert.Equal(4, convIn.dim());
    }

    [Fact]
    public void Fp16VariantLoadsUpcastToFloat32()
    {
        using var plain = DiffusersWeights.Open(Sd1);
        using var half = DiffusersWeights.Open(Sd1, variant: "fp16");
        Assert.Equal("fp16", half.Variant);
        Assert.Equal([Path.Combine(Sd1, "diffusion_pytorch_model.fp16.safetensors")], half.FilePaths);
        Assert.Equal(plain.Names, half.Names);
        Assert.Equal(Sd1Parameters * 2, half.TotalBytes);
        foreach (string name in half.Names)
        {
            Assert.Equal(SafetensorsDType.F16, half.Entry(name).DType);
            using var upcast = half.Load(name, torch.ScalarType.Float32);
            using var full = plain.Load(name);
            using var rounded = full.to(torch.ScalarType.Float16);
            using var expected = rounded.to(torch.ScalarType.Float32);
            SafetensorsWriterTests.AssertSame(expected, upcast);
        }
    }

    [Fact]
    public void ShardedFolderHoldsTheSameWeightsAsPlain()
    {
        using var plain = DiffusersWeights.Open(Sd1);
        using var sharded = DiffusersWeights.Open(Sd1Sharded);
        Assert.Equal(Path.Combine(Sd1Sharded, "diffusion_pytorch_model.safetensors.index.json"), sharded.IndexPath);
        Assert.Equal(Enumerable.Range(1, 3).Select(i => Path.GetFullPath(Path.Combine(Sd1Sharded, $"diffusion_pytorch_model-0000{i}-of-00003.safetensors"))),
            sharded.FilePaths);
        Assert.Equal(plain.Names, sharded.Names);
        Assert.Equal(plain.TotalBytes, sharded.TotalBytes);
        using (var index = JsonDocument.Parse(File.ReadAllText(sharded.IndexPath!)))
            Assert.Equal(index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64(), sharded.TotalBytes);
        var shardsUsed = new HashSet<string>();
        foreach (string name in plain.Names)
        {
            using var a = plain.Load(name);
            using var b = sharded.Load(name);
            Assert.Equal(SafetensorsWriterTests.BytesOf(a), SafetensorsWriterTests.BytesOf(b));
            shardsUsed.Add(sharded.FilePathOf(name));
        }
        Assert.Equal(3, shardsUsed.Count);
    }

    [Fact]
    public void MissingFolderOrWeightsNameWhatWasLookedFor()
    {
        using var folder = new TempFolder();
        string absent = Path.Combine(folder.Path, "absent");
        Assert.Contains(absent, Assert.Throws<DiffusionCacheException>(() => DiffusersWeights.Open(absent)).Message);

        var e = Assert.Throws<DiffusionCacheException>(() => DiffusersWeights.Open(folder.Path));
        Assert.Contains(folder.Path, e.Message);
        Assert.Contains("diffusion_pytorch_model.safetensors ", e.Message);
        Assert.Contains("diffusion_pytorch_model.safetensors.index.json", e.Message);

        // A variant is looked for only under its own names.
        WriteSingle(folder, "diffusion_pytorch_model.safetensors");
        e = Assert.Throws<DiffusionCacheException>(() => DiffusersWeights.Open(folder.Path, "fp16"));
        Assert.Contains("diffusion_pytorch_model.fp16.safetensors", e.Message);
        Assert.Contains("diffusion_pytorch_model.safetensors.index.fp16.json", e.Message);
    }

    [Fact]
    public void OtherStemsLoadOtherComponents()
    {
        using var folder = new TempFolder();
        WriteSingle(folder, "model.safetensors");
        using var weights = DiffusersWeights.Open(folder.Path, stem: "model");
        Assert.Equal(["a", "b", "c"], weights.Names);
        using var c = weights.Load("c");
        Assert.Equal(new long[] { 2 }, c.shape);
        Assert.Throws<DiffusionCacheException>(() => DiffusersWeights.Open(folder.Path));
    }

    [Theory]
    [InlineData(null, "../x")]
    [InlineData(null, "a/b")]
    [InlineData(null, "")]
    [InlineData("fp.16", DiffusersWeights.DefaultStem)]
    [InlineData("../fp16", DiffusersWeights.DefaultStem)]
    [InlineData("", DiffusersWeights.DefaultStem)]
    public void FileNamePartsCannotNameOtherFiles(string? variant, string stem)
    {
        using var folder = new TempFolder();
        Assert.Throws<DiffusionCacheException>(() => DiffusersWeights.Open(folder.Path, variant, stem));
    }

    [Fact]
    public void UnknownNameIsADiffusionCacheException()
    {
        using var weights = DiffusersWeights.Open(Sd1);
        Assert.False(weights.Contains("nope"));
        Assert.Contains("nope", Assert.Throws<DiffusionCacheException>(() => weights.Load("nope")).Message);
        Assert.Throws<DiffusionCacheException>(() => weights.Entry("nope"));
    }

    [Fact]
    public void ShardedVariantUsesDiffusersFileNames()
    {
        using var folder = new TempFolder();
        WriteSharded(folder.Path, "fp16");
        using var weights = DiffusersWeights.Open(folder.Path, "fp16");
        Assert.Equal(folder.File("diffusion_pytorch_model.safetensors.index.fp16.json"), weights.IndexPath);
        Assert.Equal(["a", "b", "c"], weights.Names);
        Assert.Equal(2, weights.FilePaths.Count);
        Assert.Equal((4 + 6 + 2) * 4, weights.TotalBytes);
        Assert.Throws<DiffusionCacheException>(() => DiffusersWeights.Open(folder.Path));
    }

    [Fact]
    public void IndexWinsOverASingleFileAsInDiffusers()
    {
        using var folder = new TempFolder();
        WriteSharded(folder.Path, null);
        using (var x = torch.zeros(1)) SafetensorsWriter.Write(folder.File("diffusion_pytorch_model.safetensors"), [new("x", x)]);
        using var weights = DiffusersWeights.Open(folder.Path);
        Assert.NotNull(weights.IndexPath);
        Assert.Equal(["a", "b", "c"], weights.Names);
    }

    private const string Shard1 = "diffusion_pytorch_model-00001-of-00002.safetensors";
    private const string Shard2 = "diffusion_pytorch_model-00002-of-00002.safetensors";
    private const string Index = "diffusion_pytorch_model.safetensors.index.json";

    /// <summary>Each broken index, made from a good sharded folder (a, b in shard 1; c in shard 2).</summary>
    public static TheoryData<string> BrokenIndexes() => new(
        "shard file missing", "name absent from its shard", "shard tensor not in the index",
        "shard tensor mapped to another shard", "parent-folder shard", "absolute shard path", "shard path escaping via subfolder",
        "backslash shard path", "index not JSON", "index invalid UTF-8", "index a JSON array", "weight_map missing",
        "weight_map not an object", "weight_map twice", "weight_map value not a string", "weight_map name twice",
        "weight_map empty");

    [Theory]
    [MemberData(nameof(BrokenIndexes))]
    public void BrokenIndexIsADiffusionCacheExceptionNamingTheIndex(string broken)
    {
        using var folder = new TempFolder();
        string model = Directory.CreateDirectory(folder.File("model")).FullName;
        WriteSharded(model, null);
        string index = Path.Combine(model, Index);
        string goodMap = $"\"a\":\"{Shard1}\",\"b\":\"{Shard1}\",\"c\":\"{Shard2}\"";
        string WithMap(string map) => $"{{\"metadata\":{{\"total_size\":48}},\"weight_map\":{{{map}}}}}";
        // A real safetensors file outside the model folder, so "escaping" is not mistaken for "missing".
        using (var x = torch.zeros(1)) SafetensorsWriter.Write(folder.File("outside.safetensors"), [new("c", x)]);

        switch (broken)
        {
            case "shard file missing": File.Delete(Path.Combine(model, Shard2)); break;
            case "name absent from its shard": File.WriteAllText(index, WithMap(goodMap + $",\"d\":\"{Shard2}\"")); break;
            case "shard tensor not in the index": File.WriteAllText(index, WithMap($"\"a\":\"{Shard1}\",\"c\":\"{Shard2}\"")); break;
            case "shard tensor mapped to another shard":
                using (var a = torch.zeros(1)) SafetensorsWriter.Write(Path.Combine(model, Shard2), [new("c", a), new("a", a)]);
                break;
            case "parent-folder shard": File.WriteAllText(index, WithMap($"\"a\":\"{Shard1}\",\"b\":\"{Shard1}\",\"c\":\"../outside.safetensors\"")); break;
            case "absolute shard path": File.WriteAllText(index, WithMap($"\"a\":\"{Shard1}\",\"b\":\"{Shard1}\",\"c\":\"{folder.File("outside.safetensors")}\"")); break;
            case "shard path escaping via subfolder":
                Directory.CreateDirectory(Path.Combine(model, "sub"));
                File.WriteAllText(index, WithMap($"\"a\":\"{Shard1}\",\"b\":\"{Shard1}\",\"c\":\"sub/../../outside.safetensors\""));
                break;
            case "backslash shard path": File.WriteAllText(index, WithMap($"\"a\":\"{Shard1}\",\"b\":\"{Shard1}\",\"c\":\"..\\\\outside.safetensors\"")); break;
            case "index not JSON": File.WriteAllText(index, "weight_map: {}"); break;
            case "index invalid UTF-8": File.WriteAllBytes(index, [(byte)'{', (byte)'"', 0xC3, (byte)'"', (byte)':', (byte)'1', (byte)'}']); break;
            case "index a JSON array": File.WriteAllText(index, "[]"); break;
            case "weight_map missing": File.WriteAllText(index, "{\"metadata\":{}}"); break;
            case "weight_map not an object": File.WriteAllText(index, "{\"weight_map\":[]}"); break;
            case "weight_map twice": File.WriteAllText(index, $"{{\"weight_map\":{{{goodMap}}},\"weight_map\":{{}}}}"); break;
            case "weight_map value not a string": File.WriteAllText(index, WithMap($"\"a\":\"{Shard1}\",\"b\":\"{Shard1}\",\"c\":2")); break;
            case "weight_map name twice": File.WriteAllText(index, WithMap(goodMap + $",\"a\":\"{Shard1}\"")); break;
            case "weight_map empty": File.WriteAllText(index, WithMap("")); break;
            default: throw new ArgumentException(broken);
        }

        var e = Assert.Throws<DiffusionCacheException>(() => DiffusersWeights.Open(model));
        Assert.IsNotType<SafetensorsException>(e);
        Assert.StartsWith(index + ":", e.Message);
    }

    [Fact]
    public void GoodShardedFolderOpensAndBadShardIsASafetensorsException()
    {
        using var folder = new TempFolder();
        WriteSharded(folder.Path, null);
        using (var weights = DiffusersWeights.Open(folder.Path))
        {
            Assert.Equal(["a", "b", "c"], weights.Names);
            using var c = weights.Load("c");
            Assert.Equal(new float[] { 5, 6 }, c.data<float>().ToArray());
            Assert.Equal(folder.File(Shard2), weights.FilePathOf("c"));
        }

        var bytes = File.ReadAllBytes(folder.File(Shard2));
        File.WriteAllBytes(folder.File(Shard2), bytes[..^1]);
        var e = Assert.Throws<SafetensorsException>(() => DiffusersWeights.Open(folder.Path));
        Assert.Equal(folder.File(Shard2), e.FilePath);
    }

    private static void WriteSingle(TempFolder folder, string name) => WriteTensors(folder.File(name), ["a", "b", "c"]);

    private static void WriteTensors(string path, string[] names)
    {
        var tensors = names.Select((n, i) => new KeyValuePair<string, torch.Tensor>(n, torch.full(2, i + 1f))).ToList();
        SafetensorsWriter.Write(path, tensors);
        foreach (var (_, t) in tensors) t.Dispose();
    }

    /// <summary>a [2,2] and b [2,3] in shard 1, c = [5, 6] in shard 2, named as diffusers names them.</summary>
    private static void WriteSharded(string folder, string? variant)
    {
        string v = variant is null ? "" : "." + variant;
        string shard1 = $"diffusion_pytorch_model{v}-00001-of-00002.safetensors";
        string shard2 = $"diffusion_pytorch_model{v}-00002-of-00002.safetensors";
        using var a = torch.ones(2, 2);
        using var b = torch.zeros(2, 3);
        using var c = torch.tensor(new float[] { 5, 6 });
        SafetensorsWriter.Write(Path.Combine(folder, shard1), [new("a", a), new("b", b)]);
        SafetensorsWriter.Write(Path.Combine(folder, shard2), [new("c", c)]);
        File.WriteAllText(Path.Combine(folder, $"diffusion_pytorch_model.safetensors.index{v}.json"),
            $"{{\"metadata\":{{\"total_size\":48}},\"weight_map\":{{\"a\":\"{shard1}\",\"b\":\"{shard1}\",\"c\":\"{shard2}\"}}}}");
    }
}
